"""The APIs' input specs: JSON bodies in two passes, errors named by feature, Arrow bodies.

A JSON body is parsed straight into a spec by pydantic's compiled validators. Most bodies
hold plain numbers only, so a first pass reads numeric values as strict floats (no Python
code runs); a body it refuses (text, booleans, or an error) is read again under the full
rule of `model.values`, in chunks of instances, which accepts what it should and reports
what it refuses: at most `MAX_REPORTED_ERRORS`, located by instance index and feature
name (`locate_errors`), plus the total. The batch API reads a body of plain number rows
straight into one float64 matrix first (`plain_matrix`: simdjson copies the numbers
(`json_numbers.py`), or msgspec's typed decoder reads rows with nulls, then numpy checks the
shape and the limits), and Arrow IPC streams (`arrow_bodies.py`) column by column; both
skip a validated object per value.

Large bodies are read in a worker thread, so the event loop keeps answering probes and
small requests meanwhile; the chunks keep each step short, so the loop gets its turn.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import anyio.to_thread
import bentoml
import msgspec
import numpy as np
import pydantic_core
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, create_model
from pydantic_core import InitErrorDetails
from starlette.requests import Request

from model.schema import FeatureSchema
from model.values import MAX_ABS_NUMBER, within_limits

from .arrow_bodies import read_columns
from .capture import remember_instances
from .errors import MAX_REPORTED_ERRORS, summarize
from .instances import Columns, PlainNumber, instance_type, instances_field, locate_errors
from .json_numbers import count_byte, number_rows
from .media import ARROW_MEDIA_TYPE, media_type_of

# bodies up to this size are read on the event loop: a thread hop costs more than they do
THREAD_BODY_BYTES = 64 * 2**10
# values the full rule checks per step: about a millisecond each
CHUNK_VALUES = 4096


class InstancesInput(bentoml.IODescriptor):
    """`{"instances": [...]}`; subclasses made by `instances_input` set the class variables."""

    feature_names: ClassVar[list[str]] = []
    feature_schema: ClassVar[FeatureSchema | None] = None
    max_rows: ClassVar[int] = 0
    max_body_bytes: ClassVar[int] = 0
    reads_arrow: ClassVar[bool] = False
    # the batch API's first pass over an all-numeric model's bodies (see `plain_matrix`)
    rows_decoder: ClassVar[msgspec.json.Decoder | None] = None
    plain_spec: ClassVar[type[BaseModel] | None] = None
    envelope_spec: ClassVar[type[BaseModel] | None] = None
    chunk_adapter: ClassVar[TypeAdapter | None] = None

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> Any:
        body = await request.body()
        if len(body) > THREAD_BODY_BYTES:
            spec = await anyio.to_thread.run_sync(cls.from_body, body, request.scope)
        else:
            spec = cls.from_body(body, request.scope)
        return spec

    @classmethod
    def from_body(cls, body: bytes, scope: dict[str, Any]) -> InstancesInput:
        schema = cls.feature_schema
        if cls.reads_arrow and schema is not None and media_type_of(scope) == ARROW_MEDIA_TYPE:
            columns = read_columns(body, schema, cls.max_rows, max_decoded_bytes=cls.max_body_bytes)
            return cls.model_construct(instances=columns)  # checked column by column above
        if cls.rows_decoder is not None and schema is not None:
            matrix = plain_matrix(cls.rows_decoder, body, len(schema.names), cls.max_rows)
            if matrix is not None:
                return cls.model_construct(instances=Columns.of_matrix(matrix, schema))
        spec = cls.from_json(body)
        remember_instances(scope, spec.instances)
        return spec

    @classmethod
    def from_json(cls, body: bytes) -> InstancesInput:
        """The spec of a JSON body: the plain pass when it suffices, else the full rule.

        A small body is read straight from its bytes. A large one is parsed first, so that
        an instance with more keys than the model has features (each an error to build)
        skips the plain pass and costs the full rule one error per listed key only.
        """
        body = body or b"{}"
        if cls.plain_spec is None or cls.envelope_spec is None:
            try:
                return cls.model_validate_json(body)
            except ValidationError as error:
                raise locate_errors(error, cls.feature_names) from None
        if len(body) <= THREAD_BODY_BYTES:
            try:
                plain = cls.plain_spec.model_validate_json(body)
            except ValidationError:
                pass  # the full rule decides, and says what is wrong
            else:
                return cls.model_construct(instances=plain.instances)
            return cls._full_rule(_parsed(body))
        parsed = _parsed(body)
        if _no_wide_objects(parsed, len(cls.feature_names)):
            try:
                plain = cls.plain_spec.model_validate(parsed)
            except ValidationError:
                pass
            else:
                return cls.model_construct(instances=plain.instances)
        return cls._full_rule(parsed)

    @classmethod
    def _full_rule(cls, parsed: Any) -> InstancesInput:
        """The full rule over a parsed body, a chunk at a time, keeping the first errors."""
        assert cls.envelope_spec is not None and cls.chunk_adapter is not None
        try:
            envelope = cls.envelope_spec.model_validate(parsed)
        except ValidationError as error:
            raise locate_errors(error, cls.feature_names) from None
        instances: list[Any] = envelope.instances
        names = cls.feature_names
        rows_per_chunk = max(1, CHUNK_VALUES // max(1, len(names)))
        validated: list[Any] = []
        details: list[InitErrorDetails] = []
        total = 0
        for start in range(0, len(instances), rows_per_chunk):
            chunk = instances[start : start + rows_per_chunk]
            extra_count, extra_details = _extra_keys(chunk, start, names, MAX_REPORTED_ERRORS)
            total += extra_count
            try:
                checked = cls.chunk_adapter.validate_python(chunk)
            except ValidationError as error:
                total += error.error_count()
                if len(details) < MAX_REPORTED_ERRORS:
                    details += _shifted(error, start)
            else:
                validated += checked
            if len(details) < MAX_REPORTED_ERRORS:
                details += extra_details
        if total:
            located = locate_errors(
                ValidationError.from_exception_data("Input", details[:MAX_REPORTED_ERRORS]),
                cls.feature_names,
            )
            raise ValidationError.from_exception_data("Input", summarize(_details(located), total))
        return cls.model_construct(instances=validated)


class _PlainRows(msgspec.Struct):
    instances: list[list[float | None]]


def plain_matrix(
    decoder: msgspec.json.Decoder, body: bytes, width: int, max_rows: int
) -> np.ndarray | None:
    """A body holding plain number rows only, as a float64 matrix (NaN for null); None
    when it holds anything else, for the passes that follow to decide and explain.

    What it takes, the full rule takes with the same values: JSON numbers (never
    booleans or text, and JSON has no NaN or infinity) within ±1e15, and null, in rows
    of `width` values, 1 to `max_rows` of them. A body with more brackets or commas than
    that many rows have is left alone before it is decoded, so that the objects built for
    it are bounded by the rows accepted, not by the body's size.
    """
    brackets = count_byte(body, b"[")
    if brackets > max_rows + 1 or count_byte(body, b",") >= max_rows * width + 1:
        return None
    # simdjson's pass takes a body of one key and numbers only; msgspec's also reads null
    # (as NaN) and other keys. A body goes to one of them, so none is parsed twice. An "l"
    # is in null and false, and nowhere in a number or in "instances".
    if count_byte(body, b'"') == 2 and not count_byte(body, b"l"):
        matrix = number_rows(body, width, max_rows, brackets=brackets)
    else:
        matrix = _decoded_rows(decoder, body, width, max_rows)
    if matrix is None:
        return None
    if within_limits(matrix):
        return matrix
    with np.errstate(invalid="ignore"):  # a null's NaN fails the test above, and is allowed
        beyond = np.abs(matrix) > MAX_ABS_NUMBER
    return None if beyond.any() else matrix


def _decoded_rows(
    decoder: msgspec.json.Decoder, body: bytes, width: int, max_rows: int
) -> np.ndarray | None:
    try:
        rows = decoder.decode(body).instances
    except msgspec.DecodeError:  # also a value of another type, or a number beyond float64
        return None
    if not 1 <= len(rows) <= max_rows:
        return None
    try:
        matrix = np.array(rows, dtype=np.float64)
    except ValueError:  # rows of different lengths
        return None
    return matrix if matrix.shape == (len(rows), width) else None


def _parsed(body: bytes) -> Any:
    try:
        return pydantic_core.from_json(body)
    except ValueError as error:  # not JSON: pydantic's own message
        raise _invalid_json(error) from None


def _no_wide_objects(parsed: Any, width: int) -> bool:
    """False if an instance is an object with more keys than there are features."""
    instances = parsed.get("instances") if isinstance(parsed, dict) else None
    if not isinstance(instances, list):
        return True
    return not any(isinstance(i, dict) and len(i) > width for i in instances)


def _extra_keys(
    chunk: list[Any], start: int, names: list[str], most: int
) -> tuple[int, list[InitErrorDetails]]:
    """Takes the keys that are no feature out of the chunk's objects (in place), as the
    instance type would refuse them, but listing at most `most`: (count, first ones)."""
    count = 0
    details: list[InitErrorDetails] = []
    known = set(names)
    for offset, instance in enumerate(chunk):
        if not isinstance(instance, dict) or len(instance) <= len(names):
            continue
        extra = [key for key in instance if key not in known]
        count += len(extra)
        for key in extra[: max(most - len(details), 0)]:
            loc = ("instances", start + offset, key)
            details.append({"type": "extra_forbidden", "loc": loc, "input": instance[key]})
        chunk[offset] = {key: value for key, value in instance.items() if key in known}
    return count, details


def _invalid_json(error: ValueError) -> ValidationError:
    return ValidationError.from_exception_data(
        "Input",
        [{"type": "json_invalid", "loc": (), "input": None, "ctx": {"error": str(error)}}],
    )


def _shifted(error: ValidationError, start: int) -> list[InitErrorDetails]:
    """A chunk's errors located in the body: `(3, ...)` is `("instances", start + 3, ...)`."""
    shifted: list[InitErrorDetails] = []
    for detail in error.errors():
        index, *rest = detail["loc"]
        shifted.append(
            {
                "type": detail["type"],
                "loc": ("instances", start + int(index), *rest),
                "input": detail["input"],
                "ctx": detail.get("ctx", {}),
            }
        )
    return shifted


