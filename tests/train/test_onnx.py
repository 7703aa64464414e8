"""The ONNX model made at registration: every estimator converts, with categories and gaps,
passes the parity gate, and answers like the pipeline; a failure never blocks registration."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from model import store
from model.compiled import CompiledModel
from model.schema import to_model_frame
from train.__main__ import main as train_cli
from train.onnx_convert import convert
from train.pipeline import ESTIMATORS
from train.training import TrainConfig, train

TASKS = ("binary", "multiclass_text", "regression")


def mixed_table(task: str, rows: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Numeric and categorical features, gaps in both, awkward names; a learnable target."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, size=rows).astype(float)
    spend = rng.gamma(2.0, 50.0, size=rows)
    city = rng.choice(["lyon", "paris", "nice", "brest"], size=rows).astype(object)
    plan = rng.choice(["a", "b"], size=rows).astype(object)
    age[::13] = np.nan
    spend[5::29] = np.nan
    city[::11] = None
    features = pd.DataFrame({"age in years": age, "2nd spend": spend, "city": city, "plan": plan})
    signal = np.nan_to_num(spend, nan=100.0) / 50 + (city == "nice") * 2 + (plan == "b")
    if task == "regression":
        target = pd.Series(signal * 10 + rng.normal(0, 1, rows), name="value")
    elif task == "binary":
        target = pd.Series((signal > 3).astype(int), name="churned")
    else:
        bins = np.digitize(signal, [2.5, 4.0])
        target = pd.Series(np.array(["low", "mid", "high"])[bins], name="band")
    return features, target


def scored_rows(features: pd.DataFrame) -> pd.DataFrame:
    """Rows to answer: held-out-like rows plus an unseen category and all-gap rows."""
    extra = pd.DataFrame(
        {
            "age in years": [np.nan, 40.0],
            "2nd spend": [np.nan, 1e6],
            "city": [None, "atlantis"],
            "plan": [None, "z"],
        }
    )
    rows = pd.concat([features.iloc[:60], extra], ignore_index=True)
    kinds = {"age in years": "numeric", "2nd spend": "numeric", "city": "categorical"}
    return to_model_frame(rows, {**kinds, "plan": "categorical"})


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_every_estimator_converts_passes_parity_and_answers_like_the_pipeline(task, estimator):
    features, target = mixed_table(task)
    result = train(features, target, TrainConfig(name=f"onnx-{task}", estimator=estimator))
    assert result.onnx_status == "passed"
    loaded = store.load(result.tag)
    record = loaded.metadata["onnx"]
    assert record["status"] == "passed"
    parity = record["parity"]
    assert parity["passed"] and parity["rows"] == 80 and parity["tolerance"] == 1e-4
    assert loaded.runtime == "onnx" and "passed parity" in loaded.runtime_note

    rows = scored_rows(features)
    compiled = loaded.outputs(rows)
    pipeline = store.load(result.tag, "sklearn")
    assert pipeline.runtime == "sklearn" and pipeline.compiled is None
    expected = pipeline.outputs(rows)
    if task == "regression":
        spread = float(target.std())
        assert np.max(np.abs(compiled.predictions - expected.predictions)) / spread <= 1e-4
    else:
        assert compiled.predictions.tolist() == expected.predictions.tolist()
        assert compiled.classes == expected.classes
        np.testing.assert_allclose(compiled.probabilities, expected.probabilities, atol=1e-4)


@pytest.mark.parametrize("task", TASKS)
def test_linear_models_answer_without_scaling_in_the_graph(task):
    """The scaler is folded into the weights: no Sub (or Scaler) over the inputs, same answers."""
    features, target = mixed_table(task)
    tag = train(features, target, TrainConfig(name=f"onnx-fold-{task}")).tag
    loaded = store.load(tag)
    graph = onnx.load_from_string(store.onnx_path(tag).read_bytes()).graph
    assert not {"Sub", "Scaler"} & {node.op_type for node in graph.node}
    rows = scored_rows(features)
    expected = store.load(tag, "sklearn").outputs(rows)
    answer = loaded.outputs(rows)
    if task == "regression":
        np.testing.assert_allclose(answer.predictions, expected.predictions, rtol=1e-12)
    else:
        np.testing.assert_allclose(answer.probabilities, expected.probabilities, atol=1e-12)


def test_a_parity_failure_keeps_the_version_on_scikit_learn_with_the_reason():
    features, target = mixed_table("binary")
    config = TrainConfig(name="onnx-strict", estimator="random_forest", onnx_tolerance=0.0)
    result = train(features, target, config)
    assert result.onnx_status == "parity_failed"
    loaded = store.load(result.tag)
    assert loaded.runtime == "sklearn"
    assert "parity_failed" in loaded.runtime_note
    assert "tolerance 0" in loaded.metadata["onnx"]["reason"]
    with pytest.raises(
        store.RegistryError,
        match=r"ONNX runtime required \(MODEL_RUNTIME=onnx\), but its ONNX model is",
    ):
        store.load(result.tag, "onnx")


class Unconvertible(ClassifierMixin, BaseEstimator):
    """A classifier skl2onnx has no converter for."""

    def fit(self, x, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, x):
        return np.full((len(x), len(self.classes_)), 1 / len(self.classes_))


def test_a_conversion_failure_is_recorded_not_raised(monkeypatch):
    features, target = mixed_table("binary")
    result = train(features, target, TrainConfig(name="onnx-ok"))
    pipeline = store.load(result.tag).pipeline
    pipeline.steps[-1] = ("model", Unconvertible().fit(None, target))
    conversion = convert(pipeline, store.load(result.tag).schema, scored_rows(features))
    assert conversion.status == "conversion_failed" and conversion.model is None
    assert "Unconvertible" in conversion.reason
    assert conversion.to_metadata()["reason"] == conversion.reason


def test_a_version_registered_without_onnx_serves_with_scikit_learn():
    features, target = mixed_table("binary")
    result = train(features, target, TrainConfig(name="onnx-off", onnx=False))
    loaded = store.load(result.tag)
    assert loaded.runtime == "sklearn"
    assert "skipped" in loaded.runtime_note
    assert not store.onnx_path(result.tag).exists()


def test_the_compiled_model_survives_pickling_as_spark_ships_it():
    import pickle

    features, target = mixed_table("multiclass_text")
    loaded = store.load(train(features, target, TrainConfig(name="onnx-pickle")).tag)
    copy = pickle.loads(pickle.dumps(loaded.compiled))
    assert isinstance(copy, CompiledModel)
    rows = scored_rows(features)
    np.testing.assert_array_equal(
        copy.outputs(rows).probabilities, loaded.outputs(rows).probabilities
    )


def test_export_writes_the_onnx_model_and_its_schema(tmp_path, capsys):
    features, target = mixed_table("multiclass_text")
    tag = train(features, target, TrainConfig(name="onnx-export")).tag
    assert (
        train_cli(["export", "--model", tag, "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["onnx"] == str(tmp_path / "m.onnx")
    described = json.loads((tmp_path / "m.json").read_text())
    assert described["model"] == tag
    assert described["classes"] == ["high", "low", "mid"]
    assert described["outputs"] == ["label", "probabilities"]
    assert [f["input"] for f in described["features"]] == [
        "age_in_years",
        "f_2nd_spend",
        "city",
        "plan",
    ]
    assert described["features"][2]["missing"] == "__missing__"
    assert (tmp_path / "m.onnx").read_bytes() == store.onnx_path(tag).read_bytes()


def test_export_refuses_a_version_without_a_passing_onnx_model(tmp_path, capsys):
    features, target = mixed_table("binary")
    tag = train(features, target, TrainConfig(name="onnx-none", onnx=False)).tag
    assert train_cli(["export", "--model", tag, "--out", str(tmp_path / "m.onnx")]) == 2
    assert (
        "ONNX runtime required (MODEL_RUNTIME=onnx), but its ONNX model is skipped"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "m.onnx").exists()
