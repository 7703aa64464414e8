"""Payload logging by a real server, including a stop while requests are in flight."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.local import Server
from monitoring import payloads
from serving.arrow_bodies import write_instances
from serving.media import ARROW_STREAM
from train.data import load_default

pytestmark = pytest.mark.integration

FEATURES, _ = load_default()


def logging_server(home, model, tmp_path, **env: str) -> tuple[Server, Path]:
    """A server of `model` with its payload log in `tmp_path / "payloads"`."""
    log_dir = tmp_path / "payloads"
    server = Server(
        home, tmp_path / "serve.log", MODEL_TAG=model.tag, PAYLOAD_LOG_DIR=str(log_dir), **env
    )
    return server, log_dir


def test_every_acknowledged_request_is_logged_across_a_graceful_stop(
    bentoml_home, breast_cancer_model, tmp_path
):
    server, log_dir = logging_server(bentoml_home, breast_cancer_model, tmp_path)
    acknowledged: dict[str, tuple[str, int]] = {}
    lock = threading.Lock()
    stop = threading.Event()
    try:
        server.wait_ready()

        def client(worker: int) -> None:
            session = requests.Session()
            i = 0
            while not stop.is_set():
                route = "predict_batch" if i % 5 == 0 else "predict"
                rows = FEATURES.iloc[i % 500 : i % 500 + 1 + (i % 3)]
                request_id = f"{worker}-{uuid.uuid4().hex}"
                try:
                    response = session.post(
                        f"{server.url}/{route}",
                        json={"instances": rows.to_numpy().tolist()},
                        headers={"X-Request-ID": request_id},
                        timeout=10,
                    )
                except requests.RequestException:
                    return  # the server is going away; unacknowledged requests don't count
                if response.status_code == 200:
                    assert response.headers["x-request-id"] == request_id
                    with lock:
                        acknowledged[request_id] = (f"/{route}", len(rows))
                i += 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(3)
        assert len(acknowledged) > 50
        exit_code = server.stop()
        stop.set()
        for thread in threads:
            thread.join(15)
    finally:
        stop.set()
        server.stop()

    assert exit_code == 0, server.log()
    records = {r["request_id"]: r for r in payloads.read_records(log_dir)}
    missing = set(acknowledged) - set(records)
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged requests not logged"
    some_id, (endpoint, rows) = next(iter(acknowledged.items()))
    assert records[some_id]["endpoint"] == endpoint
    assert len(records[some_id]["instances"]) == len(records[some_id]["predictions"]) == rows
    assert records[some_id]["model"] == breast_cancer_model.tag
    frame = payloads.to_frame(list(records.values()), breast_cancer_model.schema)
    assert list(frame.columns) == [*breast_cancer_model.schema.names, "prediction"]


def test_batches_are_logged_as_a_sample_of_their_rows(bentoml_home, breast_cancer_model, tmp_path):
    server, log_dir = logging_server(
        bentoml_home, breast_cancer_model, tmp_path, PAYLOAD_LOG_MAX_ROWS="40"
    )
    try:
        server.wait_ready()
        response = requests.post(
            f"{server.url}/predict_batch",
            data=write_instances(FEATURES),
            headers={"Content-Type": ARROW_STREAM, "X-Request-ID": "arrow-batch"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
    finally:
        assert server.stop() == 0, server.log()
    (record,) = payloads.read_records(log_dir)
    assert record["request_id"] == "arrow-batch" and record["rows"] == len(FEATURES)
    assert len(record["instances"]) == len(record["predictions"]) == 40
    answered = response.json()["predictions"]
    by_values = {tuple(row): i for i, row in enumerate(FEATURES.to_numpy().tolist())}
    for instance, prediction in zip(record["instances"], record["predictions"], strict=True):
        row = by_values[tuple(instance[name] for name in FEATURES.columns)]
        assert prediction == answered[row]


def dropped_too_large(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "payload_log_dropped_records_total"
        and sample.labels.get("reason") == "too_large"
    )


def test_the_log_holds_what_the_model_saw_within_its_limits(
    bentoml_home, breast_cancer_model, tmp_path
):
    server, log_dir = logging_server(
        bentoml_home,
        breast_cancer_model,
        tmp_path,
        WORKERS="1",
        PREDICT_MAX_ROWS="5000",  # one answered request whose line exceeds 1 MiB
        BATCH_MAX_SIZE="5000",
        BATCH_MAX_LATENCY_MS="30000",
    )
    row = FEATURES.iloc[0].tolist()
    padded = b'{"instances": [' + json.dumps(row).encode() + b"]" + b" " * (20 * 2**20) + b"}"
    json_body = {"Content-Type": "application/json"}
    try:
        server.wait_ready()
        dropped_before = dropped_too_large(server.url)
        answers = {
            "padded": requests.post(
                f"{server.url}/predict",
                data=padded,
                headers={**json_body, "X-Request-ID": "padded"},
                timeout=60,
            ),
            "oversized": requests.post(  # 5,000 rows: a line of about 1.5 MB
                f"{server.url}/predict",
                json={"instances": [row] * 5_000},
                headers={"X-Request-ID": "oversized"},
                timeout=60,
            ),
            "unsafe id": requests.post(
                f"{server.url}/predict",
                json={"instances": [row]},
                headers={"X-Request-ID": "../../etc\tpasswd"},
                timeout=60,
            ),
        }
        assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 200)
        replaced = answers["unsafe id"].headers["x-request-id"]
        assert len(replaced) == 32 and replaced.isalnum()
        deadline = time.monotonic() + 10
        while dropped_too_large(server.url) - dropped_before < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert dropped_too_large(server.url) - dropped_before == 1
    finally:
        assert server.stop() == 0, server.log()
    records = {r["request_id"]: r for r in payloads.read_records(log_dir)}
    assert set(records) == {"padded", replaced}
    assert records["padded"]["instances"] == [dict(zip(FEATURES.columns, row, strict=True))]
    assert sum(path.stat().st_size for path in payloads.log_files(log_dir)) < 10_000
