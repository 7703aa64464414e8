"""Data loading, schema inference, pipeline, quality gate and the model store (no server)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model import store
from model.schema import infer_kinds, infer_task
from train.__main__ import main as train_cli
from train.data import DataError, fingerprint, load_default, load_table
from train.evaluate import QualityGateError, check_gate
from train.training import TrainConfig, train


def churn_table(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """A small table with numeric, categorical and missing values, and a learnable target."""
    rng = np.random.default_rng(seed)
    city = rng.choice(["lyon", "paris", "nice"], size=rows)
    age = rng.integers(18, 90, size=rows).astype(float)
    spend = rng.gamma(2.0, 50.0, size=rows)
    age[::17] = np.nan
    churned = ((city == "nice") | (spend < 40)).astype(int)
    return pd.DataFrame({"age": age, "spend": spend, "city": city, "churned": churned})


def test_default_data_is_the_bundled_breast_cancer_set():
    features, target = load_default()
    assert features.shape == (569, 30)
    assert set(target.unique()) == {0, 1}
    assert all(kind == "numeric" for kind in infer_kinds(features).values())


def test_load_table_reads_csv_and_parquet_alike(tmp_path):
    table = churn_table()
    table.to_csv(tmp_path / "t.csv", index=False)
    table.to_parquet(tmp_path / "t.parquet", index=False)
    from_csv = load_table(tmp_path / "t.csv", "churned")
    from_parquet = load_table(tmp_path / "t.parquet", "churned")
    pd.testing.assert_frame_equal(from_csv[0], from_parquet[0])
    assert list(from_csv[0].columns) == ["age", "spend", "city"]


@pytest.mark.parametrize(
    ("name", "content", "target", "message"),
    [
        ("t.csv", "a,b\n1,2\n", "y", "target column 'y' not found"),
        ("t.txt", "a,b\n1,2\n", "b", "unsupported file type"),
        ("t.csv", "a,y\n1,2\n", "y", "need at least 10"),
    ],
)
def test_load_table_errors_say_what_is_wrong(tmp_path, name, content, target, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        load_table(tmp_path / name, target)


def test_fingerprint_ignores_row_order_but_not_values():
    features, target = load_default()
    shuffled = features.sample(frac=1, random_state=1)
    assert fingerprint(features, target) == fingerprint(shuffled, target.loc[shuffled.index])
    changed = features.copy()
    changed.iloc[0, 0] += 1
    assert fingerprint(features, target) != fingerprint(changed, target)


@pytest.mark.parametrize(
    ("values", "task"),
    [
        ([0, 1, 1, 0], "classification"),
        (["a", "b"], "classification"),
        ([0.5, 1.7, 2.2, 3.1], "regression"),
        (list(range(100)), "regression"),
    ],
)
def test_task_is_inferred_from_the_target(values, task):
    assert infer_task(pd.Series(values)) == task


def test_gate_blocks_low_scores_and_high_errors():
    check_gate({"roc_auc": 0.9}, "roc_auc", 0.9)
    with pytest.raises(QualityGateError, match="below the minimum"):
        check_gate({"roc_auc": 0.89}, "roc_auc", 0.9)
    with pytest.raises(QualityGateError, match="above the maximum"):
        check_gate({"rmse": 3.0}, "rmse", 2.0)


def test_training_is_reproducible_and_registers_schema_metrics_and_reference():
    features, target = load_default()
    first = train(features, target, TrainConfig(name="repro"))
    second = train(features, target, TrainConfig(name="repro"))
    assert first.metrics == second.metrics
    assert first.metrics["roc_auc"] > 0.95

    loaded = store.load(first.tag)
    assert loaded.labels["stage"] == "candidate"
    assert loaded.metadata["metrics"] == first.metrics
    assert loaded.metadata["data_fingerprint"].startswith("sha256:")
    assert "scikit-learn" in loaded.metadata["versions"]
    assert loaded.schema.names == list(features.columns)
    radius = loaded.schema.features[0]
    assert radius.min == pytest.approx(features["mean radius"].min(), rel=0.2)
    reference = store.load_reference(first.tag)
    assert set(reference.columns) == {*features.columns, "diagnosis", "prediction"}
    assert len(reference) == loaded.metadata["train_rows"]


def test_quality_gate_failure_registers_nothing():
    features, target = load_default()
    with pytest.raises(QualityGateError):
        train(features, target, TrainConfig(name="gated", min_score=0.9999999))
    assert store.versions("gated") == []


def test_categorical_regression_from_a_user_table(tmp_path):
    table = churn_table().rename(columns={"churned": "label"})
    table["label"] = table["spend"] * 2 + np.where(table["city"] == "nice", 100.0, 0.0)
    table.to_csv(tmp_path / "spend.csv", index=False)
    features, target = load_table(tmp_path / "spend.csv", "label")
    result = train(features, target, TrainConfig(name="spend", estimator="hist_gradient_boosting"))
    schema = store.load_schema(result.tag)
    assert schema.task == "regression"
    assert schema.categorical == ["city"]
    assert schema.features[2].categories == ["lyon", "nice", "paris"]
    assert result.primary_metric == "r2" and result.metrics["r2"] > 0.9


def test_promote_and_rollback_walk_the_promotion_history():
    features, target = load_default()
    tags = [train(features, target, TrainConfig(name="history", seed=s)).tag for s in (1, 2, 3)]
    assert store.resolve_tag("history") == tags[2]  # nothing promoted: newest
    for tag in tags:
        store.promote(tag)
    assert store.resolve_tag("history") == tags[2]
    assert store.rollback("history") == tags[1]
    assert store.rollback("history") == tags[0]
    assert store.resolve_tag("history") == tags[0]
    stages = {str(m.tag): m.info.labels["stage"] for m in store.versions("history")}
    assert stages == {tags[0]: "production", tags[1]: "rolled_back", tags[2]: "rolled_back"}
    with pytest.raises(store.RegistryError, match="first promoted version"):
        store.rollback("history")
    assert store.resolve_tag("history", tags[1]) == tags[1]


def test_cli_gate_exit_code_and_ensure_is_idempotent(capsys):
    assert train_cli(["--name", "cli", "--min-score", "0.9999999"]) == 1
    assert "quality gate failed" in capsys.readouterr().err
    assert train_cli(["ensure", "--name", "cli"]) == 0
    tag = store.resolve_tag("cli")
    assert train_cli(["ensure", "--name", "cli"]) == 0
    assert [str(m.tag) for m in store.versions("cli")] == [tag]
    assert "not training" in capsys.readouterr().out
    assert train_cli(["--data", "missing.csv", "--target", "y"]) == 2


def test_tools_inside_an_image_read_the_packaged_model_store(tmp_path, monkeypatch):
    from bentoml._internal.configuration.containers import BentoMLContainer

    features, target = load_default()
    tag = train(features, target, TrainConfig(name="packaged")).tag
    train(features, target, TrainConfig(name="not-packaged"))
    name, version = tag.split(":")
    bento = tmp_path / "bento"
    shutil.copytree(Path(store._get(tag).path), bento / "models" / name / version)
    assert not store.use_packaged_models({})
    own_store = BentoMLContainer.model_store.get()
    try:
        assert store.use_packaged_models({"BENTO_PATH": str(bento)})
        assert [str(m.tag) for m in store.versions(name)] == [tag]
        assert store.versions("not-packaged") == []  # only what the image packages
        assert store.resolve_tag(name) == tag
    finally:
        BentoMLContainer.model_store.set(own_store)
    assert store.versions("not-packaged")
