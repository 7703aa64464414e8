"""Offline batch scoring: chunks, bad rows with their row numbers, CSV and Parquet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from model import compiled as compiled_module
from model import store
from train import score as score_module
from train.__main__ import main as train_cli
from train.data import load_default
from train.score import ScoreError, check_chunk, score_file
from train.training import TrainConfig, train

from .test_onnx import mixed_table
from .test_training import churn_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cancer_model() -> store.LoadedModel:
    features, target = load_default()
    return store.load(train(features, target, TrainConfig(name="score-cancer")).tag)


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
    np.testing.assert_allclose(
        out[["probability_0", "probability_1"]], expected, rtol=1e-9, atol=1e-12
    )
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
        [8, "worst area", "not a number: 'inf'"],
        [12, "mean texture", "beyond ±1e15"],
    ]
    out = pd.read_csv(tmp_path / "out.csv")
    assert sorted(set(range(1, 21)) - set(out["row"])) == [4, 8, 12]


def test_categorical_regression_file(tmp_path):
    table = churn_table()
    tag = train(table.drop(columns="spend"), table["spend"],
                TrainConfig(name="score-reg", task="regression")).tag  # fmt: skip
    table.drop(columns="spend").to_csv(tmp_path / "in.csv", index=False)
    summary = score_file(store.load(tag), tmp_path / "in.csv", tmp_path / "out.csv",
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


def test_rows_with_the_wrong_number_of_fields_are_bad_rows_and_later_rows_keep_their_number(
    cancer_model, tmp_path
):
    features, _ = load_default()
    lines = features.iloc[:12].to_csv(index=False).splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0]  # row 3: a field short
    lines[8] += ",1.0"  # row 8: a field too many
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    summary = score_file(cancer_model, tmp_path / "in.csv", tmp_path / "out.csv",
                         tmp_path / "errors.csv", chunk_rows=4, progress=False)  # fmt: skip
    assert (summary.rows, summary.scored, summary.bad_rows) == (12, 10, 2)
    errors = pd.read_csv(tmp_path / "errors.csv", keep_default_na=False)
    assert errors.values.tolist() == [
        [3, "", "expected 30 fields, found 29"],
        [8, "", "expected 30 fields, found 31"],
    ]
    out = pd.read_csv(tmp_path / "out.csv")
    assert out["row"].tolist() == [1, 2, 4, 5, 6, 7, 9, 10, 11, 12]
    expected = cancer_model.pipeline.predict_proba(features.iloc[out["row"] - 1])
    np.testing.assert_allclose(
        out[["probability_0", "probability_1"]], expected, rtol=1e-9, atol=1e-12
    )


def test_numbers_stored_as_text_are_parsed_and_text_that_is_not_a_number_is_reported(
    cancer_model, tmp_path
):
    features, _ = load_default()
    table = features.iloc[:5].astype(str)
    table.loc[0, "mean radius"] = "nan"  # a missing-value text, as in a CSV file
    table.loc[1, "mean radius"] = "1_000"  # Python's float() reads it; the rule does not
    table.loc[2, "mean radius"] = " 12.5"  # ASCII spaces around a number are allowed
    table.loc[3, "mean radius"] = None
    table.to_parquet(tmp_path / "in.parquet")
    summary = score_file(cancer_model, tmp_path / "in.parquet", tmp_path / "out.parquet",
                         tmp_path / "errors.csv", progress=False)  # fmt: skip
    assert (summary.scored, summary.bad_rows) == (4, 1)
    errors = pd.read_csv(tmp_path / "errors.csv")
    assert errors.values.tolist() == [[2, "mean radius", "not a number: '1_000'"]]
    assert pd.read_parquet(tmp_path / "out.parquet")["row"].tolist() == [1, 3, 4, 5]


def test_kept_csv_columns_stay_text_and_output_is_valid_when_no_row_is_good(cancer_model, tmp_path):
    features, _ = load_default()
    table = features.iloc[:3].assign(id=["007", "010", "1e3"])
    table.to_csv(tmp_path / "in.csv", index=False)
    score_file(cancer_model, tmp_path / "in.csv", tmp_path / "out.parquet",
               tmp_path / "errors.csv", keep=("id",), progress=False)  # fmt: skip
    assert pd.read_parquet(tmp_path / "out.parquet")["id"].tolist() == ["007", "010", "1e3"]

    table["mean radius"] = "abc"
    table.to_parquet(tmp_path / "bad.parquet")
    summary = score_file(cancer_model, tmp_path / "bad.parquet", tmp_path / "none.parquet",
                         tmp_path / "errors.csv", progress=False)  # fmt: skip
    assert (summary.rows, summary.scored, summary.bad_rows) == (3, 0, 3)
    assert pd.read_parquet(tmp_path / "none.parquet").empty


def test_missing_keep_columns_and_unreadable_files_are_errors(cancer_model, tmp_path):
    features, _ = load_default()
    features.iloc[:3].to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(ScoreError, match="--keep columns not in the input"):
        score_file(cancer_model, tmp_path / "in.csv", tmp_path / "o.csv", tmp_path / "e.csv",
                   keep=("id",), progress=False)  # fmt: skip
    (tmp_path / "in.parquet").write_bytes(b"not parquet")
    with pytest.raises(ScoreError, match="cannot read"):
        score_file(cancer_model, tmp_path / "in.parquet", tmp_path / "o.csv",
                   tmp_path / "e.csv", progress=False)  # fmt: skip


def test_csv_labels_are_written_as_their_probability_columns_name_them(tmp_path):
    table = churn_table()
    target = table["churned"].astype(bool)
    tag = train(table.drop(columns="churned"), target, TrainConfig(name="score-bool")).tag
    table.drop(columns="churned").to_parquet(tmp_path / "in.parquet")
    score_file(store.load(tag), tmp_path / "in.parquet", tmp_path / "out.csv",
               tmp_path / "err.csv", progress=False)  # fmt: skip
    out = pd.read_csv(tmp_path / "out.csv", dtype={"prediction": str})
    assert set(out["prediction"]) <= {"True", "False"}
    labels = out[["probability_False", "probability_True"]].idxmax(axis=1)
    assert (labels == "probability_" + out["prediction"]).all()


def test_memory_held_by_arrow_is_bounded_by_the_chunk_not_the_file(
    cancer_model, tmp_path, monkeypatch
):
    features, _ = load_default()
    values = np.random.default_rng(0).uniform(0, 100, size=(80_000, features.shape[1]))
    source = tmp_path / "in.parquet"
    pd.DataFrame(values, columns=features.columns).to_parquet(source, row_group_size=4_000)
    allocated: list[int] = []
    scored_table = score_module.scored_table

    def measured(model, chunk, pool=None):
        allocated.append(pa.total_allocated_bytes())
        return scored_table(model, chunk, pool)

    monkeypatch.setattr(score_module, "scored_table", measured)
    score_file(cancer_model, source, tmp_path / "out.parquet", tmp_path / "errors.csv",
               chunk_rows=2_000, progress=False)  # fmt: skip
    assert len(allocated) == 40
    assert max(allocated) < source.stat().st_size / 4  # ~19 MiB of incompressible numbers


@pytest.fixture(scope="module")
def mixed_tag() -> str:
    features, target = mixed_table("binary")
    return train(features, target, TrainConfig(name="score-mixed")).tag


def mixed_input_with_bad_rows() -> pd.DataFrame:
    """Numeric and categorical gaps, an unseen category, and refused values in both kinds."""
    features, _ = mixed_table("binary", rows=500, seed=3)
    table = features.assign(**{"age in years": features["age in years"].astype(str)})
    table.loc[7, "age in years"] = "abc"  # "nan" elsewhere: a missing-value text
    table.loc[40, "2nd spend"] = 1e16
    table.loc[41, "2nd spend"] = -1e16
    table.loc[99, "city"] = "atlantis"
    table.loc[120, "plan"] = None
    table.loc[333, "age in years"] = "1_000"
    return table


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_onnx_and_sklearn_score_the_same_rows_and_report_the_same_errors(
    mixed_tag, tmp_path, monkeypatch, suffix
):
    # slices of 16 rows: each chunk runs in several slices, in the scorer's threads
    monkeypatch.setattr(compiled_module, "RUN_VALUES", 64)
    table = mixed_input_with_bad_rows()
    source = tmp_path / f"in{suffix}"
    table.to_parquet(source) if suffix == ".parquet" else table.to_csv(source, index=False)
    for runtime in ("sklearn", "onnx"):
        model = store.load(mixed_tag, runtime)
        summary = score_file(model, source, tmp_path / f"{runtime}.parquet",
                             tmp_path / f"{runtime}.errors.csv", chunk_rows=150,
                             progress=False)  # fmt: skip
        assert (summary.rows, summary.bad_rows) == (500, 4)
    errors = [(tmp_path / f"{runtime}.errors.csv").read_text() for runtime in ("sklearn", "onnx")]
    assert errors[0] == errors[1]
    assert [line.split(",")[:2] for line in errors[1].splitlines()[1:]] == [
        ["8", "age in years"], ["41", "2nd spend"], ["42", "2nd spend"], ["334", "age in years"]
    ]  # fmt: skip
    sklearn, onnx = (pd.read_parquet(tmp_path / f"{rt}.parquet") for rt in ("sklearn", "onnx"))
    assert onnx["row"].tolist() == sklearn["row"].tolist()
    assert onnx["prediction"].tolist() == sklearn["prediction"].tolist()
    probabilities = ["probability_0", "probability_1"]
    np.testing.assert_allclose(onnx[probabilities], sklearn[probabilities], atol=1e-4)

    # the ONNX answers from the checked arrays are exactly its answers from a frame
    onnx_model = store.load(mixed_tag, "onnx")
    chunk = check_chunk(pa.Table.from_pandas(table), onnx_model.schema, np.arange(1, 501))
    from_frame = onnx_model.outputs(chunk.features[chunk.good])
    np.testing.assert_array_equal(onnx[probabilities], from_frame.probabilities)


def test_the_command_line_imports_no_training_to_score():
    """onnx, skl2onnx and scikit-learn's datasets cost about a second of every `score`."""
    program = (
        "import sys, train.__main__; "
        "print(sorted(m for m in ('onnx', 'skl2onnx', 'sklearn', 'train.training') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


def scored_in_a_process(arguments: list[str], modules: tuple[str, ...]) -> tuple[int, list[str]]:
    """`python -m train score` with `arguments` in a fresh interpreter: its exit code, and
    which of `modules` it imported on the way."""
    program = (
        "import json, sys; from train.__main__ import main; "
        f"code = main(['score', *{arguments!r}]); "
        f"print(json.dumps([code, sorted(m for m in {modules!r} if m in sys.modules)]))"
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    code, imported = json.loads(done.stdout.strip().splitlines()[-1])
    return code, imported


def test_scoring_with_onnx_imports_no_scikit_learn(cancer_model, tmp_path):
    """Nothing but the ONNX model answers, so scikit-learn's 1.5 s import is not paid."""
    features, _ = load_default()
    features.iloc[:40].to_parquet(tmp_path / "in.parquet")
    arguments = ["--model", cancer_model.tag, "--runtime", "onnx", "--input",
                 str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out.parquet"),
                 "--no-progress"]  # fmt: skip
    assert scored_in_a_process(arguments, ("sklearn",)) == (0, [])
    out = pd.read_parquet(tmp_path / "out.parquet")
    expected = cancer_model.pipeline.predict_proba(features.iloc[:40])
    np.testing.assert_allclose(out[["probability_0", "probability_1"]], expected, atol=1e-9)


def test_a_damaged_pipeline_fails_the_load_unless_onnx_answers_and_it_waits(tmp_path):
    """The server loads and checks the pipeline even when ONNX answers; ONNX-only scoring
    loads it on first use, and that use fails as the load would have."""
    features, target = load_default()
    tag = train(features, target, TrainConfig(name="score-damaged")).tag
    path = store.load(tag, "onnx").pipeline_file
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(store.RegistryError, match=r"cannot load pipeline\.joblib"):
        store.load(tag, "onnx")
    with pytest.raises(store.RegistryError, match=r"cannot load pipeline\.joblib"):
        store.load(tag, "sklearn", pipeline_when_used=True)
    waiting = store.load(tag, "onnx", pipeline_when_used=True)
    answer = waiting.outputs(features.iloc[:5])
    assert answer.probabilities is not None and answer.probabilities.shape == (5, 2)
    with pytest.raises(store.RegistryError, match=r"cannot load pipeline\.joblib"):
        waiting.pipeline  # noqa: B018
