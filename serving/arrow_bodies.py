"""Arrow IPC stream bodies: instances column by column, checked without a Python object per value.

JSON costs a parsed object per number; an Arrow stream is binary columns, so a
10,000-row body is read and checked with a few vectorised operations. Values follow the
same rule as JSON instances (`model.values`), and errors have the same shape: a value is
located as `("instances", row, feature)`, a whole column as `("instances", feature)`.

A stream's cost is bounded before it is paid. Its messages are read one by one, and the
metadata of each (`ipc_metadata`) gives the rows of every record batch, the entries of
every dictionary and what every buffer takes once decoded (for a compressed buffer, the
uncompressed length it declares), all before any batch is decoded. A body whose rows,
dictionaries, decoded size or message count are over the limits, or whose columns are
not the model's, is refused with nothing decoded. Once decoded, the arrays are fully
validated before any kernel reads them, and dictionary and view columns are refused if
they would grow past the decoded-size limit when made plain.

Anything pyarrow cannot read is an `arrow_invalid` error for the whole body; at most
`MAX_REPORTED_ERRORS` errors are listed, then one that counts them all (`errors.summarize`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from model import values
from model.schema import Feature, FeatureSchema

from . import ipc_metadata
from .errors import ARROW_TOO_LARGE, MAX_REPORTED_ERRORS, summarize
from .instances import Columns
from .ipc_metadata import BatchMetadata, DictionaryMetadata, MetadataError, SchemaMetadata

# What a body may decode to (buffers decompressed, dictionaries and views made plain).
MAX_DECODED_BYTES: Final = 64 * 2**20
# Messages after the schema: a few per body from usual writers, each costing a little.
MAX_MESSAGES: Final = 2048
TITLE: Final = "Input"

# What pyarrow raises for a stream it cannot read, and what the metadata reader raises.
_UNREADABLE: Final = (
    ValueError,  # ArrowInvalid, MetadataError, UnicodeDecodeError (a name that is not UTF-8)
    OSError,  # pyarrow's IOError status: framing and flatbuffer verification
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    pa.ArrowIndexError,
    pa.ArrowKeyError,
    pa.ArrowCapacityError,
    pa.ArrowSerializationError,
)
_MAX_REASON_CHARACTERS: Final = 300


def read_instances(
    body: bytes,
    schema: FeatureSchema,
    max_rows: int,
    *,
    max_decoded_bytes: int = MAX_DECODED_BYTES,
) -> pd.DataFrame:
    """The instances of an Arrow IPC stream as the model's frame, or a ValidationError."""
    return read_columns(body, schema, max_rows, max_decoded_bytes=max_decoded_bytes).frame()


def read_columns(
    body: bytes,
    schema: FeatureSchema,
    max_rows: int,
    *,
    max_decoded_bytes: int = MAX_DECODED_BYTES,
) -> Columns:
    """The instances of an Arrow IPC stream column by column, or a ValidationError.

    `max_decoded_bytes` bounds what the body may decode to: its buffers decompressed, its
    dictionary and view columns made plain.
    """
    with _unreadable_as_error():
        stream = _scan(body)
    _refuse(_stream_errors(stream, schema, max_rows, max_decoded_bytes))
    with _unreadable_as_error():
        table = _decode(stream, body)
    columns = [(feature, table.column(feature.name)) for feature in schema.features]
    _refuse(_growth_errors(columns, stream.decoded_bytes, max_decoded_bytes))
    return Columns(schema, _checked_values(columns))


def _checked_values(columns: list[tuple[Feature, pa.ChunkedArray]]) -> dict[str, np.ndarray]:
    """Each feature's values checked by the rule; a ValidationError if any is refused."""
    checked: dict[str, np.ndarray] = {}
    listed: list[InitErrorDetails] = []
    total = 0
    for feature, column in columns:
        budget = MAX_REPORTED_ERRORS - len(listed)
        if feature.kind == "numeric":
            result = values.number_column(column, budget)
        else:
            result = values.category_column(column, budget)
        checked[feature.name] = result.values
        listed += [_value_error(problem, feature.name) for problem in result.problems]
        total += result.refused_count
    if total:
        raise ValidationError.from_exception_data(TITLE, summarize(listed, total))
    return checked


def write_instances(frame: pd.DataFrame) -> bytes:
    """A frame as an Arrow IPC stream body (what clients send; tests and benchmarks use it)."""
    return write_table(pa.Table.from_pandas(frame, preserve_index=False))


def read_stream(body: bytes) -> pa.Table:
    """An Arrow IPC stream as a table (raises pyarrow's errors)."""
    return pa.ipc.open_stream(pa.py_buffer(body)).read_all()


def write_table(table: pa.Table, metadata: dict[str, str] | None = None) -> bytes:
    """A table as an Arrow IPC stream, with `metadata` on its schema."""
    if metadata:
        table = table.replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


# --------------------------------------------------------------------------- the stream


