"""Offline batch scoring: chunks, bad rows with their row numbers, CSV and Parquet."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from train import registry
from train.__main__ import main as train_cli
from train.data import load_default
from train.score import ScoreError, score_file
from train.training import TrainConfig, train

from .test_training import churn_table


@pytest.fixture(scope="module")
def cancer_model() -> registry.LoadedModel:
    features, target = load_default()
    return registry.load(train(features, target, TrainConfig(name="score-cancer")).tag)


def test_scores_match_the_pipeline_across_chunks(cancer_model, tmp_path):
    features, _ = load_default()
    table = pd.concat([features] * 3, ignore_index=True).assign(id=lambda f: f.index * 10)
    table.to_parquet(tmp_path / "in.parquet")
    summary = score_file(cancer_model, tmp_path / "in.parquet", tmp_path / "out.parquet",
                         tmp_path / "errors.csv", chunk_rows=250, keep=("id",),
                         progress=False)  # fmt: skip
    assert (summary.rows, summary.scored, summary.bad_rows) == (len(table), len(table), 0)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["row"].tolist() == list(range(1, len(table) + 1))
    assert out["id"].tolist() == table["id"].tolist()
    expected = cancer_model.pipeline.predict_proba(table[features.columns])
    np.testing.assert_allclose(out[["probability_0", "probability_1"]], expected, rtol=1e-9)
    assert out["prediction"].tolist() == expected.argmax(axis=1).tolist()


def test_bad_rows_are_reported_with_row_and_column_not_dropped_silently(cancer_model, tmp_path):
    features, _ = load_default()
    table = features.iloc[:20].astype(object)
    table.loc[3, "mean radius"] = "abc"
    table.loc[7, "worst area"] = "inf"
    table.loc[11, "mean texture"] = 1e300
    table.loc[15, "mean area"] = None  # missing: imputed, not an error
    table.to_csv(tmp_path / "in.csv", index=False)
    code = train_cli(["score", "--model", cancer_model.tag, "--input", str(tmp_path / "in.csv"),
                      "--output", str(tmp_path / "out.csv"), "--chunk-rows", "6",
                      "--no-progress"])  # fmt: skip
    assert code == 3
    errors = pd.read_csv(tmp_path / "out.csv.errors.csv")
    assert errors.values.tolist() == [
        [4, "mean radius", "not a number: 'abc'"],
        [8, "worst area", "not finite or beyond ±1e15"],
        [12, "mean texture", "not finite or beyond ±1e15"],
    ]
    out = pd.read_csv(tmp_path / "out.csv")
    assert sorted(set(range(1, 21)) - set(out["row"])) == [4, 8, 12]


def test_categorical_regression_file(tmp_path):
    table = churn_table()
    tag = train(table.drop(columns="spend"), table["spend"],
                TrainConfig(name="score-reg", task="regression")).tag  # fmt: skip
    table.drop(columns="spend").to_csv(tmp_path / "in.csv", index=False)
    summary = score_file(registry.load(tag), tmp_path / "in.csv", tmp_path / "out.csv",
                         tmp_path / "err.csv", progress=False)  # fmt: skip
    assert summary.scored == len(table)
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["row", "prediction"] and out["prediction"].notna().all()


def test_missing_columns_and_unknown_types_are_errors(cancer_model, tmp_path, capsys):
    pd.DataFrame({"mean radius": [1.0]}).to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(ScoreError, match="columns missing"):
        score_file(cancer_model, tmp_path / "in.csv", tmp_path / "o.csv", tmp_path / "e.csv",
                   progress=False)  # fmt: skip
    assert (
        train_cli(
            [
                "score",
                "--model",
                cancer_model.tag,
                "--input",
                str(tmp_path / "in.csv"),
                "--output",
                str(tmp_path / "o.txt"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "unsupported output type" in capsys.readouterr().err
