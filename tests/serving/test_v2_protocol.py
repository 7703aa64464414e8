"""v2 requests read into checked feature columns (both forms), errors located, answers."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from model.outputs import Outputs
from model.schema import Feature, FeatureSchema
from serving.v2_protocol import (
    HEADER_LENGTH,
    InferCall,
    Requested,
    ServedModel,
    V2Error,
    read_call,
    write_answer,
)
from serving.v2_tensors import binary_data

MIXED = FeatureSchema(
    features=[
        Feature(name="plan", kind="categorical", categories=["basic", "pro"]),
        Feature(name="spend", kind="numeric", min=0.0, max=100.0),
    ],
    target="churned",
    task="classification",
    classes=["no", "yes"],
)
NUMERIC = FeatureSchema(
    features=[Feature(name=n, kind="numeric") for n in ("a", "b", "c")],
    target="y",
    task="regression",
)
CHURN = ServedModel.of("churn:v7", MIXED)
PRICES = ServedModel.of("prices:v1", NUMERIC)


def body(inputs: list[dict], **extra) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def refused(raw: bytes, model: ServedModel = CHURN, length: str | None = None) -> str:
    with pytest.raises(V2Error) as error:
        read_call(raw, length, model, max_rows=10)
    assert error.value.status == 400
    return error.value.message


def mixed_inputs(plan: list, spend: list, spend_shape: list[int] | None = None) -> list[dict]:
    return [
        {"name": "plan", "shape": [len(plan)], "datatype": "BYTES", "data": plan},
        {
            "name": "spend",
            "shape": spend_shape or [len(spend)],
            "datatype": "FP64",
            "data": spend,
        },
    ]


def test_metadata_advertises_the_form_that_fits_the_model():
    mixed = CHURN.metadata()
    assert [i["name"] for i in mixed["inputs"]] == ["plan", "spend"]
    assert [i["datatype"] for i in mixed["inputs"]] == ["BYTES", "FP64"]
    assert mixed["outputs"][1] == {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]}
    assert mixed["parameters"]["classes"] == ["no", "yes"]
    numeric = PRICES.metadata()
    assert numeric["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 3]}]
    assert numeric["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    assert CHURN.infer_paths == ("/v2/models/churn/infer", "/v2/models/churn/versions/v7/infer")


def test_per_feature_tensors_become_checked_columns_in_schema_order():
    call = read_call(
        body(list(reversed(mixed_inputs(["pro", None], [[1.5], [None]], [2, 1]))), id="r1"),
        None,
        CHURN,
        max_rows=10,
    )
    assert call.id == "r1" and call.rows == 2
    assert call.instances() == [("pro", 1.5), (None, None)]  # null and NaN are missing
    assert list(call.frame().columns) == ["plan", "spend"]
    assert call.outputs == (Requested("predict", False), Requested("predict_proba", False))


def test_numbers_for_a_categorical_feature_follow_the_rule():
    inputs = [
        {"name": "plan", "shape": [2], "datatype": "INT64", "data": [3, 4]},
        {"name": "spend", "shape": [2], "datatype": "FP64", "data": [1, 2]},
    ]
    assert read_call(body(inputs), None, CHURN, 10).instances() == [("3", 1.0), ("4", 2.0)]


def test_a_matrix_tensor_for_numeric_models():
    inputs = [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]
    call = read_call(body(inputs), None, PRICES, 10)
    assert call.instances() == [(1.0, 2.0, 3.0), (4.0, 5.0, 6.0)]


def binary_read(inputs: list[dict], model: ServedModel) -> InferCall:
    """The same tensors sent as FP64 binary data: read by the rule of `model.values`."""
    tensors, sections = [], []
    for tensor in inputs:
        section = binary_data(np.array(tensor["data"], dtype=np.float64), "FP64")
        parameters = {"binary_data_size": len(section)}
        tensors.append({**tensor, "datatype": "FP64", "data": None, "parameters": parameters})
        sections.append(section)
    header = body([{k: v for k, v in t.items() if v is not None} for t in tensors])
    return read_call(header + b"".join(sections), str(len(header)), model, 10)


@pytest.mark.parametrize(
    "inputs",
    [
        [
            {
                "name": "input",
                "shape": [2, 3],
                "datatype": "FP64",
                "data": [1.5, -2, 3, 4, 0.0, 1e15],
            }
        ],
        [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [[1.5, -2, 3], [4, 0, 6]]}],
        [{"name": "input", "shape": [2, 3], "datatype": "INT64", "data": [1, 2, 3, 4, 5, -6]}],
        [
            {"name": "c", "shape": [2, 1], "datatype": "FP64", "data": [[0.25], [-1e15]]},
            {"name": "a", "shape": [2], "datatype": "INT32", "data": [7, 8]},
            {"name": "b", "shape": [2], "datatype": "FP16", "data": [0.5, 9]},
        ],
    ],
)
def test_json_numbers_read_as_the_rule_reads_them(inputs):
    call = read_call(body(inputs), None, PRICES, 10)
    expected = binary_read(inputs, PRICES)
    assert call.instances() == expected.instances()
    assert all(isinstance(v, float) for row in call.instances() for v in row)
    assert call.frame().equals(expected.frame())


@pytest.mark.parametrize("data", [[1, [2], 3], [[1, [2]], [3]], [[1], [], [2, 3]]])
def test_json_data_nested_any_way_is_read_row_major(data):
    inputs = [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": data}]
    assert read_call(body(inputs), None, PRICES, 10).instances() == [(1.0, 2.0, 3.0)]


@pytest.mark.parametrize(
    ("data", "datatype", "message"),
    [
        ([1, 2, True], "FP64", "data[2] is a boolean, FP64 takes a number"),
        ([1, 2.5, 3], "INT64", "data[1] = 2.5 is not a whole number (INT64)"),
        ([1, 2, 2**70], "INT64", "index [0, 2] (feature 'c'): beyond ±1e15"),
        ([1, 2, -1e300], "FP64", "index [0, 2] (feature 'c'): beyond ±1e15"),
        ([1, 2, "3"], "FP64", "data[2] is text, FP64 takes a number"),
        ([1, 2], "FP64", "data has 2 elements, its shape holds 3"),
    ],
)
def test_json_numbers_the_rule_refuses(data, datatype, message):
    inputs = [{"name": "input", "shape": [1, 3], "datatype": datatype, "data": data}]
    assert message in refused(body(inputs), PRICES)


def test_missing_json_numbers_stay_missing():
    inputs = [{"name": "input", "shape": [2, 3], "datatype": "FP64", "data": [1, None, 3, 4, 5, 6]}]
    call = read_call(body(inputs), None, PRICES, 10)
    assert call.instances() == [(1.0, None, 3.0), (4.0, 5.0, 6.0)]
    assert np.isnan(call.frame()["b"][0])


@pytest.mark.parametrize(
    ("model", "inputs", "message"),
    [
        (CHURN, mixed_inputs(["pro"], [1e16]), "tensor 'spend' index 0: beyond ±1e15"),
        (
            CHURN,
            mixed_inputs(["pro", "basic"], [[1.0], [float("inf")]], [2, 1]),
            "tensor 'spend' index [1, 0]: not finite",  # JSON's Infinity, as Python writes it
        ),
        (
            CHURN,
            mixed_inputs(["pro"], [1.0, 2.0]),
            "tensor 'spend': 2 rows, but tensor 'plan' has 1",
        ),
        (CHURN, mixed_inputs(["pro"], [1.0])[:1], "no tensor for feature(s) spend"),
        (
            CHURN,
            [
                *mixed_inputs(["pro"], [1.0]),
                {"name": "z", "shape": [1], "datatype": "FP64", "data": [1]},
            ],
            "tensor 'z': no such feature",
        ),
        (CHURN, mixed_inputs(["pro"], [1.0], [1, 2]), "a feature's tensor is [N] or [N, 1]"),
        (
            CHURN,
            [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}],
            "this model has categorical features (plan)",
        ),
        (
            PRICES,
            [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}],
            "this model takes [N, 3]",
        ),
        (
            PRICES,
            [{"name": "input", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 1e20]}],
            "tensor 'input' index [1, 2] (feature 'c'): beyond ±1e15",
        ),
        (
            PRICES,
            [{"name": "input", "shape": [11, 3], "datatype": "FP64", "data": [0] * 33}],
            "11 rows; this server takes at most 10",
        ),
        (CHURN, mixed_inputs([], []), "holds no rows"),
        (
            CHURN,
            [{"name": "plan", "shape": [1], "datatype": "BYTES"}, mixed_inputs(["a"], [1])[1]],
            "tensor 'plan': neither data nor",
        ),
    ],
)
def test_refusals_name_the_tensor_and_the_index(model, inputs, message):
    assert message in refused(json.dumps({"inputs": inputs}).encode(), model)


def test_many_refused_values_are_counted():
    message = refused(body(mixed_inputs(["a"] * 8, [1e16] * 8)))
    assert message.count("beyond ±1e15") == 5 and "(8 values refused in all" in message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "Invalid JSON"),
        (b'{"inputs": []}', "inputs: List should have at least 1 item"),
        (
            b'{"inputs": [{"name": "plan", "shape": ["1"], "datatype": "BYTES", "data": []}]}',
            "inputs.0.shape.0",
        ),
        (
            b'{"inputs": [{"name": "plan", "shape": [-1], "datatype": "BYTES", "data": []}]}',
            "greater than or equal to 0",
        ),
    ],
)
def test_malformed_requests_say_where(raw, message):
    assert message in refused(raw)


def binary_request(size: int | None = None) -> tuple[bytes, bytes]:
    plan = binary_data(np.array(["pro", "basic"], dtype=object), "BYTES")
    spend = np.array([1.0, 2.0], dtype="<f8").tobytes()
    header = body(
        [
            {
                "name": "plan",
                "shape": [2],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(plan)},
            },
            {
                "name": "spend",
                "shape": [2],
                "datatype": "FP64",
                "parameters": {"binary_data_size": size or 16},
            },
        ],
        parameters={"binary_data_output": True},
    )
    return header, plan + spend


def test_binary_tensors_are_read_after_the_json_header():
    header, section = binary_request()
    call = read_call(header + section, str(len(header)), CHURN, 10)
    assert call.instances() == [("pro", 1.0), ("basic", 2.0)]
    assert all(output.binary for output in call.outputs)


@pytest.mark.parametrize(
    ("cut", "extra", "size", "message"),
    [
        (1000, b"", None, "Inference-Header-Content-Length is '"),
        (0, b"\x00", None, "1 bytes beyond the tensors' binary_data_size"),
        (0, b"", 24, "binary_data_size 24 runs past the end"),
    ],
)
def test_binary_sizes_are_checked_against_the_body(cut, extra, size, message):
    header, section = binary_request(size)
    raw = header + section + extra
    assert message in refused(raw, length=str(len(header) + cut))


def test_header_length_must_be_a_count():
    header, section = binary_request()
    assert "Inference-Header-Content-Length is '-3'" in refused(header + section, length="-3")


def test_requested_outputs():
    inputs = mixed_inputs(["pro"], [1.0])
    outputs = [{"name": "predict_proba", "parameters": {"binary_data": True}}]
    call = read_call(body(inputs, outputs=outputs), None, CHURN, 10)
    assert call.outputs == (Requested("predict_proba", True),)
    assert "output 'nope': no such output" in refused(body(inputs, outputs=[{"name": "nope"}]))
    flag = body(inputs, parameters={"binary_data_output": "yes"})
    assert "take true or false" in refused(flag)


def test_answers_in_json_and_binary():
    outputs = Outputs(
        np.array(["yes", "no"], dtype=object), np.array([[0.2, 0.8], [0.9, 0.1]]), ["no", "yes"]
    )
    requested = (Requested("predict", False), Requested("predict_proba", True))
    call = InferCall("r9", 2, {}, requested)
    raw, headers = write_answer(CHURN, call, outputs)
    length = int(headers[HEADER_LENGTH])
    answer = json.loads(raw[:length])
    assert answer["id"] == "r9" and answer["model_version"] == "v7"
    assert answer["outputs"][0] == {
        "name": "predict",
        "datatype": "BYTES",
        "shape": [2],
        "data": ["yes", "no"],
    }
    assert answer["outputs"][1]["parameters"] == {"binary_data_size": 32}
    assert np.frombuffer(raw[length:], "<f8").tolist() == [0.2, 0.8, 0.9, 0.1]
    plain, headers = write_answer(CHURN, InferCall(None, 2, {}, requested[:1]), outputs)
    assert headers == {"content-type": "application/json"}
    assert "id" not in json.loads(plain)


def test_binary_bytes_answer_is_length_prefixed():
    outputs = Outputs(np.array(["yes"], dtype=object), None, [])
    raw, headers = write_answer(
        CHURN, InferCall(None, 1, {}, (Requested("predict", True),)), outputs
    )
    assert raw[int(headers[HEADER_LENGTH]) :] == struct.pack("<I", 3) + b"yes"
