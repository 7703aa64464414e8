"""The consumer loop: read a batch, check, predict, write results and acknowledge, repeat.

One batch at a time (at most `batch_size` events in hand): the next read waits until the
batch in hand is written and acknowledged, so a slow model or a slow Redis slows the
consumer, never fills its memory. Every Redis call that fails for want of Redis (no
connection, timeout, loading, read-only replica) is retried with capped exponential
backoff and logged; the batch in hand is kept and its write retried (the write is
idempotent, `results.py`). On stop (SIGTERM) the batch in hand is finished and
acknowledged, then `run` returns.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
from redis import exceptions

from model.settings import StreamSettings

from ..capture import BatchCapture
from ..runtime import Predictor
from .events import PREDICTION_FAILED, CheckedBatch, Event, EventChecker, event_problem
from .metrics import StreamMetrics
from .results import BatchWriter, Streams, result_values

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Redis is away, or cannot take commands yet: wait and retry (never a client bug)
UNAVAILABLE = (
    exceptions.ConnectionError,  # also: loading its data, authentication refused
    exceptions.TimeoutError,
    exceptions.ReadOnlyError,  # a replica
    exceptions.OutOfMemoryError,
    exceptions.TryAgainError,
    exceptions.MasterDownError,
)
# the group, or the whole stream, was deleted (a read blocked on it says UNBLOCKED)
GROUP_GONE = ("NOGROUP", "UNBLOCKED")
# other replies of a Redis that cannot take commands now: failing to persist, busy with a script
BUSY_REPLIES = ("MISCONF ", "BUSY ")
FIRST_RETRY_SECONDS = 0.1
# XGROUP DELCONSUMER drops the consumer's pending entries too: only when it has none
LEAVE_IF_IDLE = """
local held = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #held > 0 then return -1 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
"""
LAG_EVERY_SECONDS = 5.0


class Stopped(Exception):
    """Raised inside the loop when a stop was asked for while waiting on Redis."""


def _group_gone(error: Exception) -> bool:
    return isinstance(error, exceptions.ResponseError) and str(error).startswith(GROUP_GONE)


def _unavailable(error: Exception) -> bool:
    if isinstance(error, UNAVAILABLE):
        return True
    return isinstance(error, exceptions.ResponseError) and str(error).startswith(BUSY_REPLIES)


def backoff_seconds(attempt: int, cap: float) -> float:
    """Exponential from 0.1 s, capped, with full jitter on its upper half."""
    ceiling = min(cap, FIRST_RETRY_SECONDS * 2 ** (attempt - 1))
    return ceiling / 2 + random.random() * ceiling / 2


class Consumer:
    def __init__(
        self,
        client: redis.Redis,
        settings: StreamSettings,
        consumer_name: str,
        predictor: Predictor,
        metrics: StreamMetrics,
        capture: BatchCapture | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.name = consumer_name
        self.predictor = predictor
        self.metrics = metrics
        self.capture = capture
        self.endpoint = f"stream:{settings.input}"
        self.checker = EventChecker(predictor.schema, settings.max_event_bytes)
        self.writer = BatchWriter(
            client,
            Streams(
                input=settings.input,
                output=settings.output,
                dead_letter=settings.dead_letter,
                group=settings.group,
                marker_prefix=f"{settings.input}:done:",
                marker_ttl_seconds=settings.marker_ttl_seconds,
                output_maxlen=settings.output_maxlen,
            ),
        )
        self._stopping = threading.Event()
        self._stop_deadline = float("inf")
        self._next_claim = 0.0
        self._next_lag = 0.0

    # ---------------------------------------------------------------- lifecycle

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand and return (safe in a signal handler)."""
        if not self._stopping.is_set():
            self._stop_deadline = time.monotonic() + self.settings.stop_seconds
            self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        """Consume until `stop()`; returns once the batch in hand is acknowledged."""
        try:
            self._retrying("create group", self._ensure_group)
            logger.info(
                "consumer %s reading %s in group %s",
                self.name,
                self.settings.input,
                self.settings.group,
            )
            self._own_pending()
            while not self.stopping:
                now = time.monotonic()
                if now >= self._next_claim:
                    self._claim_idle()
                    self._next_claim = now + min(self.settings.claim_idle_ms / 2000, 10.0)
                if now >= self._next_lag:
                    self._export_lag()
                    self._next_lag = now + LAG_EVERY_SECONDS
                events = self._read(">")
                if events:
                    self.handle(events)
            self._leave_group()
        except Stopped:
            pass
        logger.info("consumer %s stopped", self.name)

    def _leave_group(self) -> None:
        """Leaves the group if this consumer holds no pending event, so the names of stopped
        consumers (pod names) do not pile up in it."""
        try:
            left = self.client.eval(
                LEAVE_IF_IDLE, 1, self.settings.input, self.settings.group, self.name
            )
        except (*UNAVAILABLE, exceptions.ResponseError) as error:
            logger.warning("consumer %s stays in the group: %s", self.name, error)
            return
        if left == -1:
            logger.warning("consumer %s stays in the group: it holds pending events", self.name)

    # ---------------------------------------------------------------- Redis calls

    def _retrying(self, operation: str, call: Callable[[], T], *, finishing: bool = False) -> T:
        """`call()`, retried while Redis is unavailable; `finishing` keeps retrying after a
        stop until STREAM_STOP_SECONDS have passed, otherwise a stop ends the wait."""
        attempt = 0
        while True:
            try:
                result = call()
            except (*UNAVAILABLE, exceptions.ResponseError) as error:
                if _group_gone(error) and operation != "create group":
                    logger.warning("consumer group %s is gone; creating it", self.settings.group)
                    self._retrying("create group", self._ensure_group)
                    continue
                if not _unavailable(error):
                    raise
                attempt += 1
                self.metrics.redis_error(operation)
                delay = backoff_seconds(attempt, self.settings.retry_max_seconds)
                if self.stopping and (
                    not finishing or time.monotonic() + delay > self._stop_deadline
                ):
                    raise Stopped from error
                logger.warning(
                    "redis unavailable (%s: %s); %s retried in %.2f s (attempt %d)",
                    type(error).__name__,
                    error,
                    operation,
                    delay,
                    attempt,
                )
                if self._stopping.wait(delay) and not finishing:
                    raise Stopped from error
                continue
            if attempt:
                logger.info(
                    "redis available again: %s after %d failed attempts", operation, attempt
                )
            return result

    def _ensure_group(self) -> None:
        try:
            self.client.xgroup_create(
                self.settings.input, self.settings.group, id=self.settings.start_id, mkstream=True
            )
            logger.info("created consumer group %s on %s", self.settings.group, self.settings.input)
        except exceptions.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def _read(self, start: str) -> list[Event]:
        """One XREADGROUP of new events (`>`), or of this consumer's own pending ones (`0`)."""
        return self._events(self._read_entries(start))

    def _read_entries(self, start: str) -> list[tuple[bytes, dict | None]]:
        block = None if start != ">" else self.settings.block_ms
        answer = self._retrying(
            "read",
            lambda: self.client.xreadgroup(
                self.settings.group,
                self.name,
                {self.settings.input: start},
                count=self.settings.batch_size,
                block=block,
            ),
        )
        return answer[0][1] if answer else []

    def _events(self, entries: Sequence[tuple[bytes, dict | None]]) -> list[Event]:
        """Events of the entries; entries deleted from the stream meanwhile are acknowledged."""
        events, gone = [], []
        for entry_id, fields in entries:
            if fields:
                events.append(Event(entry_id.decode(), fields))
            else:
                gone.append(entry_id.decode())
        if gone:
            self._retrying("ack", lambda: self.writer.acknowledge(self.client, gone))
            logger.warning("acknowledged %d pending entries deleted from the stream", len(gone))
        return events

    def _own_pending(self) -> None:
        """Events delivered to this consumer's name before a restart, not yet acknowledged."""
        while not self.stopping:
            entries = self._read_entries("0")
            if not entries:
                return
            events = self._events(entries)
            if events:
                logger.info("handling %d events left pending by %s", len(events), self.name)
                self.handle(events)

    def _claim_idle(self) -> None:
        """Takes over events pending longer than STREAM_CLAIM_IDLE_MS at any consumer."""
        cursor = "0-0"
        while not self.stopping:
            answer = self._retrying("claim", functools.partial(self._autoclaim, cursor))
            cursor = answer[0].decode() if isinstance(answer[0], bytes) else str(answer[0])
            events = self._events(answer[1])
            if events:
                self.metrics.claimed.inc(len(events))
                logger.info(
                    "claimed %d events idle over %d ms", len(events), self.settings.claim_idle_ms
                )
                self.handle(events)
            if cursor == "0-0":
                return

    def _autoclaim(self, start: str) -> list:
        return self.client.xautoclaim(
            self.settings.input,
            self.settings.group,
            self.name,
            min_idle_time=self.settings.claim_idle_ms,
            start_id=start,
            count=self.settings.batch_size,
        )

    def _export_lag(self) -> None:
        try:
            groups = self.client.xinfo_groups(self.settings.input)
        except (*UNAVAILABLE, exceptions.ResponseError):
            return  # the next read reports and retries; lag is only a metric
        for group in groups:
            name = group.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == self.settings.group:
                if group.get("lag") is not None:
                    self.metrics.lag.set(group["lag"])
                self.metrics.pending.set(group.get("pending", 0))

    # ---------------------------------------------------------------- one batch

    def handle(self, events: Sequence[Event]) -> None:
        """Check, predict, write and acknowledge one batch; bad events are dead-lettered."""
        started = time.perf_counter()
        self.metrics.batch_size.observe(len(events))
        checked = self.checker.check(events)
        model = self.predictor.tag
        dead: list[tuple[Event, str, dict[str, Any]]] = [
            (e, model, body) for e, body in checked.bad
        ]
        results = self._predict(checked, dead)
        arguments = self.writer.arguments(results, dead)
        try:
            written = self._retrying("write", lambda: self.writer.write(arguments), finishing=True)
        except Stopped:
            self.metrics.failed.labels(self.settings.input, "write").inc(len(events))
            logger.warning(
                "stopped before %d events could be written; they stay pending and are "
                "claimed after STREAM_CLAIM_IDLE_MS",
                len(events),
            )
            raise
        self.metrics.processing.observe(time.perf_counter() - started)
        self.metrics.duplicates.inc(written.duplicates)
        if written.duplicates:
            logger.info("%d events were already written: acknowledged only", written.duplicates)
        self.metrics.processed.inc(len(results))
        for event, _, body in dead:
            reason = body["detail"][0]["type"] if body["detail"] else "invalid"
            self.metrics.dead_letter(reason)
            logger.warning(
                "event %s dead-lettered: %s",
                event.id,
                "; ".join(f"{d['loc']}: {d['msg']}" for d in body["detail"][:3]),
            )

    def _predict(
        self, checked: CheckedBatch, dead: list[tuple[Event, str, dict[str, Any]]]
    ) -> list[tuple[Event, tuple[str, str, str]]]:
        if not checked.good:
            return []
        model = self.predictor.tag
        frame = self.predictor.frame(checked.instances)
        try:
            outputs = self.predictor.answer(frame, self.endpoint)
            values = result_values(model, outputs)
        except Exception:
            logger.exception("prediction failed for a batch; predicting its events one by one")
            return self._predict_each(checked, frame, dead)
        if self.capture is not None:
            self.capture.sample(checked.good[0].id, self.endpoint, frame, outputs)
        return list(zip(checked.good, values, strict=True))

    def _predict_each(
        self, checked: CheckedBatch, frame: Any, dead: list[tuple[Event, str, dict[str, Any]]]
    ) -> list[tuple[Event, tuple[str, str, str]]]:
        model = self.predictor.tag
        results = []
        for position, event in enumerate(checked.good):
            try:
                outputs = self.predictor.answer(frame.iloc[[position]], self.endpoint)
                value = result_values(model, outputs)[0]
            except Exception as error:
                self.metrics.failed.labels(self.settings.input, "predict").inc()
                message = f"the model could not predict this instance: {type(error).__name__}"
                dead.append((event, model, event_problem(PREDICTION_FAILED, message)))
                continue
            results.append((event, value))
        return results
