"""Payload log and capture middleware, without a server."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError
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
from serving.capture import BatchCapture, PayloadCapture, remember_instances
from serving.inputs import instances_input
from serving.payload_log import DROPPED_METRIC, QUEUE_FULL, TOO_LARGE, Exchange, PayloadLog

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
        instances=instances,
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
        assert log.submit(exchange(f"r{i}", [(i, "lyon"), {"age": None, "city": "nice"}], [0, 1]))
    log.close()
    records = read_records(tmp_path)
    assert [r["request_id"] for r in records] == [f"r{i}" for i in range(500)]
    assert records[7]["instances"] == [{"age": 7, "city": "lyon"}, {"age": None, "city": "nice"}]
    assert records[7]["model"] == "m:1" and records[7]["endpoint"] == "/predict"


def test_logged_rows_become_a_typed_frame_with_predictions(log, tmp_path):
    log.submit(exchange("a", [(1.0, "75"), {"city": None, "age": 2.5}], ["x", "y"]))
    log.close()
    frame = payloads.to_frame(read_records(tmp_path), SCHEMA)
    assert frame["age"].tolist() == [1.0, 2.5]
    assert frame["city"].tolist() == ["75", None]
    assert frame["prediction"].tolist() == ["x", "y"]


def test_a_bad_record_is_skipped_when_read_and_the_rest_kept(log, tmp_path, caplog):
    broken = Exchange(time.time(), "bad", "/predict", [(1.0, "a")], b"{not json")
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
    assert log.dropped[QUEUE_FULL] == log.dropped.total() == accepted.count(False) >= 7
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


PredictInput = instances_input(SCHEMA, 10)


def app_with_capture(submit: Callable[[Exchange], object], sample_rate: float = 1.0) -> Client:
    """The capture in front of a route that reads its body with the APIs' input spec."""

    async def predict(request: Request) -> JSONResponse:
        try:
            spec = await PredictInput.from_http_request(request, None)
        except ValidationError:
            return JSONResponse({"error": "invalid"}, status_code=400)
        return JSONResponse({"model": "m:1", "predictions": [0] * len(spec.instances)})

    app = Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/other", predict, methods=["POST"]),
        ]
    )
    capture = PayloadCapture(
        app, paths=frozenset({"/predict"}), submit=submit, sample_rate=sample_rate
    )
    return Client(AccessLog(capture))


def test_capture_keeps_the_validated_instances_and_the_answer_under_the_request_id():
    captured: list[Exchange] = []
    client = app_with_capture(captured.append)
    response = client.post(
        "/predict",
        json={"instances": [[1, "a"], {"city": "b", "age": "2.5"}]},
        headers={"X-Request-ID": "abc-1"},
    )
    assert response.status_code == 200 and response.headers["x-request-id"] == "abc-1"
    (seen,) = captured
    assert seen.request_id == "abc-1"
    assert list(seen.instances) == [(1.0, "a"), {"age": 2.5, "city": "b"}]
    assert json.loads(seen.response_body)["predictions"] == [0, 0]


def test_capture_skips_errors_other_paths_and_unsampled_requests():
    captured: list[Exchange] = []
    client = app_with_capture(captured.append)
    assert client.post("/predict", json={"instances": []}).status_code == 400
    assert client.post("/predict", json={"instances": [[True, "a"]]}).status_code == 400
    other = client.post("/other", json={"instances": [[1, "a"]]})
    assert other.status_code == 200 and len(other.headers["x-request-id"]) == 32
    assert captured == []
    unsampled: list[Exchange] = []
    app_with_capture(unsampled.append, sample_rate=0.0).post(
        "/predict", json={"instances": [[1, "a"]]}
    )
    assert unsampled == []


def test_instances_of_a_request_the_capture_does_not_log_are_not_kept():
    scope: dict = {"type": "http", "path": "/predict"}
    remember_instances(scope, [(1.0, "a")])
    assert scope == {"type": "http", "path": "/predict"}


