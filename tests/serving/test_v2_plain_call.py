"""v2's first pass: flat JSON numbers of an all-numeric model, read by msgspec (short
`data`) and simdjson (long `data`).

It may only take what the full reading takes, with the same call; anything else, every
refusal included, is left to the full reading (which answers or explains), so it can
never change a verdict or an error message.
"""

from __future__ import annotations

import json
from unittest import mock

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.schema import Feature, FeatureSchema
from serving.v2_protocol import InferCall, ServedModel, V2Error, full_call, plain_call

NUMBERS = FeatureSchema(
    features=[Feature(name=name, kind="numeric") for name in ("a", "b", "c")],
    target="t",
    task="classification",
    classes=["no", "yes"],
)
MIXED = FeatureSchema(
    features=[
        Feature(name="a", kind="numeric"),
        Feature(name="b", kind="categorical", categories=["x", "y"]),
    ],
    target="t",
    task="classification",
    classes=["no", "yes"],
)
MODEL = ServedModel.of("numbers:v1", NUMBERS)
MAX_ROWS = 4

VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([None, True, "1.5", [1.0], 1e15, -1e15, 1e15 + 0.5, 2.5]),
)
PLAIN_VALUES = st.one_of(
    st.floats(min_value=-1e3, max_value=1e3),
    st.integers(min_value=-(10**3), max_value=10**3),
    st.floats(min_value=-2e15, max_value=2e15),
)
FLOAT_TYPES = st.sampled_from(["FP64", "FP32", "FP16"])


@st.composite
def valid_requests(draw: st.DrawFn) -> dict:
    """Requests the full reading takes: one [N, 3] tensor, or one tensor per feature."""
    rows = draw(st.integers(min_value=1, max_value=MAX_ROWS))
    if draw(st.booleans()):
        data = draw(st.lists(PLAIN_VALUES, min_size=rows * 3, max_size=rows * 3))
        datatype = draw(FLOAT_TYPES)
        inputs = [{"name": "input", "shape": [rows, 3], "datatype": datatype, "data": data}]
    else:
        inputs = [
            {
                "name": name,
                "shape": draw(st.sampled_from([[rows], [rows, 1]])),
                "datatype": draw(FLOAT_TYPES),
                "data": draw(st.lists(PLAIN_VALUES, min_size=rows, max_size=rows)),
            }
            for name in draw(st.permutations(["a", "b", "c"]))
        ]
    request: dict = {"inputs": inputs}
    if draw(st.booleans()):
        request["id"] = draw(st.text(max_size=3))
    if draw(st.booleans()):
        request["parameters"] = {"binary_data_output": draw(st.booleans())}
    if draw(st.booleans()):
        names = draw(st.lists(st.sampled_from(["predict", "predict_proba"]), max_size=3))
        request["outputs"] = [
            {"name": name, "parameters": {"binary_data": draw(st.booleans())}} for name in names
        ]
    return request


@st.composite
def requests(draw: st.DrawFn) -> dict:
    """Valid requests, and valid requests with one thing changed (which may refuse them)."""
    request = draw(valid_requests())
    tensor = draw(st.sampled_from(request["inputs"]))
    change = draw(
        st.sampled_from(
            ["none", "none", "value", "datatype", "count", "shape", "parameter", "output", "key"]
        )
    )
    if change == "value":
        index = draw(st.integers(min_value=0, max_value=len(tensor["data"]) - 1))
        tensor["data"][index] = draw(VALUES)
    elif change == "datatype":
        tensor["datatype"] = draw(st.sampled_from(["INT64", "INT32", "BYTES", "BOOL", "fp64"]))
    elif change == "count":
        tensor["data"] = tensor["data"][1:] if draw(st.booleans()) else [*tensor["data"], 1.0]
    elif change == "shape":
        tensor["shape"] = draw(st.sampled_from([[0, 3], [MAX_ROWS + 1, 3], [1, 2], [-1], [1]]))
    elif change == "parameter":
        tensor["parameters"] = draw(st.sampled_from([{"binary_data_size": 8}, {"x": 1}]))
    elif change == "output":
        request["outputs"] = [{"name": draw(st.sampled_from(["score", "predict"]))}]
        request["outputs"][0]["parameters"] = draw(
            st.sampled_from([{"binary_data": 1}, {"classification": 2}, {}])
        )
    elif change == "key":
        key = draw(st.sampled_from(["id", "parameters", "outputs", "inputs", "other"]))
        request[key] = draw(VALUES)
    return request


