"""The consumer's parts in this process against a real redis-server: the idempotent write,
a model failing on one event, and the replay of dead letters."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import redis
from prometheus_client import CollectorRegistry

from model import store
from model.settings import Settings
from serving.runtime import Predictor
from serving.stream.consumer import Consumer
from serving.stream.events import Event
from serving.stream.metrics import StreamMetrics
from serving.stream.replay import REPLAYED_FROM, replay
from train.data import load_default

from .redis_server import RedisServer

pytestmark = pytest.mark.integration

UNLUCKY_RADIUS = 99.0  # a valid value the failing model below cannot predict


class FailingPredictor(Predictor):
    """The real model, except that it raises on any frame holding the unlucky radius."""

    def outputs(self, frame: pd.DataFrame):
        if (frame["mean radius"] == UNLUCKY_RADIUS).any():
            raise FloatingPointError("the model failed")
        return super().outputs(frame)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


def make_consumer(server: RedisServer, loaded: store.LoadedModel, predictor_type=Predictor):
    settings = Settings.from_env(
        {"REDIS_URL": server.url, "STREAM_BLOCK_MS": "100", "STREAM_BATCH_SIZE": "50"}
    ).stream
    metrics = StreamMetrics(settings.input, settings.group, CollectorRegistry())
    predictor = predictor_type(loaded)
    return Consumer(redis.Redis.from_url(server.url), settings, "here", predictor, metrics)


def run_until(consumer: Consumer, done) -> None:
    thread = threading.Thread(target=consumer.run)
    thread.start()
    deadline = time.monotonic() + 30
    try:
        while not done() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        consumer.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert done()


def rows(count: int) -> list[dict]:
    features, _ = load_default()
    return features.iloc[:count].to_dict(orient="records")


def test_a_model_failing_on_one_event_dead_letters_it_alone_and_replay_retries_it(
    redis_server, breast_cancer_model
):
    client = redis_server.client()
    consumer = make_consumer(redis_server, breast_cancer_model, FailingPredictor)
    settings = consumer.settings
    instances = rows(30)
    instances[7] = {**instances[7], "mean radius": UNLUCKY_RADIUS}
    ids = [client.xadd(settings.input, {"instance": json.dumps(i)}).decode() for i in instances]
    run_until(
        consumer, lambda: client.xlen(settings.output) + client.xlen(settings.dead_letter) == 30
    )
    assert client.xlen(settings.output) == 29
    ((_, letter),) = client.xrange(settings.dead_letter)
    assert letter[b"input_id"].decode() == ids[7]
    error = json.loads(letter[b"error"])
    assert error["detail"][0]["type"] == "prediction_failed"
    assert "FloatingPointError" in error["detail"][0]["msg"]
    assert client.xpending(settings.input, settings.group)["pending"] == 0

    # the model is fixed: the dead letter goes back, is answered, and leaves the dead letters
    assert replay(client, settings.dead_letter, settings.input) == 1
    assert client.xlen(settings.dead_letter) == 0
    healthy = make_consumer(redis_server, breast_cancer_model)
    run_until(healthy, lambda: client.xlen(settings.output) == 30)
    last = client.xrevrange(settings.input, count=1)[0]
    assert last[1][REPLAYED_FROM.encode()].decode() == ids[7]
    ((_, result),) = client.xrevrange(settings.output, count=1)
    assert result[b"input_id"] == last[0]
    assert client.xpending(settings.input, settings.group)["pending"] == 0


def test_a_write_run_twice_writes_once_and_acknowledges(redis_server, breast_cancer_model):
    client = redis_server.client()
    consumer = make_consumer(redis_server, breast_cancer_model)
    settings = consumer.settings
    consumer._ensure_group()
    for instance in rows(3):
        client.xadd(settings.input, {"instance": json.dumps(instance)})
    entries = client.xreadgroup(settings.group, "here", {settings.input: ">"})[0][1]
    events = [Event(i.decode(), f) for i, f in entries]
    checked = consumer.checker.check(events)
    outputs = consumer.predictor.outputs(consumer.predictor.frame(checked.instances))
    from serving.stream.results import result_values

    results = list(zip(events, result_values(consumer.predictor.tag, outputs), strict=True))
    arguments = consumer.writer.arguments(results, [])
    first = consumer.writer.write(arguments)
    again = consumer.writer.write(arguments)  # as after a lost answer from Redis
    assert (first.written, first.duplicates) == (3, 0)
    assert (again.written, again.duplicates) == (0, 3)
    assert client.xlen(settings.output) == 3
    assert client.xpending(settings.input, settings.group)["pending"] == 0
    ttl = client.ttl(f"{settings.input}:done:{events[0].id}")
    assert 0 < ttl <= settings.marker_ttl_seconds


def test_a_restarted_consumer_answers_its_own_pending_events_first(
    redis_server, breast_cancer_model
):
    client = redis_server.client()
    consumer = make_consumer(redis_server, breast_cancer_model)
    settings = consumer.settings
    consumer._ensure_group()
    ids = [client.xadd(settings.input, {"instance": json.dumps(i)}).decode() for i in rows(4)]
    # delivered to "here" before a crash; one entry is deleted from the stream meanwhile
    client.xreadgroup(settings.group, "here", {settings.input: ">"})
    client.xdel(settings.input, ids[1])
    run_until(consumer, lambda: client.xlen(settings.output) == 3)
    answered = {f[b"input_id"].decode() for _, f in client.xrange(settings.output)}
    assert answered == {ids[0], ids[2], ids[3]}
    assert client.xpending(settings.input, settings.group)["pending"] == 0
