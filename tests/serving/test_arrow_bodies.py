"""Arrow IPC bodies: read into the model's frame with the checks JSON instances get."""

from __future__ import annotations

import math
import struct
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from model.outputs import Outputs
from model.schema import Feature, FeatureSchema
from serving.arrow_bodies import (
    MAX_MESSAGES,
    read_instances,
    read_stream,
    write_instances,
    write_table,
)
from serving.instances import to_frame
from serving.ipc_metadata import DICTIONARY_BATCH, RECORD_BATCH, read_message
from serving.ipc_metadata import SCHEMA as SCHEMA_MESSAGE
from serving.responses import arrow_answer

from .arrow_streams import (
    BATCH_LENGTH,
    MESSAGE_HEADER,
    SCHEMA_ENDIANNESS,
    batch_table,
    frames,
    joined,
    message_table,
    point_field,
    set_int64,
    write,
)
from .test_instances import SCHEMA

FRAME = pd.DataFrame(
    {
        "age": [40.0, None, 31.0],
        "income level": [1200.5, 10.0, 0.0],
        "city": ["paris", None, "lyon"],
    }
)


def body(table: pa.Table) -> bytes:
    return write_table(table)


def details_of(raw: bytes, max_rows: int = 10, **limits: int) -> list[dict]:
    with pytest.raises(ValidationError) as caught:
        read_instances(raw, SCHEMA, max_rows, **limits)
    return caught.value.errors(include_url=False)


def errors_of(raw: bytes, max_rows: int = 10, **limits: int) -> list[dict]:
    return [{"type": e["type"], "loc": e["loc"]} for e in details_of(raw, max_rows, **limits)]


def test_a_frame_round_trips_to_the_frame_json_instances_give():
    frame = read_instances(write_instances(FRAME), SCHEMA, max_rows=10)
    expected = to_frame([(40.0, 1200.5, "paris"), (None, 10.0, None), (31.0, 0.0, "lyon")], SCHEMA)
    pd.testing.assert_frame_equal(frame, expected)
    assert math.isnan(frame["age"][1]) and frame["city"][1] is None


def test_columns_may_come_in_any_order_with_integer_and_dictionary_types():
    table = pa.table(
        {
            "city": pa.array(["lyon", "paris", "lyon"]).dictionary_encode(),
            "income level": pa.array([1, 2, 3], pa.int32()),
            "age": pa.array([20, 30, 40], pa.int64()),
        }
    )
    frame = read_instances(body(table), SCHEMA, max_rows=10)
    assert list(frame.columns) == SCHEMA.names
    assert frame["income level"].dtype == "float64"
    assert frame["city"].tolist() == ["lyon", "paris", "lyon"]


def test_numbers_in_a_categorical_column_are_read_as_their_text():
    table = pa.table({"age": [1.0], "income level": [2.0], "city": pa.array([75], pa.int64())})
    assert read_instances(body(table), SCHEMA, 10)["city"].tolist() == ["75"]


@pytest.mark.parametrize(
    ("value", "error_type"),
    [
        (math.nan, "finite_number"),
        (math.inf, "finite_number"),
        (-math.inf, "finite_number"),
        (2e15, "less_than_equal"),
        (-2e15, "greater_than_equal"),
    ],
)
def test_bad_numbers_are_located_by_row_and_feature(value, error_type):
    table = pa.table(
        {"age": pa.array([40.0, value]), "income level": [1.0, 2.0], "city": ["a", "b"]}
    )
    assert errors_of(body(table)) == [{"type": error_type, "loc": ("instances", 1, "age")}]


def test_null_is_a_missing_value_but_nan_sent_as_a_number_is_not():
    table = pa.table(
        {
            "age": pa.array([None, math.nan], pa.float64()),
            "income level": [1.0, 2.0],
            "city": ["a", "b"],
        }
    )
    assert errors_of(body(table)) == [{"type": "finite_number", "loc": ("instances", 1, "age")}]


def test_missing_extra_duplicate_and_mistyped_columns_are_named():
    table = pa.Table.from_arrays(
        [pa.array([True]), pa.array([1.0]), pa.array([2.0]), pa.array([3.0])],
        names=["age", "colour", "colour", "city"],
    )
    assert errors_of(body(table)) == [
        {"type": "duplicate_column", "loc": ("instances", "colour")},
        {"type": "float_type", "loc": ("instances", "age")},
        {"type": "missing", "loc": ("instances", "income level")},
        {"type": "extra_forbidden", "loc": ("instances", "colour")},
        {"type": "extra_forbidden", "loc": ("instances", "colour")},
    ]


