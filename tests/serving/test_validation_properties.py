"""Property tests: any JSON body is either valid and predictable, or a validation error."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from model import store
from serving.instances import instances_field
from serving.runtime import Predictor
from tests.train.test_training import churn_table
from train.training import TrainConfig, train

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
ANY_JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def churn_predictor() -> Predictor:
    table = churn_table()
    tag = train(table.drop(columns="churned"), table["churned"], TrainConfig(name="props")).tag
    predictor = Predictor(store.load(tag))
    predictor.warm_up()
    return predictor


def instance_values(names: list[str]):
    """Instances close to valid, so that many pass validation and reach the model."""
    value = st.one_of(
        st.none(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**20), max_value=10**20),
        st.sampled_from(["lyon", "paris", "nice", "berlin", "", "1e3", "NaN", "inf"]),
        st.booleans(),
    )
    named = st.fixed_dictionaries({name: value for name in names})
    positional = st.lists(value, min_size=len(names) - 1, max_size=len(names) + 1)
    return st.one_of(named, positional, ANY_JSON)


def check_body(body: object, predictor: Predictor) -> None:
    """What the service does with a body: validate (a 400 on failure), then predict."""
    adapter = TypeAdapter(instances_field(predictor.schema, max_rows=50))
    try:
        if not isinstance(body, dict) or "instances" not in body:
            raise ValidationError.from_exception_data("Input", [])
        instances = adapter.validate_json(json.dumps(body["instances"]))
    except ValidationError:
        return
    answer = predictor.predict(instances)
    assert len(answer.predictions) == len(instances)
    json.dumps(answer.model_dump())  # the response serializes


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=ANY_JSON)
def test_any_json_body_is_rejected_or_answered(churn_predictor, body):
    check_body(body, churn_predictor)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_near_valid_instances_are_rejected_or_answered(churn_predictor, data):
    names = churn_predictor.schema.names
    instances = data.draw(st.lists(instance_values(names), min_size=0, max_size=5))
    check_body({"instances": instances}, churn_predictor)
