"""Drift from a real server's payload logs: the CLI, the scheduled job, gauges and HTTP."""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from evidently.ui.workspace import Workspace
from prometheus_client.parser import text_string_to_metric_families

from bench.local import Server
from model import store
from model.settings import settings
from monitoring import runs
from monitoring.__main__ import main as monitoring_cli
from tests.integration.prometheus import Prometheus
from tests.monitoring.test_notify import Receiver
from train.data import load_default
from train.training import TrainConfig, train

pytestmark = pytest.mark.integration

SHIFTED = ["mean radius", "worst texture", "area error"]


@pytest.fixture(scope="module")
def drift_server(bentoml_home, tmp_path_factory):
    features, target = load_default()
    tag = train(features, target, TrainConfig(name="drift-itest")).tag
    work = tmp_path_factory.mktemp("drift")
    server = Server(
        bentoml_home, work / "serve.log", MODEL_TAG=tag,
        PAYLOAD_LOG_DIR=str(work / "payloads"), DRIFT_REPORT_DIR=str(work / "reports"),
        DRIFT_INTERVAL_MINUTES="0.05", DRIFT_WINDOW_MINUTES="30", DRIFT_MIN_ROWS="50",
        DRIFT_WORKSPACE=str(work / "workspace"),
    )  # fmt: skip
    try:
        server.wait_ready()
        yield server, tag, work
    finally:
        server.stop()


def send(server: Server, rows: list[list[float]]) -> None:
    for start in range(0, len(rows), 20):
        body = {"instances": rows[start : start + 20]}
        assert requests.post(f"{server.url}/predict", json=body, timeout=30).status_code == 200


def latest_with_rows(server: Server, tag: str, rows: int, timeout: float = 90) -> dict:
    """The latest report once a scheduled run over `rows` rows is exported as metrics."""
    key = f"model_drift_rows_compared{json.dumps({'model': tag})}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gauges(server).get(key) == rows:
            response = requests.get(f"{server.url}/drift/latest.json", timeout=5)
            assert response.status_code == 200
            assert response.json()["current_rows"] == rows
            return response.json()
        time.sleep(1)
    raise TimeoutError(f"no drift run over {rows} rows in {timeout}s:\n{server.log()[-3000:]}")


def workspace_snapshots(directory: Path, project: str, run: str, timeout: float = 30) -> list:
    """The project's snapshots once the run is among them (added after LATEST moves)."""
    deadline = time.monotonic() + timeout
    while True:
        workspace = Workspace(str(directory))
        (found,) = workspace.list_projects()
        assert found.name == project
        snapshots = [workspace.get_run(found.id, s) for s in workspace.list_runs(found.id)]
        if run in {s.name for s in snapshots}:
            return snapshots
        assert time.monotonic() < deadline, f"run {run} not in the workspace after {timeout}s"
        time.sleep(0.5)


