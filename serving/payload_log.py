"""Payload log: every sampled prediction request as one JSON line in rotating files.

The request path only puts a record in a bounded queue: the raw request and response
bodies of a `/predict` call (`Exchange`), or a sample of a batch's rows with their
answers (`SampledRows`). A background thread (the standard library's QueueListener)
turns each into a line and writes it through a RotatingFileHandler; the drift job reads
the lines back (`monitoring.payloads`, which defines the format). A full queue drops
the record and counts it, so a slow or failing disk never slows or fails a prediction.
`close()` drains the queue. Each process writes its own file, so several workers never
interleave lines.
"""

from __future__ import annotations

import json
import logging
import os
import queue
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from logging.handlers import QueueListener, RotatingFileHandler
from pathlib import Path
from typing import Any

import pandas as pd

from model.outputs import Outputs
from monitoring.payloads import FILE_PREFIX

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exchange:
    """One answered request, as raw bytes: parsing happens off the request path."""

    timestamp: float
    request_id: str
    endpoint: str
    request_body: bytes
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


def _one_line(body: bytes) -> bytes:
    """A JSON body as sent: JSON allows no raw line breaks inside strings, so they can go."""
    return body.replace(b"\r", b" ").replace(b"\n", b" ")


def to_line(exchange: Exchange, features_json: bytes) -> bytes:
    """One log line, as bytes, without parsing either body: they are embedded as sent."""
    timestamp = datetime.fromtimestamp(exchange.timestamp, UTC).isoformat()
    head = json.dumps(
        {"ts": timestamp, "request_id": exchange.request_id, "endpoint": exchange.endpoint}
    )
    return b"".join(
        [
            head[:-1].encode(),
            b', "features":',
            features_json,
            b',"request":',
            _one_line(exchange.request_body) or b"null",
            b',"response":',
            _one_line(exchange.response_body) or b"null",
            b"}\n",
        ]
    )


def sample_line(sample: SampledRows) -> bytes:
    """The sampled rows as one log line, in the shape of a logged request."""
    frame = sample.instances
    values = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
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
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"


class _LineFileHandler(RotatingFileHandler):
    """Writes each exchange as one line of bytes to a file opened in binary mode.

    Large bodies are never decoded to text and encoded back; each line is built once and
    kept on its record, since the size check before rotation needs it too.
    """

    def __init__(self, path: Path, feature_names: Sequence[str], **rotation: Any) -> None:
        super().__init__(path, mode="ab", delay=True, **rotation)
        # the base class forces text mode ('a') when it rotates by size
        self.mode, self.encoding = "ab", None
        self._features = json.dumps(list(feature_names), separators=(",", ":")).encode()

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
        if self.maxBytes <= 0:
            return False
        if self.stream is None:
            self.stream = self._open()
        return self.stream.tell() + len(self.line(record)) >= self.maxBytes

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.shouldRollover(record):
                self.doRollover()
            if self.stream is None:
                self.stream = self._open()
            self.stream.write(self.line(record))
            self.flush()
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        logger.warning("payload record %s not written", record.msg.request_id, exc_info=True)


class _DrainingListener(QueueListener):
    def enqueue_sentinel(self) -> None:
        # the stop marker waits for room: a full queue must still be drained, not fail
        self.queue.put(self._sentinel)


class PayloadLog:
    """Created at import, started in each worker, closed on shutdown."""

    def __init__(self, *, max_bytes: int, backups: int, queue_size: int) -> None:
        self._max_bytes = max_bytes
        self._backups = backups
        self._queue: queue.Queue[logging.LogRecord] = queue.Queue(maxsize=queue_size)
        self._listener: _DrainingListener | None = None
        self._handler: RotatingFileHandler | None = None
        self.path: Path | None = None
        self.dropped = 0

    def start(self, directory: Path, feature_names: Sequence[str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{FILE_PREFIX}{os.getpid()}.jsonl"
        self._handler = _LineFileHandler(
            self.path, feature_names, maxBytes=self._max_bytes, backupCount=self._backups
        )
        self._listener = _DrainingListener(self._queue, self._handler)
        self._listener.start()
        logger.info("payload log: %s", self.path)

    def submit(self, exchange: Exchange | SampledRows) -> bool:
        """Queue one record; False (and counted) when the queue is full or the log closed."""
        if self._listener is None:
            return False
        record = logging.LogRecord("payloads", logging.INFO, "", 0, exchange, None, None)
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
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
        if self.dropped:
            logger.warning("payload log dropped %d records (queue full)", self.dropped)
