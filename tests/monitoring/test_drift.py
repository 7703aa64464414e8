"""Drift report: verdicts, robustness, JSON and HTML output, and the command line.

Data: scikit-learn's bundled breast-cancer frame (569 rows, 30 numeric features) plus a
synthetic categorical feature `region` and a `prediction` column.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from model.schema import Feature, FeatureSchema, build_schema, infer_kinds
from monitoring.drift import (
    DriftInputError,
    DriftResult,
    DriftSettings,
    compute_drift,
    model_frame,
)

REPO = Path(__file__).resolve().parents[2]
REGIONS = ["north", "south", "east", "west"]
SHIFTED = ["mean radius", "worst texture", "mean smoothness"]
CLI_TIMEOUT = 120


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    frame = load_breast_cancer(as_frame=True).frame
    rng = np.random.default_rng(7)
    frame["region"] = rng.choice(REGIONS, size=len(frame), p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    frame["prediction"] = frame["target"].astype(str)
    return frame


@pytest.fixture(scope="module")
def schema(cancer: pd.DataFrame) -> FeatureSchema:
    features = cancer.drop(columns=["target", "prediction"])
    kinds = infer_kinds(features, categorical=["region"])
    return build_schema(features, cancer["target"], "classification", kinds, classes=[0, 1])


@pytest.fixture(scope="module")
def split(cancer: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    reference, held_out = train_test_split(
        cancer, test_size=0.3, random_state=0, stratify=cancer["target"]
    )
    return reference, held_out


@pytest.fixture(scope="module")
def reference(split: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    return split[0]


@pytest.fixture(scope="module")
def held_out(split: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    return split[1]


def shuffled(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows in another order: the same distribution in every column."""
    return frame.sample(frac=1.0, random_state=1).reset_index(drop=True)


def drifted_current(reference: pd.DataFrame) -> pd.DataFrame:
    """`reference` with SHIFTED moved by two standard deviations and `region` mix reversed."""
    current = shuffled(reference)
    for column in SHIFTED:
        current[column] = current[column] + 2 * reference[column].std()
    rng = np.random.default_rng(11)
    current["region"] = rng.choice(REGIONS, size=len(current), p=[0.1, 0.2, 0.3, 0.4])
    return current


def drifted_names(result: DriftResult) -> set[str]:
    return {name for name, column in result.columns.items() if column.drifted}


def test_held_out_split_has_no_drift(
    reference: pd.DataFrame, held_out: pd.DataFrame, schema: FeatureSchema
) -> None:
    result = compute_drift(reference, held_out, schema, model="cancer:1")

    assert list(result.columns) == schema.names
    assert result.drift_detected is False
    assert result.share_drifted <= 0.2
    assert result.prediction is not None
    assert result.prediction.drifted is False
    assert (result.reference_rows, result.current_rows) == (len(reference), len(held_out))


def test_exactly_the_shifted_columns_drift(reference: pd.DataFrame, schema: FeatureSchema) -> None:
    result = compute_drift(reference, drifted_current(reference), schema)

    assert drifted_names(result) == {*SHIFTED, "region"}
    assert result.share_drifted == pytest.approx(4 / len(schema.names))
    # Below 1000 reference rows Evidently tests numeric columns with K-S and
    # categorical ones with chi-square: p-values, drifted below the threshold.
    assert result.columns["mean radius"].method == "ks"
    assert result.columns["region"].method == "chisquare"
    assert result.columns["mean radius"].score < result.columns["mean radius"].threshold
    assert result.columns["mean texture"].score > result.columns["mean texture"].threshold


def test_dataset_verdict_uses_the_drift_share(
    reference: pd.DataFrame, schema: FeatureSchema
) -> None:
    current = drifted_current(reference)

    share = 4 / len(schema.names)

    default = compute_drift(reference, current, schema)
    at_share = compute_drift(reference, current, schema, settings=DriftSettings(drift_share=share))
    above = DriftSettings(drift_share=share + 0.01)
    above_share = compute_drift(reference, current, schema, settings=above)

    assert default.drift_detected is False
    assert at_share.drift_detected is True  # Evidently's rule: share >= drift_share
    assert above_share.drift_detected is False
    assert at_share.share_drifted == default.share_drifted == pytest.approx(share)