def test_row_count_limits():
    assert errors_of(write_instances(FRAME.iloc[:0])) == [
        {"type": "too_short", "loc": ("instances",)}
    ]
    assert errors_of(write_instances(FRAME), max_rows=2) == [
        {"type": "too_long", "loc": ("instances",)}
    ]


def test_a_body_that_is_not_an_arrow_stream_is_an_error_for_the_whole_body():
    assert errors_of(b'{"instances": []}') == [{"type": "arrow_invalid", "loc": ()}]


def test_at_most_a_hundred_errors_are_listed_then_their_count():
    table = pa.table(
        {"age": np.full(1_000, np.inf), "income level": np.ones(1_000), "city": ["a"] * 1_000}
    )
    details = details_of(body(table), max_rows=1_000)
    assert len(details) == 101
    assert {d["type"] for d in details[:100]} == {"finite_number"}
    assert details[100] == {
        "type": "too_many_errors",
        "loc": ("instances",),
        "msg": "1000 problems in all; the first 100 are listed",
        "input": None,
        "ctx": {"total": 1000, "listed": 100},
    }


def test_answers_as_columns_keep_the_model_tag():
    outputs = Outputs(np.array([1, 0]), np.array([[0.2, 0.8], [0.9, 0.1]]), ["0", "1"])
    answer = read_stream(arrow_answer(outputs, "m:1"))
    assert answer.column_names == ["prediction", "probability_0", "probability_1"]
    assert answer.to_pydict()["probability_1"] == [0.8, 0.1]
    assert answer.schema.metadata == {b"model": b"m:1"}


def test_a_duplicated_feature_column_is_an_error_not_a_crash():
    table = pa.Table.from_arrays(
        [pa.array([1.0]), pa.array([2.0]), pa.array([3.0]), pa.array(["a"])],
        names=["age", "age", "income level", "city"],
    )
    assert errors_of(body(table)) == [{"type": "duplicate_column", "loc": ("instances", "age")}]


COLUMN_VALUES = st.one_of(
    st.lists(st.none() | st.floats(), min_size=1, max_size=4).map(
        lambda v: pa.array(v, pa.float64())
    ),
    st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=4).map(
        lambda v: pa.array(v, pa.int64())
    ),
    st.lists(st.none() | st.text(max_size=5), min_size=1, max_size=4).map(
        lambda v: pa.array(v, pa.string())
    ),
    st.lists(st.none() | st.booleans(), min_size=1, max_size=4).map(
        lambda v: pa.array(v, pa.bool_())
    ),
    st.lists(st.none(), min_size=1, max_size=4).map(pa.array),
    st.lists(st.text(max_size=3), min_size=1, max_size=4).map(
        lambda v: pa.array(v).dictionary_encode()
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    columns=st.lists(
        st.tuples(st.sampled_from([*SCHEMA.names, "other"]), COLUMN_VALUES), max_size=5
    ),
    rows=st.integers(1, 4),
)
def test_any_arrow_table_is_read_or_rejected_with_a_validation_error(columns, rows):
    arrays = [values.slice(0, rows) for _, values in columns]
    arrays = [a if len(a) == rows else pa.concat_arrays([a] * rows).slice(0, rows) for a in arrays]
    table = pa.Table.from_arrays(arrays, names=[name for name, _ in columns])
    try:
        frame = read_instances(body(table), SCHEMA, max_rows=10)
    except ValidationError:
        return
    assert list(frame.columns) == SCHEMA.names and len(frame) == rows


# --------------------------------------------------------------------------- hostile bodies


@pytest.mark.parametrize(
    ("values", "error_type"),
    [
        (pa.array([1, 2**64 - 1], pa.uint64()), "less_than_equal"),
        (pa.array([1, -(2**63)], pa.int64()), "greater_than_equal"),
        (pa.array([Decimal(1), Decimal("1e30")], pa.decimal128(38, 0)), "less_than_equal"),
        (pa.array([Decimal(1), Decimal("-1e70")], pa.decimal256(76, 0)), "greater_than_equal"),
        (pa.array([1, 3.4e38], pa.float32()), "less_than_equal"),
        (pa.array([1, np.inf], pa.float16()), "finite_number"),
        (pa.array([1, 2**64 - 1], pa.uint64()).dictionary_encode(), "less_than_equal"),
    ],
    ids=["uint64", "int64", "decimal128", "decimal256", "float32", "float16", "dictionary"],
)
def test_out_of_range_numbers_of_any_type_are_located(values, error_type):
    table = pa.table({"age": values, "income level": [1.0, 2.0], "city": ["a", "b"]})
    assert errors_of(body(table)) == [{"type": error_type, "loc": ("instances", 1, "age")}]


