"""Payload log: every sampled prediction request as one JSON line in rotating files.

The request path only puts a record in a bounded queue: the validated instances and the
response body of a `/predict` call (`Exchange`), or a sample of a batch's rows with their
answers (`SampledRows`). A background thread looks at the queue every 50 ms, turns each
record into a line and writes it through a RotatingFileHandler; the drift job reads
the lines back (`monitoring.payloads`, which defines the format). Each process writes its
own file, so several workers never interleave lines.

Disk use is bounded: a line longer than `max_line_bytes` is dropped, and a file is
rotated only when the next line would take it past `max_bytes`, so one worker holds at
most `max_bytes * (backups + 1)` bytes (a single line may exceed `max_bytes` when
`max_line_bytes` does). A record is dropped and counted (`DropCounts`), never waited for,
when the queue is full, when its line is too long, or when it cannot be written, so a
slow, full or failing disk never slows or fails a prediction. `close()` drains the queue.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
import threading
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd

from model.outputs import Outputs
from monitoring.payloads import FILE_PREFIX

logger = logging.getLogger(__name__)

DEFAULT_MAX_LINE_BYTES = 2**20
# how often the writer thread looks for submitted records
WRITE_INTERVAL_SECONDS = 0.05
DROPPED_METRIC = "payload_log_dropped_records"
QUEUE_FULL, TOO_LARGE, WRITE_FAILED = "queue_full", "too_large", "write_failed"
DROP_REASONS = (QUEUE_FULL, TOO_LARGE, WRITE_FAILED)

Instance = Sequence[Any] | Mapping[str, Any]


@dataclass(frozen=True)
class Exchange:
    """One answered request: the instances the model saw, and the answer as sent."""

    timestamp: float
    request_id: str
    endpoint: str
    instances: Sequence[Instance]  # validated: tuples in schema order, or keyed by feature
    response_body: bytes


@dataclass(frozen=True)
class SampledRows:
    """Some rows of one answered batch request, with the model's answers for them."""

    timestamp: float
    request_id: str
    endpoint: str
    model: str
    rows: int  # in the whole request
    instances: pd.DataFrame  # the sampled rows, as the model's frame
    outputs: Outputs  # for the sampled rows


def _compact_json(value: Any) -> bytes:
    """Compact JSON; a float NaN (a gap in a frame) is written as null."""
    return msgspec.json.encode(value)


def _in_schema_order(instance: Instance, feature_names: Sequence[str]) -> list[Any]:
    if isinstance(instance, Mapping):
        return [instance[name] for name in feature_names]
    return list(instance)


def _one_line(body: bytes) -> bytes:
    """A JSON body as sent: JSON allows no raw line breaks inside strings, so they can go."""
    return body.replace(b"\r", b" ").replace(b"\n", b" ")


def to_line(exchange: Exchange, feature_names: Sequence[str]) -> bytes:
    """One log line, as bytes: the instances as lists in schema order, in compact JSON,
    and the response body embedded as it was sent."""
    rows = [_in_schema_order(instance, feature_names) for instance in exchange.instances]
    head = {
        "ts": datetime.fromtimestamp(exchange.timestamp, UTC).isoformat(),
        "request_id": exchange.request_id,
        "endpoint": exchange.endpoint,
        "features": list(feature_names),
        "request": {"instances": rows},
    }
    return b"".join(
        [
            _compact_json(head)[:-1],
            b',"response":',
            _one_line(exchange.response_body) or b"null",
            b"}\n",
        ]
    )


def sample_line(sample: SampledRows) -> bytes:
    """The sampled rows as one log line, in the shape of a logged request."""
    frame = sample.instances
    values = frame.to_numpy().tolist()  # gaps are NaN or None: null either way
    outputs = sample.outputs
    line = {
        "ts": datetime.fromtimestamp(sample.timestamp, UTC).isoformat(),
        "request_id": sample.request_id,
        "endpoint": sample.endpoint,
        "features": list(frame.columns),
        "rows": sample.rows,
        "request": {"instances": values},
        "response": {
            "model": sample.model,
            "predictions": outputs.predictions.tolist(),
            "probabilities": outputs.probability_dicts(),
        },
    }
    return _compact_json(line) + b"\n"


@functools.cache
def _dropped_metric() -> Any:
    """Created on first use, in a worker: BentoML sets up the multiprocess registry there."""
    import bentoml

    return bentoml.metrics.Counter(
        name=DROPPED_METRIC,
        documentation="Payload log records not written, by reason: queue_full, too_large "
        "(longer than PAYLOAD_LOG_MAX_LINE_BYTES), write_failed.",
        labelnames=["reason"],
    )


