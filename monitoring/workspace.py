"""Drift history in an Evidently Workspace: every run is a snapshot of the model's project.

`record_run(directory, result, ...)` adds the run's Evidently snapshot to the project named
after the model (created on first use, with dashboard panels for the share of drifted
features, the dataset verdict, each feature's drift score and the prediction's), and
deletes the oldest snapshots beyond `keep`. `evidently ui --workspace DIR` shows them.

A snapshot is named after its run and carries the model tag as metadata (`model_id`), so
one project holds every version of a model and a panel can be narrowed to one of them.
The series come from the `RunValue` metrics of the drift report (see `drift_metric`): the
same numbers as drift.json, no second computation.

Importing this module is cheap; Evidently is imported when a run is recorded.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evidently.sdk.models import DashboardModel
    from evidently.ui.workspace import Project, Workspace

    from monitoring.drift import DriftResult

logger = logging.getLogger(__name__)

DASHBOARD_TAB = "Drift"
LOCK_FILE = ".tabular-model.lock"


def project_name(model: str) -> str:
    """The project of a model: its store name, without the version."""
    return model.split(":", 1)[0] or "model"


def record_run(
    directory: Path, result: DriftResult, *, model: str, run_name: str, keep: int
) -> str:
    """Add the run to the model's project; return the snapshot id."""
    snapshot = result.evidently_snapshot()
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        workspace = _files_only(directory)
        project = _project(workspace, project_name(model))
        reference = workspace.add_run(project.id, snapshot, name=run_name)
        _prune(workspace, project, keep)
    logger.info("drift run %s added to workspace %s as %s", run_name, directory, reference.id)
    return str(reference.id)


def _files_only(directory: Path) -> Workspace:
    """Evidently's local Workspace without its dataset, artifact and tracing managers.

    Their constructor loads every snapshot in the workspace (19 s and 360 MiB at 300 runs,
    measured); writing a run, its project and dashboard needs only the workspace's files.
    """
    from evidently.ui.storage.local.base import LocalState
    from evidently.ui.workspace import Workspace

    class SnapshotFiles(Workspace):
        def __init__(self, path: str) -> None:
            self.path = path
            self.state = LocalState(path)

    return SnapshotFiles(str(directory))


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One writer at a time: two jobs must not both create the model's project."""
    with (directory / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _project(workspace: Workspace, name: str) -> Project:
    from evidently.sdk.models import ProjectModel

    found = workspace.search_project(name)
    if found:
        project = found[0]
    else:
        project = workspace.add_project(
            ProjectModel(name=name, description=f"Drift of {name}'s inputs and predictions")
        )
        logger.info("created workspace project %s (%s)", name, project.id)
    dashboard = workspace.get_dashboard(project.id)
    if not any(tab.title == DASHBOARD_TAB for tab in dashboard.tabs):
        workspace.save_dashboard(project.id, _with_drift_tab(dashboard))
    return project


def _with_drift_tab(dashboard: DashboardModel) -> DashboardModel:
    import uuid

    from evidently.sdk.models import DashboardTabModel

    panels = drift_panels()
    dashboard.panels.extend(panels)
    dashboard.tabs.append(
        DashboardTabModel(id=uuid.uuid4(), title=DASHBOARD_TAB, panels=[p.id for p in panels])
    )
    return dashboard


def drift_panels() -> list:
    """The project's panels, each selecting `RunValue` series by their `value` label."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import bar_plot_panel, line_plot_panel

    from monitoring.drift_metric import (
        DRIFT_DETECTED,
        PREDICTION_DRIFTED,
        PREDICTION_SCORE,
        SCORE,
        SHARE_DRIFTED,
        RunValue,
    )

    metric = RunValue.__config__.type_alias

    def series(value: str, legend: str) -> PanelMetric:
        return PanelMetric(legend=legend, metric=metric, metric_labels={"value": value})

    return [
        line_plot_panel(
            "Share of drifted features",
            [series(SHARE_DRIFTED, "share drifted")],
            "Features whose drift test failed, out of all features, per run.",
            size="half",
        ),
        bar_plot_panel(
            "Drift detected",
            [series(DRIFT_DETECTED, "drift detected")],
            "1: the share of drifted features reached the threshold (dataset drift); 0: not.",
            size="half",
        ),
        line_plot_panel(
            "Feature drift scores",
            [series(SCORE, "{{column}}")],
            "Each feature's test score (a p-value or a distance, as its method says; the "
            "run's drift.json names the method and threshold).",
        ),
        line_plot_panel(
            "Prediction drift score",
            [series(PREDICTION_SCORE, "prediction score")],
            "The prediction's own drift test, not counted in the share.",
            size="half",
        ),
        bar_plot_panel(
            "Prediction drifted",
            [series(PREDICTION_DRIFTED, "prediction drifted")],
            "1: the prediction's distribution drifted; 0: not.",
            size="half",
        ),
    ]


def _prune(workspace: Workspace, project: Project, keep: int) -> None:
    """Delete the oldest snapshots beyond `keep` (snapshot ids are time-ordered UUIDv7)."""
    snapshots = sorted(workspace.list_runs(project.id))
    for snapshot_id in snapshots[: max(0, len(snapshots) - keep)]:
        workspace.delete_run(project.id, snapshot_id)
        logger.info("deleted workspace snapshot %s (keeping %d)", snapshot_id, keep)