def test_a_dictionary_of_string_views_is_read():
    views = pa.array(["lyon", "paris"], pa.string_view())
    city = pa.DictionaryArray.from_arrays(pa.array([1, 0], pa.int8()), views)
    table = pa.table({"age": [1.0, 2.0], "income level": [1.0, 2.0], "city": city})
    assert read_instances(body(table), SCHEMA, 10)["city"].tolist() == ["paris", "lyon"]


@pytest.mark.parametrize("raw", [b"", np.random.default_rng(3).bytes(100_000)], ids=len)
def test_bytes_that_are_no_stream_are_an_error_for_the_whole_body(raw):
    (error,) = details_of(raw)
    assert (error["type"], error["loc"]) == ("arrow_invalid", ())
    assert error["msg"].startswith("body is not an Arrow IPC stream: ")


def test_forty_thousand_columns_are_refused_in_one_pass():
    names = ["age"] * 20_000 + [f"column {i}" for i in range(20_000)]
    table = pa.Table.from_arrays([pa.array([1.0])] * len(names), names=names)
    details = details_of(body(table))
    assert [(d["type"], d["loc"]) for d in details[:4]] == [
        ("duplicate_column", ("instances", "age")),
        ("missing", ("instances", "income level")),
        ("missing", ("instances", "city")),
        ("extra_forbidden", ("instances", "column 0")),
    ]
    assert len(details) == 101 and details[100]["ctx"] == {"total": 20_003, "listed": 100}


def zeros(rows: int) -> pa.Table:
    return pa.table({"age": np.zeros(rows), "income level": np.zeros(rows), "city": ["a"] * rows})


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_a_compressed_body_may_decode_to_at_most_the_limit(codec):
    raw = write(zeros(200_000), compression=codec)  # decodes to 21 bytes a row
    assert len(raw) < 2**20  # under the limit; what it decodes to is not
    assert errors_of(raw, 200_000, max_decoded_bytes=2**20) == [
        {"type": "arrow_too_large", "loc": ("instances",)}
    ]
    assert len(read_instances(raw, SCHEMA, 200_000)) == 200_000  # within the default


def forged_prefix(codec: str, declared: int) -> bytes:
    """A one-column body whose compressed `age` buffer declares `declared` bytes."""
    messages = frames(write(zeros(10), compression=codec))
    offset, _ = read_message(messages[1].metadata).header.buffers[1]
    data = bytearray(messages[1].body)
    struct.pack_into("<q", data, offset, declared)
    messages[1].body = bytes(data)
    return joined(messages)


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_a_declared_length_over_the_limit_is_refused_before_decompressing(codec):
    # decompressing would first allocate a terabyte
    assert errors_of(forged_prefix(codec, 2**40)) == [
        {"type": "arrow_too_large", "loc": ("instances",)}
    ]


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
@pytest.mark.parametrize("declared", [72, 88])  # the buffer holds 80 bytes
def test_pyarrow_refuses_a_buffer_whose_size_is_not_the_one_it_declares(codec, declared):
    raw = forged_prefix(codec, declared)
    with pytest.raises((OSError, pa.ArrowInvalid)):
        read_stream(raw)
    assert errors_of(raw) == [{"type": "arrow_invalid", "loc": ()}]


def test_a_row_count_over_the_limit_is_refused_from_the_metadata():
    messages = frames(write(zeros(3)))
    set_int64(batch_table(messages[1].metadata), BATCH_LENGTH, 2**40)
    details = details_of(joined(messages), max_rows=10)
    assert [(d["type"], d["loc"]) for d in details] == [("too_long", ("instances",))]
    assert details[0]["ctx"] == {"field_type": "List", "max_length": 10, "actual_length": 2**40}


def test_rows_add_up_over_batches():
    raw = write([zeros(6), zeros(5)])
    assert errors_of(raw, max_rows=10) == [{"type": "too_long", "loc": ("instances",)}]
    assert len(read_instances(raw, SCHEMA, 11)) == 11


def with_city(city: pa.Array) -> pa.Table:
    rows = len(city)
    return pa.table({"age": np.zeros(rows), "income level": np.zeros(rows), "city": city})


def test_a_dictionary_may_hold_at_most_max_rows_entries():
    city = pa.DictionaryArray.from_arrays(pa.array([0], pa.int32()), [f"c{i}" for i in range(11)])
    assert errors_of(body(with_city(city)), max_rows=10) == [
        {"type": "arrow_too_large", "loc": ("instances",)}
    ]
    assert read_instances(body(with_city(city)), SCHEMA, 11)["city"].tolist() == ["c0"]


