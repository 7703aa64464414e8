"""v2 tensors: JSON (flat or nested) and binary data read into flat arrays, and written."""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
import pytest

from serving.v2_tensors import (
    TensorError,
    binary_data,
    element_count,
    from_binary,
    from_json,
    json_data,
)


def test_flat_and_nested_data_give_the_same_row_major_values():
    flat = from_json("x", "FP64", [2, 3], [1, 2, 3, 4, 5, 6.5], 100)
    nested = from_json("x", "FP64", [2, 3], [[1, 2, 3], [4, 5, 6.5]], 100)
    assert flat.values.to_pylist() == nested.values.to_pylist() == [1, 2, 3, 4, 5, 6.5]
    assert nested.shape == (2, 3)


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("FP64", [1.0, "2"], "data[1] is text, FP64 takes a number"),
        ("FP32", [True, 1.0], "data[0] is a boolean, FP32 takes a number"),
        ("BYTES", ["a", 3], "data[1] is a number, BYTES takes text"),
        ("BOOL", [True, 0], "data[1] is a number, BOOL takes a boolean"),
        ("INT64", [1, 2.5], "data[1] = 2.5 is not a whole number (INT64)"),
        ("FP64", [1.0, {"a": 1}], "data[1] is a dict"),
        ("FP99", [1.0, 2.0], "unknown datatype 'FP99'"),
    ],
)
def test_data_must_fit_the_datatype_and_is_located(datatype, data, message):
    with pytest.raises(TensorError, match="tensor 'x'") as refused:
        from_json("x", datatype, [2], data, 100)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("shape", "data", "message"),
    [
        ([2, 2], [1, 2, 3], "data has 3 elements, its shape holds 4"),
        ([2], [[1, 2], [3]], "data has more than 2 elements, its shape holds 2"),
        ([1, 2], [1, [2, [3]]], "data has more than 2 elements"),
    ],
)
def test_element_count_must_equal_the_product_of_the_shape(shape, data, message):
    with pytest.raises(TensorError, match=message):
        from_json("x", "FP64", shape, data, 100)


def test_shapes_are_bounded_before_anything_is_allocated():
    assert element_count("x", [3, 4], 12) == 12
    with pytest.raises(TensorError, match="negative dimension"):
        element_count("x", [3, -4], 100)
    # a product far beyond memory is refused at the first dimension that passes the bound
    with pytest.raises(TensorError, match="more than 100 elements"):
        element_count("x", [10**6, 10**30, 10**30], 100)


def test_json_null_is_missing_and_huge_ints_are_read_as_floats():
    assert from_json("x", "FP64", [2], [None, 1], 10).values.to_pylist() == [None, 1]
    assert from_json("x", "INT64", [1], [2**70], 10).values.type == pa.float64()


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("FP64", np.array([1.5, -2.0, 3.25])),
        ("FP32", np.array([1.5, -2.0, 3.25], dtype=np.float32)),
        ("FP16", np.array([1.5, -2.0, 3.25], dtype=np.float16)),
        ("INT32", np.array([1, -2, 3], dtype=np.int32)),
        ("UINT8", np.array([1, 2, 255], dtype=np.uint8)),
        ("BOOL", np.array([True, False, True])),
    ],
)
def test_binary_fixed_size_tensors_round_trip(datatype, values):
    raw = binary_data(values, datatype)
    tensor = from_binary("x", datatype, [3], raw, 10)
    assert tensor.values.to_pylist() == values.tolist()


def test_binary_size_must_match_the_shape():
    raw = np.zeros(3, dtype="<f8").tobytes()
    with pytest.raises(TensorError, match="binary_data_size is 24 bytes; 4 FP64 elements take 32"):
        from_binary("x", "FP64", [4], raw, 10)


def test_binary_bytes_elements_are_length_prefixed():
    raw = binary_data(np.array(["plan", "", "é"], dtype=object), "BYTES")
    assert raw[:8] == struct.pack("<I", 4) + b"plan"
    tensor = from_binary("x", "BYTES", [3], raw, 10)
    assert tensor.values.to_pylist() == [b"plan", b"", "é".encode()]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (struct.pack("<I", 1) + b"a", "holds 1 elements, its shape holds 2"),
        (struct.pack("<I", 9) + b"abc", "element 0 is 9 bytes long, past the end"),
        (struct.pack("<I", 1) + b"a" + b"\x01\x00", "element 1 has a truncated length"),
        ((struct.pack("<I", 0)) * 3, "more than the 2 elements of its shape"),
    ],
)
def test_binary_bytes_elements_are_checked_against_the_section(raw, message):
    with pytest.raises(TensorError, match=message):
        from_binary("x", "BYTES", [2], raw, 10)


def test_answers_as_json_data():
    assert json_data(np.array(["yes", "no"], dtype=object), "BYTES") == ["yes", "no"]
    assert json_data(np.array([[0.25, 0.75]]), "FP64") == [0.25, 0.75]
    assert json_data(np.array([1, 0]), "INT64") == [1, 0]
