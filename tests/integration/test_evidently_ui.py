"""Drift history in Evidently's own UI: the real CLI fills a workspace with three runs (the
last one drifted), the real `evidently ui` serves it on a free loopback port, and its HTTP
API shows the model's project, the three snapshots and the dashboard panels with a point
per run. Headless Chromium screenshots the dashboard and the drift report page.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bench.screenshots import (
    DriftRuns,
    EvidentlyUI,
    blank_reason,
    run_drift_jobs,
    screenshot,
)
from model import store
from monitoring.workspace import drift_panels

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def drift_runs(breast_cancer_model: store.LoadedModel, tmp_path_factory) -> DriftRuns:
    return run_drift_jobs(tmp_path_factory.mktemp("drift-history"), breast_cancer_model.tag)


@pytest.fixture(scope="module")
def ui(drift_runs: DriftRuns, tmp_path_factory) -> Iterator[EvidentlyUI]:
    server = EvidentlyUI(drift_runs.workspace, tmp_path_factory.mktemp("ui") / "ui.log")
    try:
        server.wait_ready(timeout=120)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def project(ui: EvidentlyUI, breast_cancer_model: store.LoadedModel) -> dict:
    projects = requests.get(f"{ui.url}/api/projects", timeout=10).json()
    assert [p["name"] for p in projects] == [breast_cancer_model.tag.split(":")[0]]
    return projects[0]


def summaries(drift_runs: DriftRuns) -> list[dict]:
    """drift.json of each run, oldest first."""
    runs = sorted(p for p in drift_runs.runs.iterdir() if p.is_dir())
    return [json.loads((run / "drift.json").read_text()) | {"run": run.name} for run in runs]


def test_project_has_a_snapshot_per_run(
    ui: EvidentlyUI, project: dict, drift_runs: DriftRuns, breast_cancer_model: store.LoadedModel
) -> None:
    answer = requests.get(f"{ui.url}/api/projects/{project['id']}/snapshots", timeout=10)

    assert answer.status_code == 200
    snapshots = sorted(answer.json(), key=lambda s: s["timestamp"])
    assert [s["name"] for s in snapshots] == [s["run"] for s in summaries(drift_runs)]
    assert {s["metadata"]["model_id"] for s in snapshots} == {breast_cancer_model.tag}


def test_dashboard_panels_plot_every_run(
    ui: EvidentlyUI, project: dict, drift_runs: DriftRuns
) -> None:
    dashboard = requests.get(f"{ui.url}/api/v2/dashboards/{project['id']}", timeout=10).json()
    panels = dashboard["panels"]
    assert [p["title"] for p in panels] == [p.title for p in drift_panels()]
    assert [t["title"] for t in dashboard["tabs"]] == ["Drift"]

    series = {}
    for panel in panels:
        filters = [
            {key: value[key] for key in ("tags", "metadata", "metric", "metric_labels")}
            for value in panel["values"]
        ]
        answer = requests.post(
            f"{ui.url}/api/v2/snapshots/{project['id']}/data_series_batch",
            json={"series_filter": filters},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text  # Litestar's default for a POST
        data = answer.json()
        assert len(data["sources"]) == 3, panel["title"]
        assert data["series"], f"panel {panel['title']!r} has no series"
        series[panel["title"]] = data["series"]

    runs = summaries(drift_runs)
    assert [r["drift_detected"] for r in runs] == [False, False, True]
    assert series["Drift detected"][0]["values"] == [0.0, 0.0, 1.0]
    shares = series["Share of drifted features"][0]["values"]
    assert shares == pytest.approx([r["share_drifted"] for r in runs])
    scores = {s["params"]["column"]: s["values"] for s in series["Feature drift scores"]}
    assert set(scores) == set(runs[0]["columns"])
    for name, values in scores.items():
        expected = [r["columns"][name]["score"] for r in runs]
        assert values == pytest.approx(expected, rel=1e-9, abs=1e-300), name
    prediction = series["Prediction drift score"][0]["values"]
    assert prediction == pytest.approx([r["prediction"]["score"] for r in runs])


def test_screenshots_of_the_dashboard_and_the_report_are_real_pages(
    ui: EvidentlyUI, project: dict, drift_runs: DriftRuns, tmp_path: Path
) -> None:
    shots = [
        screenshot(f"{ui.url}/projects/{project['id']}", tmp_path / "dashboard.png"),
        screenshot(drift_runs.latest_report().as_uri(), tmp_path / "report.png"),
    ]
    blank = screenshot("about:blank", tmp_path / "blank.png", budget_ms=100)

    for shot in shots:
        assert blank_reason(shot) is None, shot
    assert blank_reason(blank) is not None