def test_padding_around_valid_instances_is_never_logged(log, tmp_path):
    padded = b'{"instances": [[1, "a"]]' + b" " * (5 * 2**20) + b"}"
    response = app_with_capture(log.submit).post(
        "/predict", content=padded, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    log.close()
    (path,) = payloads.log_files(tmp_path)
    assert path.stat().st_size < 400
    (record,) = read_records(tmp_path)
    assert record["instances"] == [{"age": 1.0, "city": "a"}]


def test_the_capture_reads_no_request_body_itself():
    seen_receive = []

    async def app(scope, receive, send) -> None:
        seen_receive.append(receive)
        await JSONResponse({"predictions": []})(scope, receive, send)

    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message) -> None:
        pass

    capture = PayloadCapture(app, paths=frozenset({"/predict"}), submit=print, sample_rate=1.0)
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": []}
    asyncio.run(capture(scope, receive, send))
    assert seen_receive == [receive]


def test_each_record_is_one_compact_line_with_instances_in_schema_order(log, tmp_path):
    log.submit(
        Exchange(time.time(), "ordered", "/predict", [{"city": "a\nb", "age": 3.0}, (None, None)],
                 b'{"model": "m:1",\n "predictions": [1, 0], "probabilities": null}')
    )  # fmt: skip
    log.close()
    (path,) = payloads.log_files(tmp_path)
    (line,) = path.read_bytes().splitlines()
    assert b'"request":{"instances":[[3.0,"a\\nb"],[null,null]]}' in line
    (record,) = read_records(tmp_path)
    assert record["instances"] == [{"age": 3.0, "city": "a\nb"}, {"age": None, "city": None}]
    assert record["probabilities"] is None


def exported_drops(reason: str) -> float:
    value = REGISTRY.get_sample_value(f"{DROPPED_METRIC}_total", {"reason": reason})
    return value or 0.0


def record_of_size(request_id: str, size: int) -> Exchange:
    """A record whose line is exactly `size` bytes: its category padded to fit."""
    record = exchange(request_id, [(1.0, "")], [0])
    padding = size - len(payload_log.to_line(record, SCHEMA.names))
    sized = exchange(request_id, [(1.0, "x" * padding)], [0])
    assert len(payload_log.to_line(sized, SCHEMA.names)) == size
    return sized


MAX_BYTES, MAX_LINE_BYTES, BACKUPS = 16 * 2**10, 2**10, 5
DISK_BOUND = MAX_BYTES * (BACKUPS + 1) + MAX_LINE_BYTES


def bounded_log(directory) -> PayloadLog:
    log = PayloadLog(
        max_bytes=MAX_BYTES, backups=BACKUPS, queue_size=10_000, max_line_bytes=MAX_LINE_BYTES
    )
    log.start(directory, SCHEMA.names)
    return log


def disk_use(directory) -> list[int]:
    return [path.stat().st_size for path in payloads.log_files(directory)]


def test_a_record_over_the_line_limit_is_dropped_and_counted_and_rotates_nothing(tmp_path):
    log = bounded_log(tmp_path)
    exported_before = exported_drops(TOO_LARGE)
    for i in range(3):
        log.submit(exchange(f"history-{i}", [(float(i), "lyon")], [0]))
    for i in range(20):
        log.submit(record_of_size(f"oversized-{i}", MAX_LINE_BYTES + 1 + i * 10_000))
    log.submit(record_of_size("largest-kept", MAX_LINE_BYTES))
    log.close()
    assert len(payloads.log_files(tmp_path)) == 1
    ids = [r["request_id"] for r in read_records(tmp_path)]
    assert ids == ["history-0", "history-1", "history-2", "largest-kept"]
    assert log.dropped[TOO_LARGE] == log.dropped.total() == 20
    assert exported_drops(TOO_LARGE) - exported_before == 20


