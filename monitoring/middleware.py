"""ASGI middleware: request ids on every response, and sampled payload capture."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .payloads import Exchange

REQUEST_ID_HEADER = b"x-request-id"


class PayloadCapture:
    """Hands each answered (2xx) request on `paths` to `submit`, sampled at `sample_rate`.

    The request id is the client's `X-Request-ID` when given, else a new one, and is
    echoed on every response so a client can find its record in the payload log.
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
        request_id = _request_id(scope)
        capture = scope["path"] in self.paths and random.random() < self.sample_rate
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
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id.encode()),
                ]
            elif message["type"] == "http.response.body" and capture:
                response_chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive_and_keep if capture else receive, send_and_keep)
        if capture and 200 <= status < 300:
            self.submit(
                Exchange(
                    timestamp=time.time(),
                    request_id=request_id,
                    endpoint=scope["path"],
                    request_body=b"".join(request_chunks),
                    response_body=b"".join(response_chunks),
                )
            )


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER and 0 < len(value) <= 128:
            return value.decode("latin-1")
    return uuid.uuid4().hex
