"""Payload log and capture middleware, without a server."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from datetime import datetime, timedelta

import httpx
import numpy as np
import pandas as pd
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from model.outputs import Outputs
from model.schema import Feature, FeatureSchema
from monitoring import payloads
from monitoring.payloads import read_records
from serving import payload_log
from serving.access_log import AccessLog
from serving.capture import BatchCapture, PayloadCapture
from serving.payload_log import Exchange, PayloadLog

SCHEMA = FeatureSchema(
    features=[Feature(name="age", kind="numeric"), Feature(name="city", kind="categorical")],
    target="y",
    task="classification",
    classes=[0, 1],
)


def exchange(request_id: str, instances: list, predictions: list) -> Exchange:
    return Exchange(
        timestamp=time.time(),
        request_id=request_id,
        endpoint="/predict",
        request_body=json.dumps({"instances": instances}).encode(),
        response_body=json.dumps(
            {"model": "m:1", "predictions": predictions, "probabilities": None}
        ).encode(),
    )


@pytest.fixture
def log(tmp_path):
    started = PayloadLog(max_bytes=10 * 2**20, backups=3, queue_size=10_000)
    started.start(tmp_path, SCHEMA.names)
    yield started
    started.close()


def test_close_writes_every_queued_record_with_named_features(log, tmp_path):
    for i in range(500):
        assert log.submit(exchange(f"r{i}", [[i, "lyon"], {"age": None, "city": "nice"}], [0, 1]))
    log.close()
    records = read_records(tmp_path)
    assert [r["request_id"] for r in records] == [f"r{i}" for i in range(500)]
    assert records[7]["instances"] == [{"age": 7, "city": "lyon"}, {"age": None, "city": "nice"}]
    assert records[7]["model"] == "m:1" and records[7]["endpoint"] == "/predict"


def test_logged_rows_become_a_typed_frame_with_predictions(log, tmp_path):
    log.submit(exchange("a", [[1, 75], ["2.5", None]], ["x", "y"]))
    log.close()
    frame = payloads.to_frame(read_records(tmp_path), SCHEMA)
    assert frame["age"].tolist() == [1.0, 2.5]
    assert frame["city"].tolist() == ["75", None]
    assert frame["prediction"].tolist() == ["x", "y"]


def test_a_bad_record_is_skipped_when_read_and_the_rest_kept(log, tmp_path, caplog):
    broken = Exchange(time.time(), "bad", "/predict", b"{not json", b"{}")
    with caplog.at_level(logging.WARNING, logger="monitoring.payloads"):
        log.submit(exchange("before", [[1, "a"]], [0]))
        log.submit(broken)
        log.submit(exchange("after", [[2, "b"]], [1]))
        log.close()
        records = read_records(tmp_path)
    assert [r["request_id"] for r in records] == ["before", "after"]
    assert "skipping a line that is not a logged request" in caplog.text


def test_files_rotate_and_are_all_read(tmp_path):
    log = PayloadLog(max_bytes=2_000, backups=50, queue_size=1_000)
    log.start(tmp_path, SCHEMA.names)
    for i in range(100):
        log.submit(exchange(f"r{i}", [[i, "lyon"]], [0]))
    log.close()
    assert len(payloads.log_files(tmp_path)) > 3
    assert len(read_records(tmp_path)) == 100


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path, monkeypatch):
    release = threading.Event()
    original = payload_log._LineFileHandler.line

    def slow_line(self, record):
        release.wait(5)
        return original(self, record)

    monkeypatch.setattr(payload_log._LineFileHandler, "line", slow_line)
    log = PayloadLog(max_bytes=2**20, backups=1, queue_size=2)
    log.start(tmp_path, SCHEMA.names)
    started = time.monotonic()
    accepted = [log.submit(exchange(f"r{i}", [[i, "a"]], [0])) for i in range(10)]
    assert time.monotonic() - started < 0.5
    assert log.dropped == accepted.count(False) >= 7
    release.set()
    log.close()
    assert len(read_records(tmp_path)) == accepted.count(True)


def test_records_before_start_or_after_close_are_refused(tmp_path):
    log = PayloadLog(max_bytes=2**20, backups=1, queue_size=10)
    assert not log.submit(exchange("early", [[1, "a"]], [0]))
    log.start(tmp_path, SCHEMA.names)
    log.close()
    assert not log.submit(exchange("late", [[1, "a"]], [0]))


def test_read_records_filters_by_time(log, tmp_path):
    log.submit(exchange("old", [[1, "a"]], [0]))
    log.close()
    (line,) = read_records(tmp_path)
    later = datetime.fromisoformat(line["ts"]) + timedelta(seconds=1)
    assert read_records(tmp_path, since=later) == []


class Client:
    def __init__(self, app) -> None:
        self.app = app

    def post(self, path: str, **kwargs) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.post(path, **kwargs)

        return asyncio.run(call())


def app_with_capture(captured: list, sample_rate: float = 1.0) -> Client:
    async def predict(request: Request) -> JSONResponse:
        body = await request.json()
        if not body.get("instances"):
            return JSONResponse({"error": "empty"}, status_code=400)
        return JSONResponse({"model": "m:1", "predictions": [0] * len(body["instances"])})

    app = Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/other", predict, methods=["POST"]),
        ]
    )
    capture = PayloadCapture(
        app, paths=frozenset({"/predict"}), submit=captured.append, sample_rate=sample_rate
    )
    return Client(AccessLog(capture))


def test_capture_keeps_both_bodies_and_echoes_the_request_id():
    captured: list[Exchange] = []
    client = app_with_capture(captured)
    response = client.post(
        "/predict", json={"instances": [[1, "a"]]}, headers={"X-Request-ID": "abc-1"}
    )
    assert response.headers["x-request-id"] == "abc-1"
    (seen,) = captured
    assert seen.request_id == "abc-1"
    assert json.loads(seen.request_body) == {"instances": [[1, "a"]]}
    assert json.loads(seen.response_body)["predictions"] == [0]


def test_capture_skips_errors_other_paths_and_unsampled_requests():
    captured: list[Exchange] = []
    client = app_with_capture(captured)
    assert client.post("/predict", json={"instances": []}).status_code == 400
    other = client.post("/other", json={"instances": [[1, "a"]]})
    assert len(other.headers["x-request-id"]) == 32
    assert captured == []
    unsampled: list[Exchange] = []
    app_with_capture(unsampled, sample_rate=0.0).post("/predict", json={"instances": [[1, "a"]]})
    assert unsampled == []


def test_bodies_are_logged_as_sent_one_line_per_request(log, tmp_path):
    pretty = json.dumps({"instances": [{"age": 3, "city": "a\\nb"}], "note": "x"}, indent=2)
    log.submit(
        Exchange(time.time(), "pretty", "/predict_batch", pretty.encode(),
                 b'{"model": "m:1", "predictions": [1], "probabilities": null}')
    )  # fmt: skip
    log.close()
    (path,) = payloads.log_files(tmp_path)
    assert len(path.read_text().splitlines()) == 1
    (record,) = read_records(tmp_path)
    assert record["instances"] == [{"age": 3, "city": "a\\nb"}]
    assert record["endpoint"] == "/predict_batch" and record["probabilities"] is None


def batch_outputs(rows: int) -> Outputs:
    probabilities = np.column_stack([np.linspace(0, 1, rows), 1 - np.linspace(0, 1, rows)])
    return Outputs(np.arange(rows) % 2, probabilities, ["0", "1"])


def test_large_batches_log_a_sample_of_rows_with_their_own_answers(log, tmp_path):
    frame = pd.DataFrame({"age": np.arange(1_000, dtype=float), "city": ["lyon"] * 1_000})
    frame.loc[3, "age"] = np.nan
    frame.loc[4, "city"] = None
    capture = BatchCapture(submit=log.submit, sample_rate=1.0, max_rows=50, model="m:1")
    capture({"path": "/predict_batch"}, frame, batch_outputs(1_000))
    capture({"path": "/predict_batch"}, frame.iloc[:10], batch_outputs(10))
    log.close()
    sampled, whole = read_records(tmp_path)
    assert sampled["rows"] == 1_000 and len(sampled["instances"]) == 50
    assert whole["rows"] == len(whole["instances"]) == 10
    assert whole["instances"][3] == {"age": None, "city": "lyon"}
    assert whole["instances"][4] == {"age": 4.0, "city": None}
    for instance, prediction, probabilities in zip(
        sampled["instances"], sampled["predictions"], sampled["probabilities"], strict=True
    ):
        row = int(instance["age"])  # the row's own index, by construction
        assert prediction == row % 2
        assert probabilities["0"] == pytest.approx(row / 999)
    assert sampled["model"] == "m:1" and sampled["endpoint"] == "/predict_batch"


def test_batch_capture_follows_the_sample_rate_and_never_raises(log, tmp_path):
    frame = pd.DataFrame({"age": [1.0], "city": ["a"]})
    BatchCapture(submit=log.submit, sample_rate=0.0, max_rows=0, model="m:1")(
        {"path": "/predict_batch"}, frame, batch_outputs(1)
    )

    def failing_submit(record):
        raise OSError("disk gone")

    BatchCapture(submit=failing_submit, sample_rate=1.0, max_rows=0, model="m:1")(
        {"path": "/predict_batch"}, frame, batch_outputs(1)
    )
    log.close()
    assert read_records(tmp_path) == []
