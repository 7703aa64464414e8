"""The consumer's parts put together: Redis client, predictor, metrics, payload log."""

from __future__ import annotations

from collections.abc import Callable

import redis
from prometheus_client import start_http_server
from redis.backoff import NoBackoff
from redis.retry import Retry

from model.settings import Settings, StreamSettings
from model.store import LoadedModel

from ..capture import BatchCapture
from ..metrics import ModelMetrics, value_buckets
from ..payload_log import PayloadLog
from ..runtime import Predictor
from .consumer import Consumer
from .metrics import StreamMetrics

# beyond the longest blocking read, a silent connection is a dead one
SOCKET_MARGIN_SECONDS = 10.0


def redis_client(stream: StreamSettings) -> redis.Redis:
    """A client that fails fast: the consumer's own loop retries, logs and backs off."""
    password = stream.redis_password.reveal() or None
    return redis.Redis.from_url(
        stream.redis_url,
        password=password,
        socket_timeout=stream.block_ms / 1000 + SOCKET_MARGIN_SECONDS,
        socket_connect_timeout=5.0,
        socket_keepalive=True,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 0),
    )


def build_consumer(
    settings: Settings, loaded: LoadedModel, name: str
) -> tuple[Consumer, Callable[[], None]]:
    """A ready consumer (model warmed up, metrics served) and what closes it."""
    stream = settings.stream
    model_metrics = ModelMetrics(loaded.tag, loaded.labels, value_buckets(loaded))
    predictor = Predictor(loaded, observe=model_metrics.observe)
    predictor.warm_up()
    metrics = StreamMetrics(stream.input, stream.group)
    if stream.metrics_port:
        start_http_server(stream.metrics_port)
    log = settings.payload_log
    payloads = PayloadLog(
        max_bytes=log.max_bytes,
        max_line_bytes=log.max_line_bytes,
        backups=log.backups,
        queue_size=log.queue_size,
    )
    capture = None
    if log.enabled:
        payloads.start(log.directory, loaded.schema.names)
        capture = BatchCapture(
            submit=payloads.submit,
            sample_rate=log.effective_sample_rate,
            max_rows=log.max_rows,
            model=loaded.tag,
        )
    client = redis_client(stream)
    consumer = Consumer(client, stream, name, predictor, metrics, capture)

    def close() -> None:
        payloads.close()
        client.close()

    return consumer, close
