"""The served model in the Open Inference Protocol (v2): metadata, requests, answers.

A request's tensors come in one of two forms: one `[N, F]` numeric tensor in schema order
(all-numeric models), or one tensor per feature, named by it, `[N]` or `[N, 1]` (BYTES
for text). Its shapes are checked before any data is read, its values by the one rule of
`model.values`, vectorised, and every refusal names the tensor and the index. Flat JSON
numbers of an all-numeric model, the common request, are first read by msgspec's typed
decoder, a long `data` list by simdjson (`plain_call`), which take only what that full
reading takes. The answer holds `predict` (labels) and, for classifiers, `predict_proba`
(`[N, C]`, the class order in the model's metadata), as JSON data or binary tensors, as
the request asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from typing import Annotated, Any, Final, NamedTuple

import msgspec
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from model.outputs import Outputs
from model.schema import FeatureSchema
from model.values import (
    MAX_ABS_NUMBER,
    CategoryColumn,
    NumberColumn,
    Problem,
    category_column,
    number_column,
    within_limits,
)

from .json_numbers import number_list
from .responses import json_answer
from .v2_tensors import (
    BYTES,
    INTEGER_TYPES,
    NUMBER_TYPES,
    Tensor,
    TensorError,
    binary_data,
    binary_size,
    check_datatype,
    from_binary,
    from_json,
    json_data,
)

SERVER_NAME: Final = "tabular-model"
EXTENSIONS: Final = ("binary_tensor_data",)
MATRIX_INPUT: Final = "input"
PREDICT: Final = "predict"
PREDICT_PROBA: Final = "predict_proba"
HEADER_LENGTH: Final = "inference-header-content-length"
BINARY_MEDIA_TYPE: Final = "application/octet-stream"
LISTED_PROBLEMS: Final = 5


class V2Error(Exception):
    """A request refused: answered as `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ------------------------------------------------------------------------ request shape

Dimension = Annotated[StrictInt, Field(ge=0)]


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    shape: list[Dimension]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = Field(
        default=None, description="Flat or nested, row-major; absent for binary tensors."
    )


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    """An inference request (`binary_data_output` in `parameters` asks for binary answers)."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: Annotated[list[RequestInput], Field(min_length=1)]
    outputs: list[RequestOutput] | None = None


# -------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class ServedModel:
    """The served model as v2 clients see it: its name, version and tensors."""

    name: str
    version: str
    schema: FeatureSchema | None

    @classmethod
    def of(cls, tag: str, schema: FeatureSchema | None) -> ServedModel:
        name, _, version = tag.partition(":")
        return cls(name, version, schema)

    @property
    def infer_paths(self) -> tuple[str, str]:
        base = f"/v2/models/{self.name}"
        return f"{base}/infer", f"{base}/versions/{self.version}/infer"

    @property
    def per_feature(self) -> bool:
        return self.schema is None or bool(self.categorical)

    # read on every infer: listed once
    @cached_property
    def feature_names(self) -> list[str]:
        return [] if self.schema is None else self.schema.names

    @cached_property
    def categorical(self) -> list[str]:
        return [] if self.schema is None else self.schema.categorical

    @cached_property
    def output_names(self) -> tuple[str, ...]:
        if self.schema is not None and self.schema.task == "classification":
            return (PREDICT, PREDICT_PROBA)
        return (PREDICT,)

    @cached_property
    def predict_datatype(self) -> str:
        schema = self.schema
        if schema is None or schema.task != "classification":
            return "FP64"
        classes = schema.classes or []
        if classes and all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
            return "INT64"
        if classes and all(isinstance(c, float) for c in classes):
            return "FP64"
        return BYTES

    def metadata(self) -> dict[str, Any]:
        schema = self.schema
        assert schema is not None
        if self.per_feature:
            inputs = [
                {
                    "name": f.name,
                    "datatype": "FP64" if f.kind == "numeric" else BYTES,
                    "shape": [-1],
                }
                for f in schema.features
            ]
        else:
            inputs = [{"name": MATRIX_INPUT, "datatype": "FP64", "shape": [-1, len(schema.names)]}]
        outputs = [{"name": PREDICT, "datatype": self.predict_datatype, "shape": [-1]}]
        parameters: dict[str, Any] = {
            "task": schema.task,
            "features": schema.names,
            "input_form": "per_feature" if self.per_feature else "matrix",
        }
        if PREDICT_PROBA in self.output_names:
            classes = schema.classes or []
            outputs.append({"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, len(classes)]})
            parameters["classes"] = classes
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "scikit-learn",
            "inputs": inputs,
            "outputs": outputs,
            "parameters": parameters,
        }


# ----------------------------------------------------------------------- reading calls


class Requested(NamedTuple):
    name: str
    binary: bool


@dataclass
class InferCall:
    """A request read and checked: the rows' values per feature, what to answer."""

    id: str | None
    rows: int
    # per feature, float64 (NaN missing) or object (None missing); None when `matrix` is set
    columns: dict[str, np.ndarray] | None
    outputs: tuple[Requested, ...]
    names: list[str] = field(default_factory=list)
    answer: Outputs | None = None  # once answered
    # the [N, F] float64 values, when the request was one matrix
    matrix: np.ndarray | None = None
    _instances: list[tuple[Any, ...]] | None = field(default=None, repr=False, compare=False)

    def frame(self) -> pd.DataFrame:
        if self.matrix is not None:
            return pd.DataFrame(self.matrix, columns=self.names)
        return pd.DataFrame(self.columns, columns=self.names)

    def instances(self) -> list[tuple[Any, ...]]:
        """The rows as the payload log and the batcher take them: None where missing."""
        if self._instances is None:
            self._instances = self._rows()
        return self._instances

    def _rows(self) -> list[tuple[Any, ...]]:
        if self.matrix is not None:
            rows = self.matrix.tolist()
            if np.isnan(np.add.reduce(self.matrix, axis=None)):  # NaN only where missing
                return [tuple(None if v != v else v for v in row) for row in rows]
            return list(map(tuple, rows))
        assert self.columns is not None
        lists = []
        for values in self.columns.values():
            column = values.tolist()
            if values.dtype.kind == "f":
                column = [None if v != v else v for v in column]
            lists.append(column)
        return list(zip(*lists, strict=True))


def read_call(
    body: bytes, header_length: str | None, model: ServedModel, max_rows: int
) -> InferCall:
    """The checked call of a request body; raises V2Error (400) naming what is wrong."""
    header, binary = _split(body, header_length)
    plain = None if binary else plain_call(header, model, max_rows)
    return plain if plain is not None else full_call(header, binary, model, max_rows)


def full_call(header: bytes, binary: memoryview, model: ServedModel, max_rows: int) -> InferCall:
    """A request read by pydantic and the one rule of `model.values`: any request, any
    refusal. `read_call` goes here for what the plain-number pass does not take."""
    try:
        request = InferenceRequest.model_validate_json(header or b"{}")
    except ValidationError as error:
        raise V2Error(400, _first_problem(error)) from None
    schema = model.schema
    assert schema is not None
    names = model.feature_names
    try:
        rows, matrix = _plan(request.inputs, model, max_rows)
        width = len(names) if matrix else 1
        # plain numbers skip Arrow; anything else, and every refusal, goes by the rule
        values = None if binary else _plain_numbers(request.inputs, model, rows * width)
        if values is None:
            tensors = _tensors(request.inputs, binary, rows * width)
            if matrix:
                values = [_matrix_values(tensors[0], schema)]
            else:
                values = list(_columns(tensors, schema).values())
    except TensorError as error:
        raise V2Error(400, str(error)) from None
    requested = _requested(request, model)
    if not matrix:
        columns = dict(zip(names, values, strict=True))
        return InferCall(request.id, rows, columns, requested, names)
    matrix_values = values[0].reshape(-1, width)
    return InferCall(request.id, rows, None, requested, names, matrix=matrix_values)


def _split(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    text = header_length.strip()
    if not text.isdigit() or int(text) > len(body):
        raise V2Error(
            400,
            f"Inference-Header-Content-Length is {header_length!r}: it must be the length of "
            f"the JSON header, a whole number of at most the body's {len(body)} bytes",
        )
    cut = int(text)
    return body[:cut], memoryview(body)[cut:]


def _first_problem(error: ValidationError) -> str:
    detail = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in detail["loc"]) or "body"
    more = f" ({error.error_count()} problems in all)" if error.error_count() > 1 else ""
    return f"invalid inference request: {where}: {detail['msg']}{more}"


def _plan(
    inputs: Sequence[RequestInput] | Sequence[_PlainInput], model: ServedModel, max_rows: int
) -> tuple[int, bool]:
    """The row count, and whether the form is one [N, F] tensor: from the shapes alone."""
    names, categorical = model.feature_names, model.categorical
    first = inputs[0]
    matrix = len(inputs) == 1 and len(first.shape) == 2
    matrix = matrix and not (first.name in names and first.shape[1] == 1 and len(names) > 1)
    if matrix:
        if categorical:
            raise TensorError(
                f"tensor '{first.name}': this model has categorical features "
                f"({', '.join(categorical)}): send one tensor per feature, named by it"
            )
        if first.shape[1] != len(names):
            raise TensorError(
                f"tensor '{first.name}': shape {first.shape}: this model takes [N, {len(names)}], "
                "its features in schema order"
            )
        if first.datatype not in NUMBER_TYPES:
            check_datatype(first.name, first.datatype)
            raise TensorError(
                f"tensor '{first.name}': datatype {first.datatype}: the [N, F] form takes numbers "
                "(FP64 or FP32)"
            )
        return _rows(first, max_rows), True
    seen: set[str] = set()
    known = set(names)
    rows = -1
    for tensor in inputs:
        if tensor.name not in known:
            raise TensorError(
                f"tensor '{tensor.name}': no such feature; this model takes one tensor per "
                f"feature ({_listed(names)}), or one [N, {len(names)}] tensor"
                + (" (numeric models only)" if categorical else "")
            )
        if tensor.name in seen:
            raise TensorError(f"tensor '{tensor.name}': given twice")
        seen.add(tensor.name)
        if not (len(tensor.shape) == 1 or (len(tensor.shape) == 2 and tensor.shape[1] == 1)):
            raise TensorError(
                f"tensor '{tensor.name}': shape {tensor.shape}: a feature's tensor is [N] or [N, 1]"
            )
        count = _rows(tensor, max_rows)
        if rows not in (-1, count):
            raise TensorError(
                f"tensor '{tensor.name}': {count} rows, but tensor '{inputs[0].name}' has {rows}"
            )
        rows = count
    missing = [name for name in names if name not in seen]
    if missing:
        raise TensorError(f"no tensor for feature(s) {_listed(missing)}; each feature needs one")
    return rows, False


def _listed(names: Sequence[str], most: int = 10) -> str:
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown}, ... ({len(names)} in all)"


def _rows(tensor: RequestInput | _PlainInput, max_rows: int) -> int:
    rows = tensor.shape[0]
    if rows == 0:
        raise TensorError(f"tensor '{tensor.name}': shape {tensor.shape} holds no rows")
    if rows > max_rows:
        raise TensorError(
            f"tensor '{tensor.name}': {rows} rows; this server takes at most {max_rows} in one "
            "request: split it"
        )
    return rows


def _tensors(inputs: Sequence[RequestInput], binary: memoryview, most: int) -> list[Tensor]:
    """Each input's data, JSON or its part of the binary section, of at most `most` values."""
    tensors = []
    offset = 0
    for tensor in inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            if tensor.data is None:
                raise TensorError(
                    f"tensor '{tensor.name}': neither data nor a binary_data_size parameter"
                )
            tensors.append(from_json(tensor.name, tensor.datatype, tensor.shape, tensor.data, most))
            continue
        if tensor.data is not None:
            raise TensorError(f"tensor '{tensor.name}': both data and binary_data_size")
        if type(size) is not int or size < 0:
            raise TensorError(f"tensor '{tensor.name}': binary_data_size {size!r} is no byte count")
        if offset + size > len(binary):
            raise TensorError(
                f"tensor '{tensor.name}': binary_data_size {size} runs past the end of the "
                f"binary data ({len(binary) - offset} bytes left; is Inference-Header-Content-"
                "Length right?)"
            )
        check_datatype(tensor.name, tensor.datatype)
        expected = binary_size(tensor.name, tensor.datatype, most)
        if expected is not None and size != expected:
            raise TensorError(
                f"tensor '{tensor.name}': binary_data_size is {size} bytes; shape {tensor.shape} "
                f"of {tensor.datatype} takes {expected}"
            )
        raw = binary[offset : offset + size]
        offset += size
        tensors.append(from_binary(tensor.name, tensor.datatype, tensor.shape, raw, most))
    if offset != len(binary):
        raise TensorError(
            f"the binary data has {len(binary) - offset} bytes beyond the tensors' binary_data_size"
        )
    return tensors


def _matrix_values(tensor: Tensor, schema: FeatureSchema) -> np.ndarray:
    """The [N, F] tensor's values, flat, by the rule of numeric features; refusals located."""
    names = schema.names
    width = len(names)
    checked = number_column(tensor.values, LISTED_PROBLEMS)
    if checked.refused_count:
        located = [
            f"tensor '{tensor.name}' index [{p.row // width}, {p.row % width}] "
            f"(feature '{names[p.row % width]}'): {p.message}"
            for p in checked.problems
        ]
        raise TensorError(_refusals(located, checked.refused_count))
    return checked.values


def _plain_numbers(
    inputs: Sequence[RequestInput], model: ServedModel, count: int
) -> list[np.ndarray] | None:
    """The float64 values of JSON tensors that hold `count` plain numbers each (flat or one
    level nested), all within the limits, in schema order: what the rule would accept
    unchanged, without Arrow. None for anything else: the rule reads it, and says why."""
    if model.categorical:
        return None
    by_name = {tensor.name: tensor for tensor in inputs}
    values = []
    for tensor in inputs if len(inputs) == 1 else (by_name[name] for name in model.feature_names):
        array = _plain_tensor(tensor, count)
        if array is None:
            return None
        values.append(array)
    return values


_NUMBERS: Final = frozenset({float, int})
_WHOLE_NUMBERS: Final = frozenset({int})
_LISTS: Final = frozenset({list})


def _plain_tensor(tensor: RequestInput, count: int) -> np.ndarray | None:
    data = tensor.data
    if (
        data is None
        or len(data) == 0
        or tensor.datatype not in NUMBER_TYPES
        or (tensor.parameters or {}).get("binary_data_size") is not None
    ):
        return None
    kinds = set(map(type, data))
    if kinds == _LISTS:
        data = list(chain.from_iterable(data))
        kinds = set(map(type, data))
    allowed = _WHOLE_NUMBERS if tensor.datatype in INTEGER_TYPES else _NUMBERS
    if len(data) != count or not kinds <= allowed:
        return None
    try:
        array = np.array(data, dtype=np.float64)
    except OverflowError:
        return None
    return array if within_limits(array) else None


# What the plain-number pass decodes: the request shape, with `data` a flat list of numbers.
class _PlainInput(msgspec.Struct):
    name: str
    shape: list[Annotated[int, msgspec.Meta(ge=0)]]
    datatype: str
    data: list[float]
    parameters: dict[str, Any] | None = None


class _LongInput(_PlainInput):
    data: msgspec.Raw  # copied by simdjson (`_plain_data`) once the shapes are known good


class _PlainOutput(msgspec.Struct):
    name: str
    parameters: dict[str, Any] | None = None


class _PlainRequest(msgspec.Struct):
    inputs: Annotated[list[_PlainInput], msgspec.Meta(min_length=1)]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[_PlainOutput] | None = None


class _LongRequest(_PlainRequest):
    inputs: Annotated[list[_LongInput], msgspec.Meta(min_length=1)]


_PLAIN_REQUEST: Final = msgspec.json.Decoder(_PlainRequest)
_LONG_REQUEST: Final = msgspec.json.Decoder(_LongRequest)
# a longer request's `data` goes to simdjson, which costs more than msgspec on short lists
_SHORT_REQUEST_BYTES: Final = 16 * 2**10
_FLOAT_TYPES: Final = frozenset({"FP16", "FP32", "FP64"})
_SMALL: Final = 4096  # below this many values, Python's min and max beat numpy's
_FEW_ROWS: Final = 64


def plain_call(header: bytes, model: ServedModel, max_rows: int) -> InferCall | None:
    """The call of a request whose tensors are flat JSON numbers (FP16/32/64) of an
    all-numeric model, every check passed, decoded by msgspec and simdjson: what the
    full reading gives for it, without pydantic or Arrow. None for anything else, every
    refusal included: the full reading reads it again and says why."""
    if model.categorical:
        return None
    try:
        decoder = _PLAIN_REQUEST if len(header) <= _SHORT_REQUEST_BYTES else _LONG_REQUEST
        request = decoder.decode(header)
        rows, matrix = _plan(request.inputs, model, max_rows)
        requested = _requested(request, model)
    except (msgspec.DecodeError, TensorError, V2Error):
        return None
    names = model.feature_names
    width = len(names) if matrix else 1
    if matrix:
        tensors = request.inputs
    else:
        by_name = {tensor.name: tensor for tensor in request.inputs}
        tensors = [by_name[name] for name in names]
    values = []
    for tensor in tensors:
        if tensor.datatype not in _FLOAT_TYPES or (
            tensor.parameters is not None and "binary_data_size" in tensor.parameters
        ):
            return None
        data = _plain_data(tensor.data, rows * width)
        if data is None:
            return None
        values.append(data)
    lists = all(isinstance(data, list) for data in values)
    if matrix:
        flat = values[0]
        grid = np.asarray(flat, dtype=np.float64).reshape(rows, width)
        call = InferCall(request.id, rows, None, requested, names, matrix=grid)
        if rows <= _FEW_ROWS and lists:  # what the batcher takes, from the floats at hand
            call._instances = [tuple(flat[i : i + width]) for i in range(0, len(flat), width)]
        return call
    columns = {
        name: np.asarray(data, dtype=np.float64) for name, data in zip(names, values, strict=True)
    }
    call = InferCall(request.id, rows, columns, requested, names)
    if rows <= _FEW_ROWS and lists:
        call._instances = list(zip(*values, strict=True))
    return call


def _plain_data(data: list[float] | msgspec.Raw, count: int) -> list[float] | np.ndarray | None:
    """`count` flat JSON numbers within the limits: msgspec's list, or the numbers of a
    long request's text copied into an array by simdjson; None for anything else."""
    if isinstance(data, msgspec.Raw):
        data = number_list(bytes(data), count)
    if data is None or len(data) != count:
        return None
    if isinstance(data, list) and len(data) <= _SMALL:
        # JSON has no NaN: these bounds hold for every value, or some value is refused
        lowest, highest = min(data), max(data)
        return data if lowest >= -MAX_ABS_NUMBER and highest <= MAX_ABS_NUMBER else None
    return data if within_limits(np.asarray(data, dtype=np.float64)) else None


def _columns(tensors: list[Tensor], schema: FeatureSchema) -> dict[str, np.ndarray]:
    """Each feature's tensor by the one rule of `model.values`; refusals located."""
    by_name = {tensor.name: tensor for tensor in tensors}
    columns: dict[str, np.ndarray] = {}
    located: list[str] = []
    total = 0
    for feature in schema.features:
        tensor = by_name[feature.name]
        checked: NumberColumn | CategoryColumn
        if feature.kind == "numeric":
            checked = number_column(tensor.values, LISTED_PROBLEMS)
        else:
            checked = category_column(tensor.values, LISTED_PROBLEMS)
        columns[feature.name] = checked.values
        total += checked.refused_count
        located += [_located(tensor, problem) for problem in checked.problems]
    if total:
        raise TensorError(_refusals(located, total))
    return columns


def _located(tensor: Tensor, problem: Problem) -> str:
    index = f"[{problem.row}, 0]" if len(tensor.shape) == 2 else f"{problem.row}"
    return f"tensor '{tensor.name}' index {index}: {problem.message}"


def _refusals(located: list[str], total: int) -> str:
    listed = located[:LISTED_PROBLEMS]
    more = f" ({total} values refused in all; the first {len(listed)} listed)"
    return "; ".join(listed) + (more if total > len(listed) else "")


def _requested(
    request: InferenceRequest | _PlainRequest, model: ServedModel
) -> tuple[Requested, ...]:
    default = _flag(request.parameters, "binary_data_output", False, output=None)
    if request.outputs is None:
        return tuple(Requested(name, default) for name in model.output_names)
    requested: dict[str, Requested] = {}
    for output in request.outputs:
        name = output.name
        if name not in model.output_names:
            raise V2Error(
                400,
                f"output '{name}': no such output; this model has {', '.join(model.output_names)}",
            )
        parameters = output.parameters
        if parameters is not None and "classification" in parameters:
            message = f"output '{name}': the classification extension is not served"
            raise V2Error(400, message)
        binary = _flag(parameters, "binary_data", default, output=name)
        requested[name] = Requested(name, binary)
    return tuple(requested.values())


def _flag(parameters: dict[str, Any] | None, key: str, default: bool, output: str | None) -> bool:
    """The boolean parameter `key` of the output named `output`, or of the request (None)."""
    value = default if parameters is None else parameters.get(key, default)
    if value is True or value is False:
        return value
    where = "request" if output is None else f"output '{output}'"
    raise V2Error(400, f"{where}: binary_data parameters take true or false, not {value!r}")


# ---------------------------------------------------------------------------- answers


def write_answer(
    model: ServedModel, call: InferCall, outputs: Outputs
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers: JSON, or a JSON header and binary tensors."""
    tensors: list[dict[str, Any]] = []
    sections: list[bytes] = []
    for requested in call.outputs:
        if requested.name == PREDICT:
            values, datatype = outputs.predictions, model.predict_datatype
            shape = [call.rows]
        else:
            assert outputs.probabilities is not None
            values, datatype = outputs.probabilities, "FP64"
            shape = list(outputs.probabilities.shape)
        tensor: dict[str, Any] = {"name": requested.name, "datatype": datatype, "shape": shape}
        if requested.binary:
            section = binary_data(np.asarray(values), datatype)
            tensor["parameters"] = {"binary_data_size": len(section)}
            sections.append(section)
        else:
            tensor["data"] = json_data(np.asarray(values), datatype)
        tensors.append(tensor)
    answer: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if call.id is not None:
        answer["id"] = call.id
    answer["outputs"] = tensors
    header = msgspec.json.encode(answer)
    if not sections:
        return header, {"content-type": "application/json"}
    headers = {"content-type": BINARY_MEDIA_TYPE, HEADER_LENGTH: str(len(header))}
    return header + b"".join(sections), headers


def predict_shaped(tag: str, outputs: Outputs) -> bytes:
    """The answer as /predict gives it: what the payload log and the drift job read."""
    return json_answer(outputs, tag)


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": version, "extensions": list(EXTENSIONS)}
