"""The batch API's first pass: plain number rows read straight into one float64 matrix.

It may only take what the full rule takes, with the same values; anything else is left
to the passes that follow (which answer or explain), so it can never change a verdict.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from model.outputs import Outputs
from model.schema import Feature, FeatureSchema
from serving.inputs import instances_input, plain_matrix
from serving.instances import Columns
from serving.responses import FEW_ROWS, PredictResponse, json_answer

NUMBERS = FeatureSchema(
    features=[Feature(name=name, kind="numeric", min=0, max=1) for name in ("a", "b", "c")],
    target="t",
    task="classification",
    classes=[0, 1],
)
MAX_ROWS = 20
BATCH = instances_input(NUMBERS, MAX_ROWS, reads_arrow=True)
JSON_SCOPE = {"type": "http", "headers": [(b"content-type", b"application/json")]}

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["1.5", "", "NaN", "abc", "1e3"]),
    st.lists(st.integers(), max_size=2),
)
ROWS = st.lists(VALUES, min_size=2, max_size=4)
NUMBER_ROWS = st.lists(
    st.none() | st.integers(min_value=-(10**16), max_value=10**16) | st.floats(),
    min_size=3,
    max_size=3,
)
BODIES = st.one_of(
    st.fixed_dictionaries({"instances": st.lists(NUMBER_ROWS, min_size=1, max_size=4)}),
    st.fixed_dictionaries({"instances": st.lists(ROWS, max_size=MAX_ROWS + 2)}),
    st.fixed_dictionaries(
        {"instances": st.lists(ROWS, min_size=1, max_size=3), "other": VALUES},
    ),
    st.fixed_dictionaries({"rows": st.lists(ROWS, max_size=2)}),
)


def full_rule(body: bytes) -> np.ndarray | ValidationError:
    """What the passes after the first make of a body: its values, or the refusal."""
    try:
        instances = BATCH.from_json(body).instances
    except ValidationError as error:
        return error
    return np.array(instances, dtype=np.float64)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODIES)
def test_it_takes_only_what_the_full_rule_takes_with_the_same_values(body):
    raw = json.dumps(body).encode()
    matrix = plain_matrix(BATCH.rows_decoder, raw, width=3, max_rows=MAX_ROWS)
    if matrix is None:
        return
    expected = full_rule(raw)
    assert not isinstance(expected, ValidationError), expected
    assert np.array_equal(matrix, expected, equal_nan=True)


@pytest.mark.parametrize(
    "text",
    [
        '{"instances": [[1, 2, true]]}',
        '{"instances": [[1, 2, "3"]]}',
        '{"instances": [[1, 2, NaN]]}',
        '{"instances": [[1, 2, Infinity]]}',
        '{"instances": [[1, 2, 1e16]]}',
        '{"instances": [[1, 2, -1e400]]}',
        '{"instances": [[1, 2]]}',
        '{"instances": [[1, 2, 3], [1, 2]]}',
        '{"instances": [[1, 2, 3, 4]]}',
        '{"instances": []}',
        '{"instances": [{"a": 1, "b": 2, "c": 3}]}',
        '{"instances": [[1, 2, 3]]} trailing',
        "[]",
        "",
    ],
)
def test_anything_but_plain_number_rows_is_left_to_the_full_rule(text):
    assert plain_matrix(BATCH.rows_decoder, text.encode(), width=3, max_rows=MAX_ROWS) is None


@pytest.mark.parametrize(
    "text",
    [
        b'{"instances": [[' + b",".join([b"0"] * 100) + b"]]}",  # one wide row
        b'{"instances": [' + b",".join([b"[0]"] * (MAX_ROWS + 1)) + b"]}",  # many short ones
    ],
)
def test_bodies_with_more_values_than_the_rows_allowed_are_not_decoded(text):
    decoded: list[bytes] = []

    class Spy:
        def decode(self, body: bytes) -> object:
            decoded.append(body)
            return BATCH.rows_decoder.decode(body)

    assert plain_matrix(Spy(), text, width=3, max_rows=MAX_ROWS) is None
    assert decoded == []
    assert isinstance(full_rule(text), ValidationError)


def test_too_many_rows_are_left_to_the_full_rule():
    body = json.dumps({"instances": [[1, 2, 3]] * (MAX_ROWS + 1)}).encode()
    assert plain_matrix(BATCH.rows_decoder, body, width=3, max_rows=MAX_ROWS) is None
    assert isinstance(full_rule(body), ValidationError)


def test_the_batch_api_reads_plain_rows_into_contiguous_columns():
    body = json.dumps({"instances": [[1, None, 3], [-1e15, 0.5, 1e15]]}).encode()
    columns = BATCH.from_body(body, JSON_SCOPE).instances
    assert isinstance(columns, Columns)
    assert len(columns) == 2
    assert all(array.flags.c_contiguous for array in columns.arrays.values())
    assert np.isnan(columns.arrays["b"][0]) and columns.arrays["c"].tolist() == [3.0, 1e15]
    assert columns.frame().equals(columns.frame(np.arange(2)))


def test_models_with_categories_take_the_usual_passes():
    mixed = FeatureSchema(
        features=[
            Feature(name="x", kind="numeric", min=0, max=1),
            Feature(name="c", kind="categorical", categories=["a"]),
        ],
        target="t",
        task="regression",
    )
    spec = instances_input(mixed, MAX_ROWS, reads_arrow=True)
    assert spec.rows_decoder is None
    assert spec.from_body(b'{"instances": [[1, "a"]]}', JSON_SCOPE).instances == [(1.0, "a")]


@pytest.mark.parametrize(
    "outputs",
    [
        Outputs(np.array([0, 1]), np.array([[0.25, 0.75], [1e-7, 1 - 1e-7]]), ["0", "1"]),
        Outputs(
            np.array(["no", "yes"], dtype=object), np.array([[0.5, 0.5], [0, 1.0]]), ["no", "yes"]
        ),
        Outputs(np.array([1.5, -2e-9]), None, []),
        Outputs(np.array([], dtype=object), np.zeros((0, 2)), ["a", "b"]),
        Outputs(np.array(["x"]), np.array([[0.2, 0.3, 0.5]]), ['say "x"', "b,c", "}"]),
        Outputs(
            np.arange(FEW_ROWS + 3) % 3,
            np.random.default_rng(0).dirichlet([1, 1, 1], FEW_ROWS + 3),
            ['say "x"', "b,c", "}"],
        ),
    ],
)
def test_the_json_answer_is_the_response_model(outputs):
    model = PredictResponse.model_construct(
        model="m:1",
        predictions=outputs.predictions.tolist(),
        probabilities=outputs.probability_dicts(),
    )
    assert json.loads(json_answer(outputs, "m:1")) == json.loads(model.model_dump_json())