def _details(error: ValidationError) -> list[InitErrorDetails]:
    return [
        {
            "type": detail["type"],
            "loc": detail["loc"],
            "input": detail["input"],
            "ctx": detail.get("ctx", {}),
        }
        for detail in error.errors()
    ]


def instances_input(
    schema: FeatureSchema | None,
    max_rows: int,
    *,
    reads_arrow: bool = False,
    max_body_bytes: int = 64 * 2**20,
) -> type[InstancesInput]:
    spec = create_model(
        "Input", __base__=InstancesInput, instances=(instances_field(schema, max_rows), ...)
    )
    if schema is not None:
        plain = instances_field(schema, max_rows, PlainNumber, fail_fast=True)
        spec.plain_spec = create_model(
            "PlainInput", __base__=InstancesInput, instances=(plain, ...)
        )
        any_instances = Annotated[list[Any], Field(min_length=1, max_length=max_rows)]
        spec.envelope_spec = create_model("Input", instances=(any_instances, ...))
        spec.chunk_adapter = TypeAdapter(list[instance_type(schema)])  # type: ignore[misc]
    spec.feature_names = schema.names if schema is not None else []
    spec.feature_schema = schema
    spec.max_rows = max_rows
    spec.max_body_bytes = max_body_bytes
    spec.reads_arrow = reads_arrow
    if reads_arrow and schema is not None and not schema.categorical:
        spec.rows_decoder = msgspec.json.Decoder(_PlainRows)
    return spec