def test_threshold_and_method_overrides_apply(
    reference: pd.DataFrame, held_out: pd.DataFrame, schema: FeatureSchema
) -> None:
    settings = DriftSettings(
        num_method="wasserstein",
        per_column_method={"region": "jensenshannon"},
        per_column_threshold={"mean area": 0.0},
    )

    result = compute_drift(reference, held_out, schema, settings=settings)

    assert result.columns["mean texture"].method == "wasserstein"
    assert result.columns["region"].method == "jensenshannon"
    assert result.columns["mean area"].threshold == 0.0
    assert result.columns["mean area"].drifted is True
    assert result.columns["mean texture"].threshold == pytest.approx(0.1)


def test_prediction_drift_for_a_classifier(reference: pd.DataFrame, schema: FeatureSchema) -> None:
    current = shuffled(reference).assign(prediction="1")

    result = compute_drift(reference, current, schema)
    without = compute_drift(reference, current, schema, include_prediction=False)

    assert result.prediction is not None
    assert result.prediction.drifted is True
    assert result.prediction.method == "z"
    assert drifted_names(result) == set()
    assert result.drift_detected is False
    assert without.prediction is None


def test_prediction_drift_for_a_regressor(reference: pd.DataFrame, schema: FeatureSchema) -> None:
    regression = schema.model_copy(update={"task": "regression", "classes": None})
    stored = reference.assign(prediction=reference["mean area"] / 10)
    current = shuffled(stored)
    current["prediction"] = current["prediction"] * 1.5

    result = compute_drift(stored, current, regression)
    stable = compute_drift(stored, shuffled(stored), regression)

    assert result.prediction is not None
    assert result.prediction.method == "ks"
    assert result.prediction.drifted is True
    assert stable.prediction is not None
    assert stable.prediction.drifted is False