def delta_stream(new_entries: int) -> bytes:
    first = pa.array(["a", "b"]).dictionary_encode()
    entries = ["a", "b", *(f"n{i}" for i in range(new_entries))]
    second = pa.DictionaryArray.from_arrays(pa.array([len(entries) - 1], pa.int32()), entries)
    return write([with_city(first), with_city(second)], deltas=True)


def message_types(raw: bytes) -> list[int]:
    return [read_message(frame.metadata).header_type for frame in frames(raw)]


def test_delta_dictionaries_add_up_to_at_most_max_rows_entries():
    assert message_types(delta_stream(9)) == [SCHEMA_MESSAGE, *[DICTIONARY_BATCH, RECORD_BATCH] * 2]
    assert errors_of(delta_stream(9), max_rows=10) == [
        {"type": "arrow_too_large", "loc": ("instances",)}
    ]
    assert read_instances(delta_stream(8), SCHEMA, 10)["city"].tolist() == ["a", "b", "n7"]


def test_a_dictionary_column_may_not_grow_past_the_limit_once_decoded():
    entry = "x" * 100_000
    city = pa.DictionaryArray.from_arrays(pa.array([0] * 20, pa.int32()), [entry])
    raw = body(with_city(city))
    assert len(raw) < 200_000
    assert errors_of(raw, 20, max_decoded_bytes=2**20) == [
        {"type": "arrow_too_large", "loc": ("instances", "city")}
    ]
    assert read_instances(raw, SCHEMA, 20)["city"].tolist() == [entry] * 20


def shared_views(text: bytes, rows: int) -> pa.Array:
    """A string_view array whose every row points at the same bytes."""
    view = struct.pack("<i4sii", len(text), text[:4], 0, 0)
    return pa.Array.from_buffers(
        pa.string_view(), rows, [None, pa.py_buffer(view * rows), pa.py_buffer(text)]
    )


def test_a_view_column_may_not_grow_past_the_limit_once_decoded():
    text = b"y" * 100_000
    raw = body(with_city(shared_views(text, 20)))
    assert len(raw) < 200_000
    assert errors_of(raw, 20, max_decoded_bytes=2**20) == [
        {"type": "arrow_too_large", "loc": ("instances", "city")}
    ]
    assert read_instances(raw, SCHEMA, 20)["city"].tolist() == [text.decode()] * 20


def test_a_stream_may_hold_at_most_so_many_messages():
    raw = write([zeros(1)] * (MAX_MESSAGES + 1))
    assert errors_of(raw, max_rows=10_000) == [{"type": "arrow_too_large", "loc": ("instances",)}]
    assert len(read_instances(write([zeros(1)] * MAX_MESSAGES), SCHEMA, 10_000)) == MAX_MESSAGES


def test_text_offsets_past_the_data_are_refused_not_read():
    messages = frames(body(with_city(pa.array(["a", "b", "c"]))))
    offsets_at, _ = read_message(messages[1].metadata).header.buffers[-2]  # the city's
    data = bytearray(messages[1].body)
    struct.pack_into("<i", data, offsets_at + 12, 1_000_000)  # the last of four offsets
    messages[1].body = bytes(data)
    assert errors_of(joined(messages)) == [{"type": "arrow_invalid", "loc": ()}]


def test_a_dictionary_field_without_its_dictionary_is_refused():
    raw = body(with_city(pa.array(["a"]).dictionary_encode()))
    assert message_types(raw) == [SCHEMA_MESSAGE, DICTIONARY_BATCH, RECORD_BATCH]
    messages = frames(raw)
    assert errors_of(joined([messages[0], messages[2]])) == [{"type": "arrow_invalid", "loc": ()}]


NUMBERS = FeatureSchema(
    features=[Feature(name="a", kind="numeric"), Feature(name="b", kind="numeric")],
    target="y",
    task="classification",
    classes=[0, 1],
)


def test_a_big_endian_stream_is_read_as_pyarrow_reads_it():
    values = np.array([1, 2, 3], dtype=">i8").view("<i8")  # big-endian bytes
    messages = frames(body(pa.table({"a": values, "b": values})))
    schema = message_table(messages[0].metadata).table(MESSAGE_HEADER)
    point_field(schema, SCHEMA_ENDIANNESS, struct.pack("<h", 1))
    raw = joined(messages)
    assert read_stream(raw).column("a").to_pylist() == [1, 2, 3]
    frame = read_instances(raw, NUMBERS, 10)
    assert frame["a"].tolist() == [1.0, 2.0, 3.0] and frame["b"].tolist() == [1.0, 2.0, 3.0]
