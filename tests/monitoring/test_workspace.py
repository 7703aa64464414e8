"""Drift history in an Evidently Workspace: one project per model, a snapshot per run,
dashboard panels whose series are the run's own numbers, pruning, and concurrent writers.

`tests/integration/test_evidently_ui.py` reads such a workspace through `evidently ui`.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evidently.ui.workspace import Workspace
from sklearn.datasets import load_breast_cancer

from model.schema import FeatureSchema, build_schema, infer_kinds
from monitoring.drift import DriftResult, DriftSettings, compute_drift
from monitoring.drift_metric import RunValue
from monitoring.workspace import DASHBOARD_TAB, drift_panels, project_name, record_run

REPO = Path(__file__).resolve().parents[2]
MODEL = "cancer:v1"
SHIFTED = ["mean radius", "worst texture", "mean smoothness", "mean area"]


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = load_breast_cancer(as_frame=True).frame
    frame["prediction"] = frame["target"].astype(str)
    reference = frame.sample(frac=0.6, random_state=0)
    return reference, frame.drop(reference.index)


@pytest.fixture(scope="module")
def schema(frames: tuple[pd.DataFrame, pd.DataFrame]) -> FeatureSchema:
    reference = frames[0]
    features = reference.drop(columns=["target", "prediction"])
    kinds = infer_kinds(features, categorical=[])
    return build_schema(features, reference["target"], "classification", kinds, classes=[0, 1])


@pytest.fixture(scope="module")
def stable(frames: tuple[pd.DataFrame, pd.DataFrame], schema: FeatureSchema) -> DriftResult:
    return compute_drift(*frames, schema, model=MODEL, workers=1)


@pytest.fixture(scope="module")
def drifted(frames: tuple[pd.DataFrame, pd.DataFrame], schema: FeatureSchema) -> DriftResult:
    reference, current = frames
    current = current.copy()
    for column in SHIFTED:
        current[column] = current[column] + 3 * reference[column].std()
    current["prediction"] = np.where(current.index % 5 == 0, "0", "1")
    settings = DriftSettings(drift_share=0.1)
    return compute_drift(reference, current, schema, model=MODEL, settings=settings, workers=1)


def values_of(workspace: Workspace, project_id: object, snapshot_id: object) -> dict:
    """{(value, column): number} of the snapshot's RunValue metrics, as stored."""
    snapshot = workspace.get_run(project_id, snapshot_id)
    assert snapshot is not None
    alias = RunValue.__config__.type_alias
    found = {}
    for result in snapshot.metric_results.values():
        params = result.metric_value_location.metric.params
        if params["type"] == alias:
            found[params["value"], params.get("column")] = result.value
    return found


def test_runs_become_snapshots_of_the_models_project(
    tmp_path: Path, stable: DriftResult, drifted: DriftResult
) -> None:
    for name, result in [("run-1", stable), ("run-2", drifted), ("run-3", stable)]:
        record_run(tmp_path, result, model=MODEL, run_name=name, keep=10)

    workspace = Workspace(str(tmp_path))
    projects = workspace.list_projects()
    assert [p.name for p in projects] == [project_name(MODEL)] == ["cancer"]
    project = projects[0]
    snapshots = sorted(workspace.list_runs(project.id))
    assert [workspace.get_run(project.id, s).name for s in snapshots] == ["run-1", "run-2", "run-3"]
    assert workspace.get_run(project.id, snapshots[1]).metadata["model_id"] == MODEL

    values = values_of(workspace, project.id, snapshots[1])
    assert values["drift_detected", None] == float(drifted.drift_detected) == 1.0
    assert values["share_drifted", None] == pytest.approx(drifted.share_drifted)
    for column, verdict in drifted.columns.items():
        assert values["score", column] == pytest.approx(verdict.score, rel=1e-12, abs=1e-300)
        assert values["drifted", column] == float(verdict.drifted)
    assert drifted.prediction is not None
    assert values["prediction_score", "prediction"] == pytest.approx(drifted.prediction.score)
    assert values["prediction_drifted", "prediction"] == 1.0
    assert values_of(workspace, project.id, snapshots[0])["drift_detected", None] == 0.0


