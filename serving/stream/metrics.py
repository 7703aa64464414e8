"""Prometheus metrics of the stream consumer, served by prometheus_client on their own port.

They live in prometheus_client's default registry, next to the model's own metrics
(`model_predictions_total`, `model_prediction_score`, `model_info`, from
`serving.metrics`) and the payload log's dropped records, so one scrape gets all of them.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class StreamMetrics:
    def __init__(self, stream: str, group: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.stream = stream
        self.group = group
        labels = ["stream"]
        at = {"registry": registry}
        self.processed = Counter(
            "stream_events_processed",
            "Events whose result was written to the output stream and that were acknowledged.",
            labels,
            **at,
        ).labels(stream)
        self.dead_lettered = Counter(
            "stream_events_dead_lettered",
            "Events written to the dead-letter stream and acknowledged, by error type.",
            [*labels, "reason"],
            **at,
        )
        self.failed = Counter(
            "stream_events_failed",
            "Events not answered as asked: predict (the model raised on the event: "
            "dead-lettered as prediction_failed), write (left pending by a stop during a "
            "Redis outage, for another consumer to claim).",
            [*labels, "stage"],
            **at,
        )
        self.duplicates = Counter(
            "stream_events_duplicate",
            "Events handled again whose result was already written: acknowledged, not written.",
            labels,
            **at,
        ).labels(stream)
        self.claimed = Counter(
            "stream_events_claimed",
            "Pending events claimed from other consumers idle longer than STREAM_CLAIM_IDLE_MS.",
            labels,
            **at,
        ).labels(stream)
        self.redis_errors = Counter(
            "stream_redis_errors",
            "Failed Redis calls, retried with backoff, by operation.",
            [*labels, "operation"],
            **at,
        )
        self.batch_size = Histogram(
            "stream_batch_size", "Events per batch.", labels, buckets=BATCH_BUCKETS, **at
        ).labels(stream)
        self.processing = Histogram(
            "stream_processing_seconds",
            "Seconds from a batch read to its results written and acknowledged.",
            labels,
            buckets=SECONDS_BUCKETS,
            **at,
        ).labels(stream)
        self.lag = Gauge(
            "stream_group_lag",
            "Entries of the input stream not yet delivered to the consumer group.",
            [*labels, "group"],
            **at,
        ).labels(stream, group)
        self.pending = Gauge(
            "stream_group_pending",
            "Entries delivered to the consumer group and not yet acknowledged.",
            [*labels, "group"],
            **at,
        ).labels(stream, group)
        for stage in ("predict", "write"):
            self.failed.labels(stream, stage)

    def dead_letter(self, reason: str) -> None:
        self.dead_lettered.labels(self.stream, reason).inc()

    def redis_error(self, operation: str) -> None:
        self.redis_errors.labels(self.stream, operation).inc()
