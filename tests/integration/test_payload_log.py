"""Payload logging by a real server, including a stop while requests are in flight."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

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