class DropCounts:
    """Records not written, by reason; exported as payload_log_dropped_records_total."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def export(self) -> None:
        """Show every reason on /metrics from the start, at zero."""
        for reason in DROP_REASONS:
            _dropped_metric().labels(reason=reason)

    def add(self, reason: str) -> None:
        with self._lock:
            self._counts[reason] += 1
        _dropped_metric().labels(reason=reason).inc()

    def __getitem__(self, reason: str) -> int:
        return self._counts[reason]

    def total(self) -> int:
        return sum(self._counts.values())

    def __str__(self) -> str:
        return ", ".join(f"{count} {reason}" for reason, count in sorted(self._counts.items()))


class _LineFileHandler(RotatingFileHandler):
    """Writes each record as one line of bytes to a file opened in binary mode.

    Lines are never decoded to text and encoded back; each is built once and kept on its
    record, since the size checks before writing need it too.
    """

    def __init__(
        self,
        path: Path,
        feature_names: Sequence[str],
        *,
        max_line_bytes: int,
        drops: DropCounts,
        **rotation: Any,
    ) -> None:
        super().__init__(path, mode="ab", delay=True, **rotation)
        # the base class forces text mode ('a') when it rotates by size
        self.mode, self.encoding = "ab", None
        self._features = list(feature_names)
        self._max_line_bytes = max_line_bytes
        self._drops = drops

    def line(self, record: logging.LogRecord) -> bytes:
        line = getattr(record, "line", None)
        if line is None:
            logged = record.msg
            if isinstance(logged, SampledRows):
                line = sample_line(logged)
            else:
                line = to_line(logged, self._features)
            record.line = line
        return line

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        """True when the line would take a file that already holds lines past max_bytes."""
        if self.maxBytes <= 0:
            return False
        if self.stream is None:
            self.stream = self._open()
        written = self.stream.tell()
        return written > 0 and written + len(self.line(record)) > self.maxBytes

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if len(self.line(record)) > self._max_line_bytes:
                self._drops.add(TOO_LARGE)
                return
            if self.shouldRollover(record):
                self.doRollover()
            if self.stream is None:
                self.stream = self._open()
            self.stream.write(self.line(record))
            self.flush()
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        self._drops.add(WRITE_FAILED)
        logger.warning("payload record %s not written", record.msg.request_id, exc_info=True)


class _Writer:
    """Writes submitted records in a thread of its own, all of those waiting at each look.

    A submit only appends to a deque: it never wakes the thread (a wake-up per request,
    with the GIL handed over each time, cost about a tenth of a worker's CPU at high
    request rates). At most `size` records wait; `stop` writes every one still waiting.
    """

    def __init__(self, handler: logging.Handler, size: int) -> None:
        self._handler = handler
        self._size = size
        self._waiting: deque[Exchange | SampledRows] = deque()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="payload-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, record: Exchange | SampledRows) -> bool:
        if len(self._waiting) >= self._size:
            return False
        self._waiting.append(record)
        return True

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(WRITE_INTERVAL_SECONDS):
            self._write_waiting()
        self._write_waiting()

    def _write_waiting(self) -> None:
        while self._waiting:
            record = self._waiting.popleft()
            self._handler.handle(
                logging.LogRecord("payloads", logging.INFO, "", 0, record, None, None)
            )


def host_name() -> str:
    """This host's name as a file name part: on Kubernetes, the pod's name."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:63] or "host"


def worker_file(directory: Path, host: str, pid: int) -> Path:
    """One file per worker of a host: pods sharing a volume have their own files even
    when their workers have the same process ids (as containers' workers do)."""
    return directory / f"{FILE_PREFIX}{host}-{pid}.jsonl"


def prune_stopped_workers(directory: Path, keep_bytes: int, host: str | None = None) -> int:
    """Removes the oldest files of this host's workers no longer running beyond
    `keep_bytes` (one worker's share), so restarted workers never add up on disk; returns
    how many. Other hosts' files are theirs to prune: their process ids mean nothing here."""
    own = f"{FILE_PREFIX}{host or host_name()}-"
    stopped: list[tuple[float, int, Path]] = []
    for path in directory.glob(f"{own}*.jsonl*"):
        pid = path.name[len(own) :].split(".", 1)[0]
        if not pid.isdigit() or _running(int(pid)):
            continue
        try:
            status = path.stat()
        except OSError:
            continue
        stopped.append((status.st_mtime, status.st_size, path))
    kept = removed = 0
    for _, size, path in sorted(stopped, reverse=True):
        kept += size
        if kept > keep_bytes:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PayloadLog:
    """Created at import, started in each worker, closed on shutdown."""

    def __init__(
        self,
        *,
        max_bytes: int,
        backups: int,
        queue_size: int,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self._max_bytes = max_bytes
        self._backups = backups
        self._max_line_bytes = max_line_bytes
        self._queue_size = queue_size
        self._listener: _Writer | None = None
        self._handler: RotatingFileHandler | None = None
        self.path: Path | None = None
        self.dropped = DropCounts()

    def start(self, directory: Path, feature_names: Sequence[str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        removed = prune_stopped_workers(directory, self._max_bytes * (self._backups + 1))
        if removed:
            logger.info("payload log: removed %d old files of stopped workers", removed)
        self.path = worker_file(directory, host_name(), os.getpid())
        self._handler = _LineFileHandler(
            self.path,
            feature_names,
            max_line_bytes=self._max_line_bytes,
            drops=self.dropped,
            maxBytes=self._max_bytes,
            backupCount=self._backups,
        )
        self.dropped.export()
        self._listener = _Writer(self._handler, self._queue_size)
        self._listener.start()
        logger.info("payload log: %s", self.path)

    def submit(self, record: Exchange | SampledRows) -> bool:
        """Queue one record; False (and counted) when the queue is full or the log closed."""
        listener = self._listener
        if listener is None:
            return False
        if not listener.put(record):
            self.dropped.add(QUEUE_FULL)
            return False
        return True

    def close(self) -> None:
        """Write everything queued, then close the file."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.stop()
        if self._handler is not None:
            self._handler.close()
        if self.dropped.total():
            logger.warning("payload log dropped records: %s", self.dropped)