def test_maximum_size_records_rotate_full_files_only_and_keep_history(tmp_path):
    log = bounded_log(tmp_path)
    history = [f"history-{i}" for i in range(40)]
    for request_id in history:
        log.submit(exchange(request_id, [(1.0, "lyon")], [0]))
    for i in range(20):
        log.submit(record_of_size(f"max-{i}", MAX_LINE_BYTES))
    log.close()
    ids = [r["request_id"] for r in read_records(tmp_path)]
    assert ids == history + [f"max-{i}" for i in range(20)]
    _current, *rotated = disk_use(tmp_path)  # payloads-<pid>.jsonl sorts before its .1, .2
    assert rotated and all(MAX_BYTES - MAX_LINE_BYTES < size <= MAX_BYTES for size in rotated)
    assert sum(disk_use(tmp_path)) <= DISK_BOUND and log.dropped.total() == 0


def test_disk_use_stays_within_the_bound_whatever_is_sent(tmp_path):
    log = bounded_log(tmp_path)
    for i in range(300):
        size = (MAX_LINE_BYTES, MAX_LINE_BYTES + 1, 300, 4 * MAX_LINE_BYTES)[i % 4]
        log.submit(record_of_size(f"r{i}", size))
    log.close()
    sizes = disk_use(tmp_path)
    assert len(sizes) == BACKUPS + 1 and all(size <= MAX_BYTES for size in sizes)
    assert sum(sizes) <= DISK_BOUND
    assert sum(sizes) > BACKUPS * (MAX_BYTES - MAX_LINE_BYTES)  # full files, not one per line
    assert log.dropped[TOO_LARGE] == 150


def batch_outputs(rows: int) -> Outputs:
    probabilities = np.column_stack([np.linspace(0, 1, rows), 1 - np.linspace(0, 1, rows)])
    return Outputs(np.arange(rows) % 2, probabilities, ["0", "1"])


def test_large_batches_log_a_sample_of_rows_with_their_own_answers(log, tmp_path):
    whole_frame = pd.DataFrame({"age": np.arange(1_000, dtype=float), "city": ["lyon"] * 1_000})
    frame = whole_frame.copy()  # missing values, in the batch logged whole
    frame.loc[3, "age"] = np.nan
    frame.loc[4, "city"] = None
    capture = BatchCapture(submit=log.submit, sample_rate=1.0, max_rows=50, model="m:1")
    capture({"path": "/predict_batch"}, whole_frame, batch_outputs(1_000))
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


def test_files_of_stopped_workers_are_pruned_oldest_first(tmp_path):
    stopped = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(stopped.stdout)
    host = payload_log.host_name()
    mine = payload_log.worker_file(tmp_path, host, os.getpid())
    mine.write_bytes(b"x" * 500)
    old = []
    for index in range(5):
        path = tmp_path / f"{payload_log.worker_file(tmp_path, host, dead).name}.{5 - index}"
        path.write_bytes(b"x" * 100)
        os.utime(path, (1_000 + index, 1_000 + index))
        old.append(path)
    other = tmp_path / "notes.txt"
    other.write_bytes(b"x" * 1_000)
    # another pod on the shared volume: its workers' ids mean nothing on this host
    other_pod = payload_log.worker_file(tmp_path, f"{host}-2", dead)
    other_pod.write_bytes(b"x" * 1_000)
    os.utime(other_pod, (500, 500))

    assert payload_log.prune_stopped_workers(tmp_path, keep_bytes=250) == 3
    assert [path.exists() for path in old] == [False, False, False, True, True]
    assert mine.exists() and other.exists()  # a running worker's files, and others, stay
    assert other_pod.exists()


def test_pods_sharing_a_volume_write_their_own_files(tmp_path):
    first = payload_log.worker_file(tmp_path, "model-7d9f-abcde", 9)
    second = payload_log.worker_file(tmp_path, "model-7d9f-fghij", 9)
    assert first != second
    assert first.name.startswith("payloads-") and first.name.endswith(".jsonl")
