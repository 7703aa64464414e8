"""Tensors of the Open Inference Protocol (v2): JSON or binary data in, flat arrays out.

A request tensor is checked before anything is allocated for it: its shape (whole
numbers, at most `max_elements` elements in all), its datatype, and that its data holds
exactly `prod(shape)` elements of that datatype: JSON `data` flat or nested, or
`binary_data_size` bytes of the binary section (the binary tensor extension). Values come
out as one flat Arrow array, row-major, for `model.values` to check by its one rule.
Answers go back the same two ways: JSON `data`, or little-endian bytes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pyarrow as pa

# little-endian element types of the fixed-size datatypes; BYTES has none
FIXED_SIZE: Final = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
BYTES: Final = "BYTES"
DATATYPES: Final = frozenset({*FIXED_SIZE, BYTES})
INTEGER_TYPES: Final = frozenset(k for k in FIXED_SIZE if k.startswith(("INT", "UINT")))
NUMBER_TYPES: Final = INTEGER_TYPES | {"FP16", "FP32", "FP64"}
_LENGTH: Final = struct.Struct("<I")  # each BYTES element: its length, then its bytes


class TensorError(ValueError):
    """A tensor the request got wrong; the message names the tensor and where."""


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    values: pa.Array  # flat, row-major, len == prod(shape); null where JSON had null


def element_count(name: str, shape: Sequence[int], max_elements: int) -> int:
    """prod(shape), refused past `max_elements` before the product can grow large."""
    count = 1
    for dimension in shape:
        if dimension < 0:
            raise TensorError(f"tensor '{name}': shape {list(shape)} has a negative dimension")
        count *= dimension
        if count > max_elements:
            raise TensorError(
                f"tensor '{name}': shape {list(shape)} holds more than {max_elements} elements, "
                "more than this server takes in one request"
            )
    return count


def check_datatype(name: str, datatype: str) -> None:
    if datatype not in DATATYPES:
        raise TensorError(
            f"tensor '{name}': unknown datatype {datatype!r}; one of {', '.join(sorted(DATATYPES))}"
        )


def from_json(
    name: str, datatype: str, shape: Sequence[int], data: list[Any], max_elements: int
) -> Tensor:
    """A tensor from JSON `data` (flat or nested), its elements of the datatype's kind:
    numbers for the numeric types, booleans for BOOL, text for BYTES; null is missing."""
    check_datatype(name, datatype)
    count = element_count(name, shape, max_elements)
    flat = _flattened(name, data, count)
    values = _arrow(name, datatype, flat)
    return Tensor(name, datatype, tuple(shape), values)


def _flattened(name: str, data: list[Any], count: int) -> list[Any]:
    """The elements of nested lists in row-major order; stops once past `count`."""
    if not any(isinstance(item, list) for item in data):
        flat = data
    else:
        flat = []
        stack: list[Any] = [iter(data)]
        while stack and len(flat) <= count:
            item = next(stack[-1], _END)
            if item is _END:
                stack.pop()
            elif isinstance(item, list):
                stack.append(iter(item))
            else:
                flat.append(item)
    if len(flat) != count:
        shown = f"{len(flat)}" if len(flat) <= count else f"more than {count}"
        raise TensorError(f"tensor '{name}': data has {shown} elements, its shape holds {count}")
    return flat


_END: Final = object()


def _arrow(name: str, datatype: str, flat: list[Any]) -> pa.Array:
    if _needs_floats(flat, datatype):  # the rule then refuses them (beyond ±1e15)
        flat = [_float(item) if type(item) is int else item for item in flat]
    try:
        values = pa.array(flat)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        raise TensorError(_first_misfit(name, datatype, flat)) from None
    if not _holds(datatype, values.type):
        raise TensorError(_first_misfit(name, datatype, flat))
    if datatype in INTEGER_TYPES and pa.types.is_floating(values.type):
        fractions = np.flatnonzero(np.modf(values.to_numpy(zero_copy_only=False))[0] != 0)
        if len(fractions):
            index = int(fractions[0])
            raise TensorError(
                f"tensor '{name}': data[{index}] = {flat[index]!r} is not a whole number "
                f"({datatype})"
            )
    return values


def _needs_floats(flat: list[Any], datatype: str) -> bool:
    """Whether a numeric tensor holds an int beyond int64, which Arrow cannot read."""
    return datatype in NUMBER_TYPES and any(
        type(item) is int and not -(2**63) <= item < 2**63 for item in flat
    )


def _float(item: int) -> float:
    try:
        return float(item)
    except OverflowError:
        return math.inf if item > 0 else -math.inf


def _holds(datatype: str, arrow_type: pa.DataType) -> bool:
    types = pa.types
    if types.is_null(arrow_type):
        return True
    if datatype == BYTES:
        return types.is_string(arrow_type) or types.is_large_string(arrow_type)
    if datatype == "BOOL":
        return types.is_boolean(arrow_type)
    return types.is_integer(arrow_type) or types.is_floating(arrow_type)


def _kind(item: Any) -> str:
    if item is None:
        return "null"
    if isinstance(item, bool):
        return "a boolean"
    if isinstance(item, int | float):
        return "a number"
    if isinstance(item, str):
        return "text"
    return f"a {type(item).__name__}"


def _first_misfit(name: str, datatype: str, flat: list[Any]) -> str:
    wanted = "text" if datatype == BYTES else "a boolean" if datatype == "BOOL" else "a number"
    for index, item in enumerate(flat):
        kind = _kind(item)
        if kind not in (wanted, "null"):
            return f"tensor '{name}': data[{index}] is {kind}, {datatype} takes {wanted}"
    return f"tensor '{name}': data does not fit datatype {datatype}"


def binary_size(name: str, datatype: str, count: int) -> int | None:
    """The bytes `count` elements take in the binary section; None for BYTES (variable)."""
    dtype = FIXED_SIZE.get(datatype)
    return None if dtype is None else count * np.dtype(dtype).itemsize


def from_binary(
    name: str, datatype: str, shape: Sequence[int], raw: bytes | memoryview, max_elements: int
) -> Tensor:
    """A tensor from its bytes in the binary section (already cut to `binary_data_size`)."""
    check_datatype(name, datatype)
    count = element_count(name, shape, max_elements)
    dtype = FIXED_SIZE.get(datatype)
    if dtype is None:
        return Tensor(name, datatype, tuple(shape), _bytes_elements(name, raw, count))
    expected = count * np.dtype(dtype).itemsize
    if len(raw) != expected:
        raise TensorError(
            f"tensor '{name}': binary_data_size is {len(raw)} bytes; {count} {datatype} "
            f"elements take {expected}"
        )
    array = np.frombuffer(raw, dtype=dtype)
    if datatype == "FP16":
        array = array.astype(np.float32)
    elif datatype == "BOOL":
        array = array.view(np.uint8) != 0
    native = array.astype(array.dtype.newbyteorder("="), copy=False)
    return Tensor(name, datatype, tuple(shape), pa.array(native))


def _bytes_elements(name: str, raw: bytes | memoryview, count: int) -> pa.Array:
    """BYTES elements: each a 4-byte little-endian length, then that many bytes."""
    view = memoryview(raw)
    items: list[bytes] = []
    offset = 0
    while offset < len(view):
        if len(items) == count:
            raise TensorError(
                f"tensor '{name}': binary data holds more than the {count} elements of its shape"
            )
        if offset + _LENGTH.size > len(view):
            raise TensorError(f"tensor '{name}': element {len(items)} has a truncated length")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if offset + length > len(view):
            raise TensorError(
                f"tensor '{name}': element {len(items)} is {length} bytes long, past the end of "
                "its binary data"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if len(items) != count:
        raise TensorError(
            f"tensor '{name}': binary data holds {len(items)} elements, its shape holds {count}"
        )
    return pa.array(items, type=pa.binary())


# ------------------------------------------------------------------------------- answers


def json_data(array: np.ndarray, datatype: str) -> list[Any]:
    """An answer's values as flat JSON data."""
    flat = array.reshape(-1)
    if datatype == BYTES:
        return [_text(item) for item in flat.tolist()]
    if datatype in INTEGER_TYPES:
        return flat.astype(np.int64).tolist()
    return flat.astype(np.float64).tolist()


def binary_data(array: np.ndarray, datatype: str) -> bytes:
    """An answer's values as the binary tensor extension lays them out."""
    flat = array.reshape(-1)
    if datatype == BYTES:
        parts: list[bytes] = []
        for item in flat.tolist():
            encoded = _text(item).encode()
            parts += [_LENGTH.pack(len(encoded)), encoded]
        return b"".join(parts)
    return np.ascontiguousarray(flat, dtype=FIXED_SIZE[datatype]).tobytes()


def _text(item: Any) -> str:
    return item.decode(errors="replace") if isinstance(item, bytes) else str(item)
