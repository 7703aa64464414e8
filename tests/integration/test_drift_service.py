"""Drift from a real server's payload logs: the CLI, the scheduled job, gauges and HTTP."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from deploy.local import Server
from monitoring.__main__ import main as monitoring_cli
from train import registry
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


def gauges(server: Server) -> dict[str, float]:
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    return {
        sample.name + json.dumps(dict(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("model_drift_")
    }


def test_drift_reports_from_served_traffic(drift_server, tmp_path):
    server, tag, work = drift_server
    assert requests.get(f"{server.url}/drift/latest.json", timeout=5).status_code == 404

    features, _ = load_default()
    reference = registry.load_reference(tag)  # every training row: the rest is held out
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

    # 3. the next scheduled run covers both phases and exports per-column scores
    both = latest_with_rows(server, tag, len(unseen) + len(shifted))
    exported = gauges(server)
    for column in SHIFTED:
        assert both["columns"][column]["drifted"]
        method = both["columns"][column]["method"]
        labels = json.dumps({"column": column, "method": method, "model": tag})
        key = f"model_drift_column_score{labels}"
        assert exported[key] == pytest.approx(both["columns"][column]["score"])