def test_verdicts_equal_evidently_data_drift_preset(
    reference: pd.DataFrame, schema: FeatureSchema
) -> None:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = ["mean radius", "mean texture", "worst area", "region"]
    subset = schema.model_copy(
        update={"features": [f for f in schema.features if f.name in columns]}
    )
    current = drifted_current(reference)
    ours = compute_drift(reference, current, subset, include_prediction=False)

    kinds = {f.name: f.kind for f in subset.features}
    definition = DataDefinition(numerical_columns=columns[:3], categorical_columns=["region"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the preset's own plots divide by zero
        snapshot = Report([DataDriftPreset()], include_tests=True).run(
            Dataset.from_pandas(model_frame(current, kinds), data_definition=definition),
            Dataset.from_pandas(model_frame(reference, kinds), data_definition=definition),
        )
    preset = _preset_verdicts(snapshot.dict())

    assert set(preset) == set(columns)
    for column in columns:
        score, threshold, drifted = preset[column]
        mine = ours.columns[column]
        assert (mine.score, mine.threshold, mine.drifted) == (score, threshold, drifted), column
    assert drifted_names(ours) == {"mean radius", "region"}


def test_degenerate_columns_get_defined_verdicts(
    reference: pd.DataFrame, schema: FeatureSchema
) -> None:
    odd = ["constant", "all null", "vanished", "gone"]
    extra = [Feature(name=name, kind="numeric") for name in odd]
    wide = schema.model_copy(update={"features": [*schema.features, *extra]})
    stored = reference.assign(constant=3.0, **{"all null": np.nan}, vanished=1.5, gone=2.5)
    current = shuffled(stored).assign(**{"vanished": np.nan}).drop(columns=["gone"])
    current.loc[current.index[:20], "region"] = "central"

    result = compute_drift(stored, current, wide)

    verdicts = {n: (result.columns[n].method, result.columns[n].drifted) for n in odd}
    assert verdicts == {
        "constant": ("z", False),
        "all null": ("empty_in_both", False),
        "vanished": ("empty_in_current", True),
        "gone": ("missing_in_current", True),
    }
    assert result.columns["region"].method == "chisquare"
    assert result.columns["region"].drifted is True
    assert json.loads(result.to_json())["columns"]["gone"]["score"] == 1.0


def test_empty_current_data_is_a_clear_error(
    reference: pd.DataFrame, schema: FeatureSchema
) -> None:
    with pytest.raises(DriftInputError, match="current data has no rows"):
        compute_drift(reference, reference.iloc[:0], schema)


def test_current_data_without_features_is_a_clear_error(
    reference: pd.DataFrame, schema: FeatureSchema
) -> None:
    unrelated = pd.DataFrame({"something": [1.0, 2.0]})
    with pytest.raises(DriftInputError, match="none of the feature columns"):
        compute_drift(reference, unrelated, schema)


def test_unknown_stattest_is_a_clear_error(
    reference: pd.DataFrame, held_out: pd.DataFrame, schema: FeatureSchema
) -> None:
    with pytest.raises(DriftInputError, match="no_such_test"):
        compute_drift(reference, held_out, schema, settings=DriftSettings(method="no_such_test"))


def test_json_has_exactly_the_documented_shape(
    reference: pd.DataFrame, held_out: pd.DataFrame, schema: FeatureSchema
) -> None:
    before = datetime.now().astimezone()
    data = json.loads(compute_drift(reference, held_out, schema, model="cancer:1").to_json())

    assert set(data) == {
        "drift_detected",
        "share_drifted",
        "model",
        "reference_rows",
        "current_rows",
        "columns",
        "prediction",
        "generated_at",
    }
    assert isinstance(data["drift_detected"], bool)
    assert isinstance(data["share_drifted"], float)
    assert data["model"] == "cancer:1"
    assert (data["reference_rows"], data["current_rows"]) == (len(reference), len(held_out))
    assert list(data["columns"]) == schema.names
    for verdict in [*data["columns"].values(), data["prediction"]]:
        assert set(verdict) == {"score", "method", "threshold", "drifted"}
        assert isinstance(verdict["score"], float)
        assert isinstance(verdict["method"], str)
        assert isinstance(verdict["threshold"], float)
        assert isinstance(verdict["drifted"], bool)
    generated = datetime.fromisoformat(data["generated_at"])
    assert generated.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= generated <= datetime.now().astimezone()


def test_html_is_a_complete_evidently_page(
    reference: pd.DataFrame, schema: FeatureSchema, tmp_path: Path
) -> None:
    result = compute_drift(reference, drifted_current(reference), schema)

    path = result.save_html(tmp_path / "nested" / "report.html")

    html = path.read_text(encoding="utf-8")
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert "<body>" in html
    assert html.rstrip().endswith("</html>")
    assert "drawDashboard=" in html  # Evidently's embedded page script
    assert "window.drawDashboard(metric_" in html  # and the call that draws this report
    assert '"Dataset drift"' in html
    assert '"mean radius"' in html
    assert '"Detected"' in html


def test_result_without_report_cannot_save_html(tmp_path: Path) -> None:
    result = DriftResult(
        drift_detected=False,
        share_drifted=0.0,
        model="",
        reference_rows=1,
        current_rows=1,
        columns={},
        prediction=None,
        generated_at=datetime.now().astimezone(),
    )
    with pytest.raises(ValueError, match="no Evidently report"):
        result.save_html(tmp_path / "report.html")


# Command line -------------------------------------------------------------------------
#
# Every run starts in the module's first fixture, so the processes (each importing
# Evidently for seconds) work while the tests above run; the tests below read results.

BAD_INPUT_RUNS = {
    "no reference": (["--current", "{work}/small.csv"], "--reference is required"),
    "no current": (["--reference", "{work}/small.csv"], "--current"),
    "missing file": (
        ["--reference", "{work}/missing.csv", "--current", "{work}/small.csv"],
        "no such file",
    ),
    "empty current": (
        ["--reference", "{work}/small.csv", "--current", "{work}/empty.csv"],
        "current data has no rows",
    ),
    "bad drift share": (
        ["--reference", "{work}/small.csv", "--current", "{work}/small.csv", "--drift-share", "2"],
        "drift-share",
    ),
}


class CliRuns:
    """Command-line runs started together; `result` waits for one of them."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self._started: dict[str, subprocess.Popen[str]] = {}
        self._finished: dict[str, subprocess.CompletedProcess[str]] = {}

    def start(self, name: str, args: list[str]) -> None:
        out = ["--out", str(self.work / name)]
        self._started[name] = _start_cli([a.format(work=self.work) for a in args] + out)

    def result(self, name: str) -> tuple[subprocess.CompletedProcess[str], Path]:
        if name not in self._finished:
            process = self._started[name]
            stdout, stderr = process.communicate(timeout=CLI_TIMEOUT)
            self._finished[name] = subprocess.CompletedProcess(
                process.args, process.returncode, stdout, stderr
            )
        return self._finished[name], self.work / name

    def stop(self) -> None:
        for name, process in self._started.items():
            if name not in self._finished:
                process.kill()
                process.communicate()


@pytest.fixture(scope="module", autouse=True)
def cli_runs(
    reference: pd.DataFrame,
    held_out: pd.DataFrame,
    schema: FeatureSchema,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CliRuns]:
    from model.store import save

    work = tmp_path_factory.mktemp("drift-cli")
    reference.to_csv(work / "reference.csv", index=False)
    held_out.to_parquet(work / "current.parquet", index=False)
    drifted_current(reference).to_csv(work / "drifted.csv", index=False)
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "x"]}).to_csv(
        work / "small.csv", index=False
    )
    (work / "empty.csv").write_text("a,b\n")
    tag = save(_unfitted_pipeline(), schema, reference, name="drift-cli", labels={}, metadata={})
    runs = CliRuns(work)
    runs.start("stable", [
        "--reference", "{work}/reference.csv", "--current", "{work}/current.parquet",
        "--target", "target", "--categorical", "region", "--fail-on-drift",
    ])  # fmt: skip
    runs.start("drifted", [
        "--model", tag, "--current", "{work}/drifted.csv", "--drift-share", "0.1",
        "--fail-on-drift", "--no-html",
    ])  # fmt: skip
    for name, (args, _) in BAD_INPUT_RUNS.items():
        runs.start(name, args)
    yield runs
    runs.stop()


def test_cli_writes_report_and_exits_0_without_drift(cli_runs: CliRuns) -> None:
    run, out = cli_runs.result("stable")

    assert run.returncode == 0, run.stderr
    summary = json.loads((out / "drift.json").read_text())
    assert summary["drift_detected"] is False
    assert summary["prediction"] is not None
    assert "mean radius" in summary["columns"]
    assert "target" not in summary["columns"]
    assert "window.drawDashboard(metric_" in (out / "report.html").read_text()
    assert run.stdout.startswith("no drift")


def test_cli_with_stored_model_exits_3_on_drift(cli_runs: CliRuns) -> None:
    run, out = cli_runs.result("drifted")

    assert run.returncode == 3, run.stderr
    summary = json.loads((out / "drift.json").read_text())
    assert summary["drift_detected"] is True
    assert summary["model"].startswith("drift-cli:")
    assert {n for n, c in summary["columns"].items() if c["drifted"]} == {*SHIFTED, "region"}
    assert not (out / "report.html").exists()
    assert run.stdout.startswith("drift detected")


@pytest.mark.parametrize("name", list(BAD_INPUT_RUNS))
def test_cli_exits_2_with_one_line_on_bad_input(cli_runs: CliRuns, name: str) -> None:
    run, out = cli_runs.result(name)

    assert run.returncode == 2, run.stderr
    assert BAD_INPUT_RUNS[name][1] in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not (out / "drift.json").exists()


def _start_cli(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "monitoring", "drift", "--quiet", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _unfitted_pipeline() -> Pipeline:
    return Pipeline([("model", DummyClassifier())])


def _preset_verdicts(snapshot: dict) -> dict[str, tuple[float, float, bool]]:
    """Per column: Evidently's ValueDrift score and threshold, and its drift test verdict."""
    failed = {
        test["metric_config"]["params"]["column"]: test["status"] == "FAIL"
        for test in snapshot["tests"]
        if test["metric_config"]["params"]["type"].endswith(":ValueDrift")
    }
    return {
        metric["config"]["column"]: (
            float(metric["value"]),
            float(metric["config"]["threshold"]),
            failed[metric["config"]["column"]],
        )
        for metric in snapshot["metrics"]
        if metric["config"]["type"].endswith(":ValueDrift")
    }