def gauges(server: Server) -> dict[str, float]:
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    return {
        sample.name + json.dumps(dict(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("model_drift_")
    }


def test_drift_reports_from_served_traffic(drift_server, tmp_path, monkeypatch):
    server, tag, work = drift_server
    assert requests.get(f"{server.url}/drift/latest.json", timeout=5).status_code == 404

    features, _ = load_default()
    reference = store.load_reference(tag)  # every training row: the rest is held out
    in_training = set(map(tuple, reference[list(features.columns)].to_numpy().tolist()))
    unseen = [row for row in features.to_numpy().tolist() if tuple(row) not in in_training]
    assert 100 <= len(unseen) <= 130

    # 1. traffic like the training data: the scheduled job finds no drift
    send(server, unseen)
    result = latest_with_rows(server, tag, len(unseen))
    assert result["model"] == tag and not result["drift_detected"]
    exported = gauges(server)
    labels = json.dumps({"model": tag})
    assert exported[f"model_drift_detected{labels}"] == 0
    assert exported[f"model_drift_rows_compared{labels}"] == len(unseen)
    assert exported[f"model_drift_interval_seconds{labels}"] == pytest.approx(3.0)
    assert time.time() - exported[f"model_drift_last_run_timestamp_seconds{labels}"] < 60
    page = requests.get(f"{server.url}/drift/latest", timeout=5)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "window.drawDashboard(metric_" in page.text and '"mean radius"' in page.text
    # every scheduled run is also a snapshot of the model's project in the workspace
    latest = runs.latest_run(work / "reports")
    assert latest is not None
    snapshots = workspace_snapshots(work / "workspace", "drift-itest", latest.name)
    assert {s.metadata["model_id"] for s in snapshots} == {tag}

    # 2. the training rows with three columns shifted: exactly those columns drift
    shift_started = datetime.now(UTC)
    shifted = reference[list(features.columns)].copy()
    for column in SHIFTED:
        shifted[column] = shifted[column] * 1.6
    send(server, shifted.to_numpy().tolist())
    out = tmp_path / "cli"
    exit_code = monitoring_cli([
        "drift", "--model", tag, "--logs", str(work / "payloads"),
        "--since", shift_started.isoformat(), "--out", str(out), "--fail-on-drift", "--quiet",
    ])  # fmt: skip
    verdict = json.loads((out / "drift.json").read_text())
    assert verdict["current_rows"] == len(shifted)
    assert sorted(c for c, v in verdict["columns"].items() if v["drifted"]) == sorted(SHIFTED)
    assert exit_code == 0  # 3 of 30 columns: below the dataset share, so no dataset drift
    assert (out / "report.html").stat().st_size > 10_000

    # 2b. a stricter dataset rule: drift, exit 3, and the webhook is told
    receiver = Receiver()
    receiver.start()
    try:
        monkeypatch.setenv("DRIFT_WEBHOOK_URL", f"{receiver.url}/hooks/secret-token")
        settings.cache_clear()
        exit_code = monitoring_cli([
            "drift", "--model", tag, "--logs", str(work / "payloads"), "--drift-share", "0.1",
            "--since", shift_started.isoformat(), "--out", str(tmp_path / "strict"),
            "--fail-on-drift", "--notify", "--quiet",
        ])  # fmt: skip
    finally:
        receiver.stop()
        settings.cache_clear()
    assert exit_code == 3
    (posted,) = receiver.received
    assert posted.path == "/hooks/secret-token"
    assert posted.json()["drift_detected"] and posted.json()["model"] == tag
    assert "mean radius" in posted.json()["text"]

    # 3. the next scheduled run covers both phases and exports per-column scores
    both = latest_with_rows(server, tag, len(unseen) + len(shifted))
    exported = gauges(server)
    for column in SHIFTED:
        assert both["columns"][column]["drifted"]
        method = both["columns"][column]["method"]
        labels = json.dumps({"column": column, "method": method, "model": tag})
        key = f"model_drift_column_score{labels}"
        assert exported[key] == pytest.approx(both["columns"][column]["score"])


def test_external_runs_are_exported_and_served(drift_server, bentoml_home, tmp_path):
    """DRIFT_RUNNER=external: a CronJob writes the runs, the service exports the latest."""
    _, tag, work = drift_server
    reports = tmp_path / "reports"  # a still copy: the other server keeps adding runs
    shutil.copytree(work / "reports", reports)
    latest = (reports / "LATEST").read_text()
    written = json.loads((reports / latest / "drift.json").read_text())
    watcher = Server(
        bentoml_home, tmp_path / "serve.log", MODEL_TAG=tag, PAYLOAD_LOG="off",
        DRIFT_REPORT_DIR=str(reports), DRIFT_RUNNER="external",
        DRIFT_INTERVAL_MINUTES="30",
    )  # fmt: skip
    try:
        watcher.wait_ready()
        served = requests.get(f"{watcher.url}/drift/latest.json", timeout=5)
        assert served.headers["x-drift-run"] == latest and served.json() == written
        labels = json.dumps({"model": tag})
        deadline = time.monotonic() + 30
        while f"model_drift_rows_compared{labels}" not in (exported := gauges(watcher)):
            assert time.monotonic() < deadline, watcher.log()[-2000:]
            time.sleep(0.5)
        assert exported[f"model_drift_rows_compared{labels}"] == written["current_rows"]
        assert exported[f"model_drift_interval_seconds{labels}"] == 1800
        finished = datetime.fromisoformat(written["generated_at"]).timestamp()
        assert exported[f"model_drift_last_run_timestamp_seconds{labels}"] == finished
    finally:
        watcher.stop()


def test_a_real_prometheus_scrapes_the_drift_gauges(drift_server, tmp_path):
    if shutil.which("prometheus") is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus (Debian package) is required in CI")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    server, tag, _ = drift_server
    if requests.get(f"{server.url}/drift/latest.json", timeout=5).status_code == 404:
        features, _ = load_default()  # run alone: give the scheduled job traffic to judge
        send(server, features.iloc[:60].to_numpy().tolist())
    prometheus = Prometheus(tmp_path / "prometheus", [server.url.removeprefix("http://")])
    try:
        prometheus.wait_ready()
        deadline = time.monotonic() + 60
        while not (result := prometheus.query(f'model_drift_detected{{model="{tag}"}}')):
            assert time.monotonic() < deadline, prometheus.log_path.read_text()[-2000:]
            time.sleep(1)
        (series,) = result
        assert series["metric"]["job"] == "model"
        assert series["value"][1] in ("0", "1")
        scores = prometheus.query(f'model_drift_column_score{{model="{tag}"}}')
        assert {s["metric"]["column"] for s in scores} >= set(SHIFTED)
        up = prometheus.query('up{job="model"}')
        assert up[0]["value"][1] == "1"
    finally:
        prometheus.stop()
