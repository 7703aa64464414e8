"""HTTP guards in front of the model's APIs: API keys, request limits, readiness.

Each is a small ASGI middleware; `serving.app` stacks them. Health, readiness and metrics
routes are never guarded, so probes and scrapes work without a key and under load.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import RETRY_AFTER_SECONDS, respond
from .media import ARROW_MEDIA_TYPE, ARROW_STREAM, media_type_of

logger = logging.getLogger(__name__)

PROBE_PATHS = frozenset(
    {"/livez", "/readyz", "/healthz", "/metrics", "/v2/health/live", "/v2/health/ready"}
)
DOC_PATHS = frozenset({"/", "/docs.json", "/schema.json"})
DOC_PREFIXES = ("/static_content/",)


def parse_api_keys(raw: str) -> tuple[bytes, ...]:
    """API_KEYS: comma-separated; blanks ignored, so `a,,b,` is two keys."""
    return tuple(key.strip().encode() for key in raw.split(",") if key.strip())


class ApiKeyAuth:
    """Requires one of `keys` as `Authorization: Bearer KEY` or `X-API-Key: KEY`.

    Every key is compared in constant time, all of them each time, so neither the key's
    content nor which key matched shows in the timing. Keys are never logged.
    """

    def __init__(self, app: ASGIApp, *, keys: tuple[bytes, ...], public_docs: bool = True):
        self.app = app
        self.keys = keys
        self.public = PROBE_PATHS | (DOC_PATHS if public_docs else frozenset())
        self.public_prefixes = DOC_PREFIXES if public_docs else ()

    def _is_public(self, path: str) -> bool:
        return path in self.public or path.startswith(self.public_prefixes)

    def _authorized(self, scope: Scope) -> bool:
        offered: list[bytes] = []
        for name, value in scope.get("headers", []):
            if name == b"x-api-key":
                offered.append(value.strip())
            elif name == b"authorization" and value[:7].lower() == b"bearer ":
                offered.append(value[7:].strip())
        matched = False
        for candidate in offered:
            for key in self.keys:
                matched |= hmac.compare_digest(candidate, key)
        return matched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or self._is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        if not self._authorized(scope):
            await respond(
                send,
                401,
                {
                    "error": "missing or invalid API key: send Authorization: Bearer KEY "
                    "or X-API-Key: KEY"
                },
                [(b"www-authenticate", b'Bearer realm="model"')],
            )
            return
        await self.app(scope, receive, send)


class RequestLimits:
    """Bounds what one worker spends on request bodies before any of it is parsed.

    - 415: a body neither JSON nor, on `arrow_paths`, an Arrow IPC stream (any media type
      on `any_media_paths`: the v2 infer routes read JSON and binary tensors, typed or not);
    - 413: a body over `max_body_bytes` (refused on its Content-Length when it has one);
    - 408: a body not received whole within `body_timeout` seconds;
    - 503 + Retry-After: the bytes of bodies held by the worker (being received or
      answered) would exceed `max_body_bytes_in_flight`, or `max_in_flight` requests are
      being answered already.

    A body reserves its bytes as they arrive, and an answering slot only once it is whole,
    so clients trickling bodies hold what they sent and a deadline, never the slots of the
    requests behind them. The body is handed on whole: the APIs read it whole anyway.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_in_flight: int,
        paths: frozenset[str],
        arrow_paths: frozenset[str] = frozenset(),
        any_media_paths: frozenset[str] = frozenset(),
        max_body_bytes_in_flight: int | None = None,
        body_timeout: float = 30.0,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.max_body_bytes_in_flight = max(
            max_body_bytes, max_body_bytes_in_flight or max_body_bytes * max_in_flight
        )
        self.body_timeout = body_timeout
        self.paths = paths
        self.arrow_paths = arrow_paths
        self.any_media_paths = any_media_paths
        self.in_flight = 0
        self.body_bytes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if not self._accepts(scope):
            await respond(send, 415, {"error": self._accepted_types(scope["path"])})
            return
        if _declared_length(scope) > self.max_body_bytes:
            await self._too_large(send)
            return
        held = _Held(self)
        try:
            body = await self._read_body(receive, held)
            if isinstance(body, int):
                await self._refuse_body(send, body)
                return
            if self.in_flight >= self.max_in_flight:
                await _overloaded(
                    send, f"more than {self.max_in_flight} requests in flight (MAX_IN_FLIGHT)"
                )
                return
            self.in_flight += 1
            try:
                await self.app(scope, _replay(body, receive), send)
            finally:
                self.in_flight -= 1
        finally:
            held.release()

    async def _read_body(self, receive: Receive, held: _Held) -> bytes | int:
        """The whole body, or the status refusing it (408, 413, 503)."""
        chunks: list[bytes] = []
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        break
                    chunk = message.get("body", b"")
                    if held.size + len(chunk) > self.max_body_bytes:
                        return 413
                    if not held.take(len(chunk)):
                        return 503
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            return 408
        return b"".join(chunks)

    async def _refuse_body(self, send: Send, status: int) -> None:
        if status == 413:
            await self._too_large(send)
        elif status == 408:
            await respond(
                send,
                408,
                {
                    "error": f"request body not received within {self.body_timeout:g} s "
                    "(BODY_TIMEOUT_SECONDS)"
                },
                [(b"connection", b"close")],
            )
        else:
            await _overloaded(
                send,
                f"request bodies in this worker would exceed {self.max_body_bytes_in_flight} "
                "bytes (MAX_BODY_BYTES_IN_FLIGHT)",
            )

    async def _too_large(self, send: Send) -> None:
        await respond(
            send,
            413,
            {
                "error": f"request body larger than {self.max_body_bytes} bytes "
                "(MAX_BODY_BYTES); split it into several requests"
            },
            [(b"connection", b"close")],
        )

    def _accepts(self, scope: Scope) -> bool:
        if scope["path"] in self.any_media_paths:
            return True
        media_type = media_type_of(scope)
        if media_type == b"application/json" or media_type.endswith(b"+json"):
            return True
        return media_type == ARROW_MEDIA_TYPE and scope["path"] in self.arrow_paths

    def _accepted_types(self, path: str) -> str:
        if path in self.arrow_paths:
            return (
                "send the body as JSON (Content-Type: application/json) or as an Arrow IPC "
                f"stream (Content-Type: {ARROW_STREAM})"
            )
        return "send the body as JSON (Content-Type: application/json)"