@dataclass
class _Stream:
    """What a stream's metadata says, read before any batch is decoded."""

    schema: pa.Schema
    names: list[str]  # the columns' (pyarrow decodes the UTF-8 here, and may fail)
    big_endian: bool
    batches: list[pa.ipc.Message] = field(default_factory=list)
    rows: int = 0
    decoded_bytes: int = 0
    dictionary_entries: dict[int, int] = field(default_factory=dict)  # deltas added up


class _TooManyMessages(Exception):
    """More messages than `MAX_MESSAGES`: the scan stops there."""


def _scan(body: bytes) -> _Stream:
    """The stream's schema and, from each message's metadata, its cost; nothing decoded."""
    reader = pa.ipc.MessageReader.open_stream(pa.py_buffer(body))
    first = _next_message(reader)
    if first is None:
        raise MetadataError("the stream is empty")
    header = ipc_metadata.read_message(first.metadata).header
    if not isinstance(header, SchemaMetadata):
        raise MetadataError("the stream does not start with a schema")
    schema = pa.ipc.read_schema(first)
    stream = _Stream(schema, schema.names, header.big_endian)
    count = 0
    while (message := _next_message(reader)) is not None:
        count += 1
        if count > MAX_MESSAGES:
            raise _TooManyMessages
        _add(stream, message)
    return stream


def _next_message(reader: pa.ipc.MessageReader) -> pa.ipc.Message | None:
    try:
        return reader.read_next_message()
    except StopIteration:
        return None


def _add(stream: _Stream, message: pa.ipc.Message) -> None:
    header = ipc_metadata.read_message(message.metadata).header
    if isinstance(header, BatchMetadata):
        stream.batches.append(message)
        stream.rows += header.length
        stream.decoded_bytes += ipc_metadata.decoded_bytes(header, message.body)
    elif isinstance(header, DictionaryMetadata):
        entries = stream.dictionary_entries
        previous = entries.get(header.id, 0) if header.is_delta else 0
        entries[header.id] = previous + header.data.length
        stream.decoded_bytes += ipc_metadata.decoded_bytes(header.data, message.body)
    else:
        raise MetadataError(f"a {message.type} message inside the stream")


def _decode(stream: _Stream, body: bytes) -> pa.Table:
    """The stream's batches decoded and fully validated (offsets, indices, UTF-8 text).

    Without dictionaries, or bytes to swap, the messages already read are decoded one by
    one; otherwise pyarrow's stream reader reads the body again, as it resolves them. (A
    schema with a dictionary field and no dictionary message is refused either way.)
    """
    if stream.dictionary_entries or stream.big_endian:
        reader = pa.ipc.open_stream(pa.py_buffer(body))
        schema, batches = reader.schema, list(reader)  # the schema in native byte order
    else:
        schema = stream.schema
        batches = [pa.ipc.read_record_batch(message, schema) for message in stream.batches]
    for batch in batches:
        batch.validate(full=True)
    return pa.Table.from_batches(batches, schema)


@contextmanager
def _unreadable_as_error() -> Iterator[None]:
    try:
        yield
    except _TooManyMessages:
        reason = f"more than {MAX_MESSAGES} messages in the stream"
        raise _error(_too_large(reason, ("instances",))) from None
    except _UNREADABLE as exc:
        raise _error(_unreadable(exc)) from None


def _unreadable(exc: BaseException) -> InitErrorDetails:
    reason = str(exc).strip() or type(exc).__name__
    if len(reason) > _MAX_REASON_CHARACTERS:
        reason = reason[: _MAX_REASON_CHARACTERS - 1] + "…"
    return _detail("arrow_invalid", "body is not an Arrow IPC stream: {reason}", (), reason=reason)


# --------------------------------------------------------------------------- the checks


def _refuse(errors: Iterable[InitErrorDetails]) -> None:
    """Raises the first errors and their count, if there is any."""
    listed: list[InitErrorDetails] = []
    total = 0
    for error in errors:
        total += 1
        if len(listed) < MAX_REPORTED_ERRORS:
            listed.append(error)
    if total:
        raise ValidationError.from_exception_data(TITLE, summarize(listed, total))


def _stream_errors(
    stream: _Stream, schema: FeatureSchema, max_rows: int, max_decoded_bytes: int
) -> Iterator[InitErrorDetails]:
    yield from _row_errors(stream.rows, max_rows)
    if stream.decoded_bytes > max_decoded_bytes:
        reason = f"it decodes to {stream.decoded_bytes} bytes, over {max_decoded_bytes}"
        yield _too_large(reason, ("instances",))
    for dictionary, entries in stream.dictionary_entries.items():
        if entries > max_rows:
            reason = f"dictionary {dictionary} holds {entries} entries, over {max_rows}"
            yield _too_large(reason, ("instances",))
    yield from _column_errors(stream.schema, stream.names, schema)


def _row_errors(rows: int, max_rows: int) -> Iterator[InitErrorDetails]:
    if rows == 0:
        yield {
            "type": "too_short",
            "loc": ("instances",),
            "input": None,
            "ctx": {"field_type": "List", "min_length": 1, "actual_length": 0},
        }
    elif rows > max_rows:
        yield {
            "type": "too_long",
            "loc": ("instances",),
            "input": None,
            "ctx": {"field_type": "List", "max_length": max_rows, "actual_length": rows},
        }


