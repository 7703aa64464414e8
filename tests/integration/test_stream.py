"""The stream consumer against a real redis-server: crashes, Redis restarts and SIGTERM
lose nothing and answer every event once."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests

from bench.local import free_port
from model import store
from monitoring.payloads import read_records
from train.data import load_default

from .redis_server import ConsumerProcess, RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INPUT, OUTPUT, DEAD = "events", "predictions", "dead-letter"
GROUP = "scorers"
BAD_EVERY = 97  # about 1 % of the events are refused


@pytest.fixture
def consumers(tmp_path: Path, bentoml_home: Path, breast_cancer_model: store.LoadedModel):
    started: list[ConsumerProcess] = []

    def start(name: str, redis_url: str, **env: str) -> ConsumerProcess:
        consumer = ConsumerProcess(
            name,
            tmp_path,
            {
                "BENTOML_HOME": str(bentoml_home),
                "MODEL_NAME": "itest",
                "REDIS_URL": redis_url,
                "STREAM_INPUT": INPUT,
                "STREAM_OUTPUT": OUTPUT,
                "STREAM_DEAD_LETTER": DEAD,
                "STREAM_GROUP": GROUP,
                "STREAM_BLOCK_MS": "200",
                "STREAM_METRICS_PORT": "0",
                "STREAM_RETRY_MAX_SECONDS": "1",
                "PAYLOAD_LOG_DIR": str(tmp_path / "payloads"),
                **env,
            },
        )
        started.append(consumer)
        return consumer

    yield start
    for consumer in started:
        consumer.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", appendonly=True)
    yield server
    server.stop()


def instances(count: int) -> Iterator[tuple[dict, bool]]:
    """`count` instances of the training data, every BAD_EVERY-th one refused."""
    features, _ = load_default()
    rows = features.to_dict(orient="records")
    for number in range(count):
        instance = dict(rows[number % len(rows)])
        bad = number % BAD_EVERY == BAD_EVERY - 1
        if bad:
            instance["mean radius"] = "not a number"
        yield instance, bad


def produce(client: redis.Redis, count: int, good: set[str], bad: set[str]) -> None:
    pipe = client.pipeline(transaction=False)
    pending: list[bool] = []
    for instance, refused in instances(count):
        pipe.xadd(INPUT, {"instance": json.dumps(instance)})
        pending.append(refused)
        if len(pending) == 1000:
            _flush(pipe, pending, good, bad)
    _flush(pipe, pending, good, bad)


def _flush(pipe: redis.client.Pipeline, refused: list[bool], good: set[str], bad: set[str]) -> None:
    for entry_id, is_bad in zip(pipe.execute(), refused, strict=True):
        (bad if is_bad else good).add(entry_id.decode())
    refused.clear()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def answered(client: redis.Redis) -> int:
    return client.xlen(OUTPUT) + client.xlen(DEAD)


def assert_every_event_answered_once(client: redis.Redis, good: set[str], bad: set[str]) -> None:
    results = Counter(fields[b"input_id"].decode() for _, fields in client.xrange(OUTPUT, "-", "+"))
    assert set(results) == good
    assert max(results.values()) == 1, [i for i, n in results.items() if n > 1][:5]
    letters = {
        fields[b"input_id"].decode(): json.loads(fields[b"error"])
        for _, fields in client.xrange(DEAD, "-", "+")
    }
    assert set(letters) == bad and client.xlen(DEAD) == len(bad)
    for error in letters.values():
        assert error["detail"] == [
            {
                "type": "float_parsing",
                "loc": ["instance", "mean radius"],
                "msg": "Input should be a valid number, unable to parse string as a number",
            }
        ]
    assert client.xpending(INPUT, GROUP)["pending"] == 0


def test_a_consumer_killed_mid_stream_loses_nothing_and_answers_each_event_once(
    redis_server, consumers
):
    client = redis_server.client()
    good: set[str] = set()
    bad: set[str] = set()
    produce(client, 20_000, good, bad)
    assert len(bad) > 100
    settings = {"STREAM_BATCH_SIZE": "100", "STREAM_CLAIM_IDLE_MS": "1500"}
    doomed = consumers("doomed", redis_server.url, **settings)
    survivor = consumers("survivor", redis_server.url, **settings)
    wait_until(lambda: answered(client) > 4_000, 120, "the consumers to get going")

    # frozen (SIGSTOP) while it holds a batch, so the kill surely leaves events pending
    held = []
    for _ in range(200):
        os.killpg(doomed.process.pid, signal.SIGSTOP)
        held = client.xpending_range(INPUT, GROUP, "-", "+", 1000, consumername="doomed")
        if held:
            break
        os.killpg(doomed.process.pid, signal.SIGCONT)
        time.sleep(0.02)
    doomed.kill()
    assert held, "the kill must leave events pending at the dead consumer"
    wait_until(lambda: answered(client) >= 20_000, 120, "every event to be answered")
    wait_until(lambda: client.xpending(INPUT, GROUP)["pending"] == 0, 30, "no pending entries")
    assert_every_event_answered_once(client, good, bad)
    assert "claimed" in survivor.log()
    # the survivor's payload log holds stream traffic, readable by the drift job
    records = read_records(survivor.log_path.parent / "payloads")
    assert records and {r["endpoint"] for r in records} == {f"stream:{INPUT}"}
    assert survivor.stop() == 0


def test_a_redis_restart_mid_stream_loses_nothing_with_aof(redis_server, consumers):
    client = redis_server.client()
    good: set[str] = set()
    bad: set[str] = set()
    produce(client, 5_000, good, bad)
    consumer = consumers("only", redis_server.url, STREAM_BATCH_SIZE="50")
    wait_until(lambda: answered(client) > 500, 120, "the consumer to get going")
    redis_server.stop()
    time.sleep(2)  # the consumer retries against a closed port
    redis_server.start()
    client = redis_server.client()
    produce(client, 2_000, good, bad)  # events after the restart are read too
    wait_until(lambda: answered(client) >= 7_000, 120, "every event to be answered")
    wait_until(lambda: client.xpending(INPUT, GROUP)["pending"] == 0, 30, "no pending entries")
    assert_every_event_answered_once(client, good, bad)
    log = consumer.log()
    assert "redis unavailable" in log and "redis available again" in log
    assert consumer.process.poll() is None, "the consumer kept running through the outage"
    assert consumer.stop() == 0


def test_sigterm_finishes_the_batch_acknowledges_and_exits_zero(redis_server, consumers):
    client = redis_server.client()
    good: set[str] = set()
    bad: set[str] = set()
    produce(client, 30_000, good, bad)
    port = free_port()
    consumer = consumers(
        "stopped", redis_server.url, STREAM_BATCH_SIZE="200", STREAM_METRICS_PORT=str(port)
    )
    wait_until(lambda: answered(client) > 1_000, 120, "the consumer to get going")
    metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'stream_events_processed_total{stream="events"}' in metrics
    assert 'stream_group_lag{group="scorers",stream="events"}' in metrics
    assert 'model_predictions_total{endpoint="stream:events"' in metrics
    assert consumer.stop() == 0
    assert "SIGTERM: finishing the batch in hand" in consumer.log()
    assert client.xpending(INPUT, GROUP)["pending"] == 0
    assert client.xinfo_consumers(INPUT, GROUP) == [], "a stopped consumer leaves the group"
    delivered = client.xinfo_groups(INPUT)[0]["last-delivered-id"].decode()
    done = answered(client)
    assert 0 < done < 30_000, "stopped mid-stream"
    # every event delivered before the stop has its answer; none after it was read
    answered_ids = {
        fields[b"input_id"].decode()
        for stream in (OUTPUT, DEAD)
        for _, fields in client.xrange(stream, "-", "+")
    }
    order = sorted(good | bad, key=lambda i: tuple(map(int, i.split("-"))))
    assert answered_ids == set(order[: order.index(delivered) + 1])