def full_reading(raw: bytes, model: ServedModel = MODEL) -> InferCall | V2Error:
    try:
        return full_call(raw, memoryview(b""), model, MAX_ROWS)
    except V2Error as error:
        return error


def same_call(plain: InferCall, full: InferCall) -> None:
    assert (plain.id, plain.rows, plain.outputs, plain.names) == (
        full.id,
        full.rows,
        full.outputs,
        full.names,
    )
    assert plain.instances() == full.instances()
    assert all(type(value) is float for row in plain.instances() for value in row)
    assert plain.frame().equals(full.frame())


def assert_only_what_the_full_reading_takes(request: dict) -> None:
    raw = json.dumps(request).encode()
    plain = plain_call(raw, MODEL, MAX_ROWS)
    if plain is None:
        return
    full = full_reading(raw)
    assert not isinstance(full, V2Error), full.message
    same_call(plain, full)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests())
def test_it_takes_only_what_the_full_reading_takes_with_the_same_call(request):
    assert_only_what_the_full_reading_takes(request)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests())
def test_so_does_its_simdjson_pass_for_long_data(request):
    with mock.patch("serving.v2_protocol._SHORT_REQUEST_BYTES", 0):  # every request is long
        assert_only_what_the_full_reading_takes(request)


def test_a_long_tensor_is_read_as_the_full_reading_reads_it():
    rows = 2_000
    values = np.random.default_rng(0).normal(scale=1e3, size=rows * 3).round(6)
    for data in (values.tolist(), [int(v) for v in values]):
        tensor = {"name": "input", "shape": [rows, 3], "datatype": "FP64", "data": data}
        raw = json.dumps({"inputs": [tensor]}).encode()
        assert len(raw) > 20_000
        plain = plain_call(raw, MODEL, rows)
        full = full_call(raw, memoryview(b""), MODEL, rows)
        assert plain is not None and plain.matrix is not None
        assert plain.matrix.tobytes() == full.frame().to_numpy(dtype=float).tobytes()
        assert plain.instances() == full.instances()


def test_the_forms_clients_send_are_taken():
    matrix = {"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [1, 2.5, 3, 4, 5, 6]}
    features = [
        {"name": name, "shape": [2], "datatype": "FP64", "data": [i, -1e15]}
        for i, name in enumerate(("c", "a", "b"))
    ]
    outputs = [{"name": "predict_proba", "parameters": {"binary_data": True}}]
    for request in (
        {"inputs": [matrix]},
        {"id": "7", "inputs": features, "outputs": outputs},
        {"inputs": [matrix], "parameters": {"binary_data_output": True}, "more": 1},
    ):
        raw = json.dumps(request).encode()
        plain = plain_call(raw, MODEL, MAX_ROWS)
        assert plain is not None, request
        same_call(plain, full_reading(raw))


def test_models_with_categorical_features_are_left_to_the_full_reading():
    model = ServedModel.of("mixed:v1", MIXED)
    inputs = [
        {"name": "a", "shape": [1], "datatype": "FP64", "data": [1.0]},
        {"name": "b", "shape": [1], "datatype": "FP64", "data": [2.0]},
    ]
    raw = json.dumps({"inputs": inputs}).encode()
    assert plain_call(raw, model, MAX_ROWS) is None
    full = full_reading(raw, model)
    assert isinstance(full, InferCall)
    assert full.instances() == [(1.0, "2.0")]  # a number for a category is read as its text
