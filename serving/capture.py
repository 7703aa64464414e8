"""Payload capture: the validated instances of small requests (ASGI middleware), row
samples of batches."""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.outputs import Outputs
from serving.payload_log import Exchange, Instance, SampledRows

from .access_log import request_id_of
from .instances import Columns

logger = logging.getLogger(__name__)

_SEEN_KEY = "tabular_model.seen_instances"


@dataclass
class _SeenInstances:
    """Where the input spec leaves the instances of a request the capture will log."""

    instances: Sequence[Instance] | None = None


def remember_instances(scope: Scope, instances: Sequence[Instance]) -> None:
    """Called by the input spec once a JSON body validated: the instances the model sees.

    Kept only for a request the capture logs (sampled, on a logged path); otherwise a
    no-op, so nothing outlives the request. Safe to call from a worker thread.
    """
    seen = scope.get(_SEEN_KEY)
    if isinstance(seen, _SeenInstances):
        seen.instances = instances


class PayloadCapture:
    """Hands each answered (2xx) request on `paths` to `submit`, sampled at `sample_rate`:
    the instances the input spec validated (`remember_instances`) and the response body.

    The request body itself is never kept, so padding or whitespace around valid
    instances costs the log nothing. Records carry the request id the access log
    assigned (a safe client X-Request-ID, or a new one), which every response echoes, so
    a client can find its record.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: frozenset[str],
        submit: Callable[[Exchange], object],
        sample_rate: float,
    ) -> None:
        self.app = app
        self.paths = paths
        self.submit = submit
        self.sample_rate = sample_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        capture = (
            scope["type"] == "http"
            and scope["path"] in self.paths
            and random.random() < self.sample_rate
        )
        if not capture:
            await self.app(scope, receive, send)
            return
        # set before the app runs, so a shallow copy of the scope further in holds it too
        seen = _SeenInstances()
        scope[_SEEN_KEY] = seen
        response_chunks: list[bytes] = []
        status = 0

        async def send_and_keep(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                response_chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, send_and_keep)
        if 200 <= status < 300 and seen.instances is not None:
            self.submit(
                Exchange(
                    timestamp=time.time(),
                    request_id=request_id_of(scope) or uuid.uuid4().hex,
                    endpoint=scope["path"],
                    instances=seen.instances,
                    response_body=b"".join(response_chunks),
                )
            )


class BatchCapture:
    """Hands a random sample of at most `max_rows` rows of each answered batch to `submit`.

    Called by the batch API with the frame it predicted on, so nothing is parsed again:
    a 10,000-row request costs a few hundred logged rows at most, not its whole body.
    Requests are sampled at `sample_rate` like the middleware's; `max_rows` 0 logs every row.
    """

    def __init__(
        self,
        *,
        submit: Callable[[SampledRows], object],
        sample_rate: float,
        max_rows: int,
        model: str,
    ) -> None:
        self.submit = submit
        self.sample_rate = sample_rate
        self.max_rows = max_rows
        self.model = model
        self._random = np.random.default_rng()

    def __call__(self, scope: Scope, rows: pd.DataFrame | Columns, outputs: Outputs) -> None:
        self.sample(request_id_of(scope), scope["path"], rows, outputs)

    def sample(
        self,
        request_id: str | None,
        endpoint: str,
        frame: pd.DataFrame | Columns,
        outputs: Outputs,
    ) -> None:
        """Log a sample of `frame`'s rows as one request to `endpoint` (the stream's too);
        checked columns become a frame of the sampled rows only."""
        if self.sample_rate <= 0 or self._random.random() >= self.sample_rate:
            return
        try:
            rows = len(frame)
            if self.max_rows and rows > self.max_rows:
                kept = np.sort(self._random.choice(rows, self.max_rows, replace=False))
            else:
                kept = np.arange(rows)
            self.submit(
                SampledRows(
                    timestamp=time.time(),
                    request_id=request_id or uuid.uuid4().hex,
                    endpoint=endpoint,
                    model=self.model,
                    rows=rows,
                    instances=frame.iloc[kept]
                    if isinstance(frame, pd.DataFrame)
                    else frame.frame(kept),
                    outputs=outputs.take(kept),
                )
            )
        except Exception:  # the payload log never fails a prediction
            logger.exception("payload capture of a batch failed")
