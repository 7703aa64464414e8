"""The predictor behind the APIs agrees with the fitted pipeline, row for row."""

from __future__ import annotations

import numpy as np
import pytest

from model import store
from serving.runtime import Predictor
from tests.train.test_training import churn_table
from train.data import load_default
from train.training import TrainConfig, train


@pytest.mark.parametrize("runtime", ["onnx", "sklearn"])
@pytest.mark.parametrize("estimator", ["linear", "random_forest", "hist_gradient_boosting"])
def test_predictions_and_probabilities_match_the_pipeline(estimator, runtime):
    features, target = load_default()
    tag = train(features, target, TrainConfig(name=f"pred-{estimator}", estimator=estimator)).tag
    predictor = Predictor(store.load(tag, runtime))
    assert predictor.loaded.runtime == runtime
    # the ONNX model's probabilities are within the parity gate's tolerance
    tolerance = 1e-4 if runtime == "onnx" else 1e-12
    instances = features.iloc[:50].to_dict(orient="records")
    answer = predictor.predict(instances)
    assert answer.model == tag
    assert answer.predictions == predictor.loaded.pipeline.predict(features.iloc[:50]).tolist()
    expected = predictor.loaded.pipeline.predict_proba(features.iloc[:50])
    served = [[p["0"], p["1"]] for p in answer.probabilities]
    np.testing.assert_allclose(served, expected, rtol=1e-9, atol=tolerance)
    rows = predictor.predict_rows(instances)
    assert [r["prediction"] for r in rows] == answer.predictions


def test_categorical_string_labels_and_missing_values():
    table = churn_table()
    table["churned"] = table["churned"].map({0: "stay", 1: "leave"})
    tag = train(table.drop(columns="churned"), table["churned"], TrainConfig(name="pred-cat")).tag
    predictor = Predictor(store.load(tag))
    predictor.warm_up()
    assert predictor.ready
    instances = [
        {"age": None, "spend": 10.0, "city": "nice"},
        {"age": 30.0, "spend": 500.0, "city": None},
        {"age": 30.0, "spend": 500.0, "city": "berlin"},
    ]
    answer = predictor.predict(instances)
    assert answer.predictions[0] == "leave"
    assert set(answer.probabilities[0]) == {"leave", "stay"}
    assert len(answer.predictions) == 3


def test_regressors_answer_without_probabilities():
    table = churn_table()
    tag = train(
        table.drop(columns="spend"), table["spend"], TrainConfig(name="pred-reg", task="regression")
    ).tag
    predictor = Predictor(store.load(tag))
    answer = predictor.predict([{"age": 40.0, "city": "lyon", "churned": 1}])
    assert answer.probabilities is None and isinstance(answer.predictions[0], float)
