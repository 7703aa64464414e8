"""Payload capture: raw bodies of small requests (ASGI middleware), row samples of batches."""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable

import numpy as np
import pandas as pd
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.outputs import Outputs
from serving.payload_log import Exchange, SampledRows

from .access_log import request_id_of

logger = logging.getLogger(__name__)


class PayloadCapture:
    """Hands each answered (2xx) request on `paths` to `submit`, sampled at `sample_rate`.

    Records carry the request id the access log assigned (the client's X-Request-ID, or
    a new one), which every response echoes, so a client can find its record.
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
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        capture = scope["path"] in self.paths and random.random() < self.sample_rate
        if not capture:
            await self.app(scope, receive, send)
            return
        request_chunks: list[bytes] = []
        response_chunks: list[bytes] = []
        status = 0

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                request_chunks.append(message.get("body", b""))
            return message

        async def send_and_keep(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                response_chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive_and_keep, send_and_keep)
        if 200 <= status < 300:
            self.submit(
                Exchange(
                    timestamp=time.time(),
                    request_id=request_id_of(scope) or uuid.uuid4().hex,
                    endpoint=scope["path"],
                    request_body=b"".join(request_chunks),
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

    def __call__(self, scope: Scope, frame: pd.DataFrame, outputs: Outputs) -> None:
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
                    request_id=request_id_of(scope) or uuid.uuid4().hex,
                    endpoint=scope["path"],
                    model=self.model,
                    rows=rows,
                    instances=frame.iloc[kept],
                    outputs=outputs.take(kept),
                )
            )
        except Exception:  # the payload log never fails a prediction
            logger.exception("payload capture of a batch failed")