class _Held:
    """The body bytes one request holds against its worker's `max_body_bytes_in_flight`."""

    def __init__(self, limits: RequestLimits) -> None:
        self.limits = limits
        self.size = 0

    def take(self, size: int) -> bool:
        if self.limits.body_bytes + size > self.limits.max_body_bytes_in_flight:
            return False
        self.limits.body_bytes += size
        self.size += size
        return True

    def release(self) -> None:
        self.limits.body_bytes -= self.size
        self.size = 0


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length" and value.isdigit():
            return int(value)
    return 0


async def _overloaded(send: Send, reason: str) -> None:
    await respond(
        send,
        503,
        {"error": f"overloaded: {reason}; retry later"},
        [(b"retry-after", RETRY_AFTER_SECONDS.encode())],
    )


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then whatever comes next (a disconnect)

    return replay


class RequireReady:
    """Answers 503 with the reason while the model could not be loaded (see service.py)."""

    def __init__(
        self, app: ASGIApp, *, paths: frozenset[str], problem: Callable[[], str | None]
    ) -> None:
        self.app = app
        self.paths = paths
        self.problem = problem

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.paths:
            problem = self.problem()
            if problem is not None:
                await respond(send, 503, {"error": f"not serving: {problem}"})
                return
        await self.app(scope, receive, send)