def _column_errors(
    arrow_schema: pa.Schema, names: list[str], schema: FeatureSchema
) -> Iterator[InitErrorDetails]:
    """Duplicated, missing, mistyped and extra columns, in one pass over the names."""
    counts = Counter(names)
    duplicated = sorted(name for name, count in counts.items() if count > 1)
    for name in duplicated:
        yield _detail("duplicate_column", "column appears more than once", ("instances", name))
    for feature in schema.features:
        count = counts.get(feature.name, 0)
        if count == 0:
            yield {"type": "missing", "loc": ("instances", feature.name), "input": None}
        elif count == 1 and not _accepted_type(arrow_schema.field(feature.name).type, feature):
            kind = "float_type" if feature.kind == "numeric" else "string_type"
            yield {"type": kind, "loc": ("instances", feature.name), "input": None}
    expected = set(schema.names)
    for name in names:
        if name not in expected:
            yield {"type": "extra_forbidden", "loc": ("instances", name), "input": None}


def _accepted_type(arrow_type: pa.DataType, feature: Feature) -> bool:
    if feature.kind == "numeric":
        return values.number_type_accepted(arrow_type)
    return values.category_type_accepted(arrow_type)


def _growth_errors(
    columns: list[tuple[Feature, pa.ChunkedArray]], decoded_bytes: int, max_decoded_bytes: int
) -> Iterator[InitErrorDetails]:
    """Text columns that would grow past the limit when made plain: a dictionary repeats
    its entries, a view column may point at the same bytes row after row."""
    total = decoded_bytes
    for feature, column in columns:
        if column.type.id not in _GROWING_TYPE_IDS:
            continue
        grown = sum(_plain_text_bytes(chunk) for chunk in column.chunks)
        total += grown
        if total > max_decoded_bytes:
            reason = f"its text takes {grown} bytes once decoded; in all, over {max_decoded_bytes}"
            yield _too_large(reason, ("instances", feature.name))


# string_view and binary_view came with pyarrow 16
_VIEW_TYPE_IDS: Final = frozenset(
    getattr(pa, name)().id for name in ("string_view", "binary_view") if hasattr(pa, name)
)
_GROWING_TYPE_IDS: Final = _VIEW_TYPE_IDS | {pa.dictionary(pa.int8(), pa.string()).id}
_TEXT_TYPE_IDS: Final = _VIEW_TYPE_IDS | {
    t.id for t in (pa.string(), pa.large_string(), pa.binary(), pa.large_binary())
}


def _plain_text_bytes(array: pa.Array) -> int:
    """The bytes of text a dictionary or view array holds once made plain (0 for others)."""
    if pa.types.is_dictionary(array.type):
        if array.dictionary.type.id not in _TEXT_TYPE_IDS:
            return 0
        lengths = _text_lengths(array.dictionary)
        indices = array.indices.fill_null(0).to_numpy()
        valid = array.is_valid().to_numpy(zero_copy_only=False)
        return int(lengths[indices[valid]].sum())
    return int(_text_lengths(array).sum())


def _text_lengths(array: pa.Array) -> np.ndarray:
    """Each value's length in bytes, 0 for null (text: plain or views)."""
    if not len(array):  # its buffers may be absent
        return np.zeros(0, dtype=np.int64)
    if array.type.id in _VIEW_TYPE_IDS:
        # a view is 16 bytes starting with its value's length as an int32
        views = np.frombuffer(array.buffers()[1], dtype="<i4")
        lengths = views[4 * array.offset : 4 * (array.offset + len(array)) : 4].astype(np.int64)
    else:
        import pyarrow.compute as pc  # tens of milliseconds to import: only here

        lengths = pc.binary_length(array).fill_null(0).to_numpy().astype(np.int64)
    if array.null_count:
        lengths[~array.is_valid().to_numpy(zero_copy_only=False)] = 0
    return lengths


# --------------------------------------------------------------------------- the details


# the context pydantic's error types need for their messages, as the JSON path gives them
_ERROR_CONTEXT = {
    values.TOO_HIGH: {"le": values.MAX_ABS_NUMBER},
    values.TOO_LOW: {"ge": -values.MAX_ABS_NUMBER},
}


def _value_error(problem: values.Problem, name: str) -> InitErrorDetails:
    """A refused value as the JSON path reports it: pydantic's error type and message."""
    return {
        "type": problem.kind,
        "loc": ("instances", problem.row, name),
        "input": problem.value,
        "ctx": _ERROR_CONTEXT.get(problem.kind, {}),
    }


def _too_large(reason: str, loc: tuple) -> InitErrorDetails:
    return _detail(ARROW_TOO_LARGE, "body too large: {reason}", loc, reason=reason)


def _detail(kind: str, message: str, loc: tuple, **context: object) -> InitErrorDetails:
    return {"type": PydanticCustomError(kind, message, context), "loc": loc, "input": None}


def _error(detail: InitErrorDetails) -> ValidationError:
    return ValidationError.from_exception_data(TITLE, [detail])