def test_project_gets_the_drift_panels_once(tmp_path: Path, stable: DriftResult) -> None:
    record_run(tmp_path, stable, model=MODEL, run_name="a", keep=10)
    record_run(tmp_path, stable, model=MODEL, run_name="b", keep=10)

    workspace = Workspace(str(tmp_path))
    dashboard = workspace.get_dashboard(workspace.list_projects()[0].id)
    assert [tab.title for tab in dashboard.tabs] == [DASHBOARD_TAB]
    titles = [panel.title for panel in dashboard.panels]
    assert titles == [panel.title for panel in drift_panels()]
    assert len(titles) == 5
    alias = RunValue.__config__.type_alias
    selected = {value.metric_labels["value"] for p in dashboard.panels for value in p.values}
    assert {value.metric for p in dashboard.panels for value in p.values} == {alias}
    stored = values_of(
        workspace,
        workspace.list_projects()[0].id,
        workspace.list_runs(workspace.list_projects()[0].id)[0],
    )
    assert selected <= {value for value, _ in stored}


def test_existing_project_without_the_tab_gets_it(tmp_path: Path, stable: DriftResult) -> None:
    from evidently.sdk.models import ProjectModel

    workspace = Workspace(str(tmp_path))
    project = workspace.add_project(ProjectModel(name="cancer", description="made by hand"))

    record_run(tmp_path, stable, model=MODEL, run_name="a", keep=10)

    assert [p.id for p in workspace.list_projects()] == [project.id]
    assert [tab.title for tab in workspace.get_dashboard(project.id).tabs] == [DASHBOARD_TAB]


def test_oldest_snapshots_beyond_keep_are_deleted(tmp_path: Path, stable: DriftResult) -> None:
    for index in range(5):
        record_run(tmp_path, stable, model=MODEL, run_name=f"run-{index}", keep=3)

    workspace = Workspace(str(tmp_path))
    project = workspace.list_projects()[0]
    names = sorted(workspace.get_run(project.id, s).name for s in workspace.list_runs(project.id))
    assert names == ["run-2", "run-3", "run-4"]


def test_concurrent_writers_share_one_project(tmp_path: Path, stable: DriftResult) -> None:
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(
            lambda i: record_run(tmp_path, stable, model=MODEL, run_name=f"r{i}", keep=10),
            range(4),
        ))  # fmt: skip

    workspace = Workspace(str(tmp_path))
    projects = workspace.list_projects()
    assert len(projects) == 1
    assert len(workspace.list_runs(projects[0].id)) == 4


def test_models_get_projects_of_their_own(tmp_path: Path, stable: DriftResult) -> None:
    record_run(tmp_path, stable, model="cancer:v1", run_name="a", keep=10)
    record_run(tmp_path, stable, model="cancer:v2", run_name="b", keep=10)
    record_run(tmp_path, stable, model="churn:v1", run_name="c", keep=10)

    names = sorted(p.name for p in Workspace(str(tmp_path)).list_projects())
    assert names == ["cancer", "churn"]


def test_cli_run_survives_a_workspace_it_cannot_write(
    tmp_path: Path, frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    reference, current = frames
    reference.to_csv(tmp_path / "reference.csv", index=False)
    current.to_csv(tmp_path / "current.csv", index=False)
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the workspace should be")

    run = subprocess.run(
        [
            sys.executable, "-m", "monitoring", "drift",
            "--reference", str(tmp_path / "reference.csv"),
            "--current", str(tmp_path / "current.csv"),
            "--target", "target", "--no-html",
            "--out", str(tmp_path / "out"), "--workspace", str(blocked),
        ],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
    )  # fmt: skip

    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out" / "drift.json").is_file()
    assert "could not add drift run" in run.stderr
    assert blocked.read_text() == "a file where the workspace should be"


def test_recording_reads_no_earlier_snapshot(
    tmp_path: Path, stable: DriftResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Evidently's Workspace() loads every snapshot; a run must cost the same at run 1,000."""
    from evidently.ui.service.storage.local.base import LocalState as ServiceState
    from evidently.ui.storage.local.base import LocalState

    record_run(tmp_path, stable, model=MODEL, run_name="first", keep=10)

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("an earlier snapshot was read")

    monkeypatch.setattr(LocalState, "read_snapshot", no_reading)
    monkeypatch.setattr(ServiceState, "reload_snapshots", no_reading)
    record_run(tmp_path, stable, model=MODEL, run_name="second", keep=10)
    monkeypatch.undo()

    assert (
        len(Workspace(str(tmp_path)).list_runs(Workspace(str(tmp_path)).list_projects()[0].id)) == 2
    )
