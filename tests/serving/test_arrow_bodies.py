"""Arrow IPC bodies: read into the model's frame with the checks JSON instances get."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from model.outputs import Outputs
from serving.arrow_bodies import read_instances, read_stream, write_instances, write_table
from serving.instances import to_frame
from serving.responses import arrow_answer

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


def errors_of(raw: bytes, max_rows: int = 10) -> list[dict]:
    with pytest.raises(ValidationError) as caught:
        read_instances(raw, SCHEMA, max_rows)
    return [{"type": e["type"], "loc": e["loc"]} for e in caught.value.errors()]


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


def test_at_most_a_hundred_errors_are_reported():
    table = pa.table(
        {"age": np.full(1_000, np.inf), "income level": np.ones(1_000), "city": ["a"] * 1_000}
    )
    assert len(errors_of(body(table), max_rows=1_000)) == 100


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
