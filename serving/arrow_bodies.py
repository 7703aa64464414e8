"""Arrow IPC stream bodies: instances column by column, checked without a Python object per value.

JSON costs a parsed object per number; an Arrow stream is binary columns, so a
10,000-row body is read and checked with a few vectorised operations. Values follow the
same rule as JSON instances (`model.values`), and errors have the same shape: a value is
located as `("instances", row, feature)`, a whole column as `("instances", feature)`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from model import values
from model.schema import Feature, FeatureSchema

MAX_REPORTED_ERRORS = 100
TITLE = "Input"


def read_instances(body: bytes, schema: FeatureSchema, max_rows: int) -> pd.DataFrame:
    """The instances of an Arrow IPC stream as the model's frame, or a ValidationError."""
    table = _read_stream(body)
    errors = list(_shape_errors(table, schema, max_rows))
    if errors:
        raise ValidationError.from_exception_data(TITLE, errors[:MAX_REPORTED_ERRORS])
    columns: dict[str, np.ndarray] = {}
    for feature in schema.features:
        column = table.column(feature.name)
        if feature.kind == "numeric":
            checked = values.number_column(column, MAX_REPORTED_ERRORS)
        else:
            checked = values.category_column(column, MAX_REPORTED_ERRORS)
        columns[feature.name] = checked.values
        errors += [_value_error(problem, feature.name) for problem in checked.problems]
    if errors:
        raise ValidationError.from_exception_data(TITLE, errors[:MAX_REPORTED_ERRORS])
    if not schema.categorical:  # one float block, as a frame built from a matrix has
        matrix = np.column_stack([columns[name] for name in schema.names])
        return pd.DataFrame(matrix, columns=schema.names)
    return pd.DataFrame(columns, columns=schema.names)


def write_instances(frame: pd.DataFrame) -> bytes:
    """A frame as an Arrow IPC stream body (what clients send; tests and benchmarks use it)."""
    return write_table(pa.Table.from_pandas(frame, preserve_index=False))


def read_stream(body: bytes) -> pa.Table:
    """An Arrow IPC stream as a table (raises pyarrow's errors)."""
    return pa.ipc.open_stream(pa.py_buffer(body)).read_all()


def _read_stream(body: bytes) -> pa.Table:
    try:
        return read_stream(body)
    except (pa.ArrowException, ValueError) as exc:
        raise ValidationError.from_exception_data(
            TITLE,
            [
                _detail(
                    "arrow_invalid",
                    "body is not an Arrow IPC stream: {reason}",
                    (),
                    reason=str(exc),
                )
            ],
        ) from None


def _detail(kind: str, message: str, loc: tuple, **context: object) -> InitErrorDetails:
    return {"type": PydanticCustomError(kind, message, context), "loc": loc, "input": None}


def _shape_errors(
    table: pa.Table, schema: FeatureSchema, max_rows: int
) -> Iterator[InitErrorDetails]:
    rows = table.num_rows
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
    names = table.column_names
    expected = set(schema.names)
    duplicated = sorted({n for n in names if names.count(n) > 1})
    for name in duplicated:
        yield _detail("duplicate_column", "column appears more than once", ("instances", name))
    for feature in schema.features:
        if feature.name not in names:
            yield {"type": "missing", "loc": ("instances", feature.name), "input": None}
        elif feature.name in duplicated:
            continue
        elif not _accepted_type(table.schema.field(feature.name).type, feature):
            kind = "float_type" if feature.kind == "numeric" else "string_type"
            yield {"type": kind, "loc": ("instances", feature.name), "input": None}
    for name in names:
        if name not in expected:
            yield {"type": "extra_forbidden", "loc": ("instances", name), "input": None}


def _accepted_type(arrow_type: pa.DataType, feature: Feature) -> bool:
    if feature.kind == "numeric":
        return values.number_type_accepted(arrow_type)
    return values.category_type_accepted(arrow_type)


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


def write_table(table: pa.Table, metadata: dict[str, str] | None = None) -> bytes:
    """A table as an Arrow IPC stream, with `metadata` on its schema."""
    if metadata:
        table = table.replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
