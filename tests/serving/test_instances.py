"""Request validation from a stored schema, without a server."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError

from model.schema import Feature, FeatureSchema
from serving.instances import instances_field, locate_errors, to_frame
from serving.responses import PredictResponse, RowsEnvelope, envelope_from_rows

SCHEMA = FeatureSchema(
    features=[
        Feature(name="age", kind="numeric", min=18, max=90),
        Feature(name="income level", kind="numeric", min=0, max=1e6),
        Feature(name="city", kind="categorical", categories=["lyon", "paris"]),
    ],
    target="churned",
    task="classification",
    classes=[0, 1],
)
VALID = {"age": 40, "income level": 1200.5, "city": "paris"}


@pytest.fixture
def validate():
    adapter = TypeAdapter(instances_field(SCHEMA, max_rows=3))

    def validate(instances):
        try:
            return adapter.validate_python(instances)
        except ValidationError as error:
            raise locate_errors(error, SCHEMA.names) from None

    return validate


def error_of(validate, instances) -> dict:
    with pytest.raises(ValidationError) as caught:
        validate(instances)
    errors = caught.value.errors()
    assert len(errors) == 1, errors
    return errors[0]


def test_named_and_positional_instances_give_the_same_values_and_frame(validate):
    named, positional = validate([VALID, [40, "1200.5", "paris"]])
    assert named == {"age": 40.0, "income level": 1200.5, "city": "paris"}
    assert positional == (40.0, 1200.5, "paris")
    frame = to_frame([named, positional], SCHEMA)
    assert frame.iloc[0].tolist() == frame.iloc[1].tolist() == [40.0, 1200.5, "paris"]


def test_null_is_a_missing_value_and_numbers_are_read_as_categories(validate):
    (row,) = validate([{"age": None, "income level": 3, "city": 75}])
    assert row == {"age": None, "income level": 3.0, "city": "75"}


@pytest.mark.parametrize(
    ("instance", "loc", "error_type"),
    [
        ({"age": 40, "city": "paris"}, (0, "income level"), "missing"),
        ({**VALID, "colour": "red"}, (0, "colour"), "extra_forbidden"),
        ({**VALID, "age": "forty"}, (0, "age"), "float_parsing"),
        ({**VALID, "age": math.nan}, (0, "age"), "finite_number"),
        ({**VALID, "income level": math.inf}, (0, "income level"), "finite_number"),
        ({**VALID, "age": [1]}, (0, "age"), "float_type"),
        ({**VALID, "city": {"name": "paris"}}, (0, "city"), "string_type"),
        ([40, 1200.5], (0,), "value_error"),
        ("paris", (0,), "dict_type"),
    ],
)
def test_bad_instances_name_the_instance_and_field(validate, instance, loc, error_type):
    error = error_of(validate, [instance])
    assert error["loc"] == loc
    assert error["type"] == error_type


def test_the_failing_instance_index_is_reported(validate):
    error = error_of(validate, [VALID, VALID, {**VALID, "age": "x"}])
    assert error["loc"] == (2, "age")


def test_wrong_length_says_how_many_values_were_expected(validate):
    assert "expected 3 values in schema order, got 4" in error_of(validate, [[1, 2, "a", 4]])["msg"]


@pytest.mark.parametrize(
    ("instances", "error_type"), [([], "too_short"), ([VALID] * 4, "too_long")]
)
def test_row_count_limits(validate, instances, error_type):
    assert error_of(validate, instances)["type"] == error_type


def test_to_frame_gives_the_training_dtypes():
    frame = to_frame([{"age": None, "income level": 3.0, "city": None}, VALID], SCHEMA)
    assert list(frame.columns) == SCHEMA.names
    assert frame["age"].dtype == "float64" and math.isnan(frame["age"][0])
    assert frame["city"].tolist() == [None, "paris"]


def test_envelope_from_rows_transposes_per_row_answers():
    rows = [
        {"model": "m:1", "prediction": 1, "probabilities": {"0": 0.2, "1": 0.8}},
        {"model": "m:1", "prediction": 0, "probabilities": {"0": 0.9, "1": 0.1}},
    ]
    response = TypeAdapter(RowsEnvelope).validate_python(rows)
    assert response == PredictResponse(
        model="m:1", predictions=[1, 0], probabilities=[{"0": 0.2, "1": 0.8}, {"0": 0.9, "1": 0.1}]
    )


def test_envelope_for_regressors_has_no_probabilities():
    envelope = envelope_from_rows([{"model": "m:1", "prediction": 2.5, "probabilities": None}])
    assert envelope == {"model": "m:1", "predictions": [2.5], "probabilities": None}


def test_frame_round_trip_keeps_row_order():
    rows = [{**VALID, "age": float(i)} for i in range(3)]
    assert to_frame(rows, SCHEMA)["age"].tolist() == [0.0, 1.0, 2.0]
    assert isinstance(to_frame(rows, SCHEMA), pd.DataFrame)
