"""Structured (JSON) access log, and the request id every response carries.

One line per request on the `access` logger: request id, method, path, status, latency,
request size. No header values and no bodies: API keys and feature values never reach it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from typing import Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = b"x-request-id"
# A client's X-Request-ID is kept only when it is short and safe as a file-name part and a
# log field: ASCII letters and digits first, then also . _ : - (no separators, spaces or
# control characters); otherwise the request gets a new id.
SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
SCOPE_KEY = "tabular_model.request_id"  # BentoML sets its own "request_id"
QUIET_PATHS = frozenset(
    {"/livez", "/readyz", "/healthz", "/metrics", "/v2/health/live", "/v2/health/ready"}
)

access_logger = logging.getLogger("access")
BENTOML_EXCEPTION_LOGGER = "bentoml._internal.server.http_app"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        else:
            line["message"] = record.getMessage()
        return json.dumps(line, separators=(",", ":"))


def configure_access_logger() -> None:
    """JSON lines on stdout; idempotent (workers may import the service more than once)."""
    if any(isinstance(h.formatter, JsonFormatter) for h in access_logger.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    formatter = JsonFormatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    access_logger.addHandler(handler)
    access_logger.setLevel(logging.INFO)
    access_logger.propagate = False


class _DropClientErrorTracebacks(logging.Filter):
    """BentoML logs a traceback for every rejected request; its text quotes the input.

    Client errors are already in the access log (status 4xx) and in the client's answer,
    so their tracebacks, and the feature values in them, are dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[1] is None:
            return True
        error = record.exc_info[1]
        if isinstance(error, ValidationError):
            return False
        status = getattr(getattr(error, "error_code", None), "value", 500)
        return not (isinstance(status, int) and 400 <= status < 500)


def quiet_client_errors() -> None:
    target = logging.getLogger(BENTOML_EXCEPTION_LOGGER)
    if not any(isinstance(f, _DropClientErrorTracebacks) for f in target.filters):
        target.addFilter(_DropClientErrorTracebacks())


def request_id_of(scope: Scope) -> str:
    return scope.get(SCOPE_KEY) or ""


class AccessLog:
    """Outermost middleware: assigns the request id (the client's X-Request-ID when it is
    a safe id, else a new one), echoes it, and logs the outcome as one JSON line."""

    def __init__(self, app: ASGIApp, *, log_probes: bool = False) -> None:
        self.app = app
        self.log_probes = log_probes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _client_request_id(scope) or uuid.uuid4().hex
        scope[SCOPE_KEY] = request_id
        started = time.perf_counter()
        status = 500
        response_bytes = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_bytes
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id.encode()),
                ]
            elif message["type"] == "http.response.body":
                response_bytes += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.log_probes or scope["path"] not in QUIET_PATHS:
                access_logger.info(
                    "request",
                    extra={
                        "fields": {
                            "request_id": request_id,
                            "method": scope["method"],
                            "path": scope["path"],
                            "status": status,
                            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                            "response_bytes": response_bytes,
                            "client": (scope.get("client") or ("", 0))[0],
                        }
                    },
                )


def _client_request_id(scope: Scope) -> str | None:
    """The first X-Request-ID header that is a safe id (`SAFE_REQUEST_ID`), if any."""
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER and SAFE_REQUEST_ID.fullmatch(value):
            return value.decode("ascii")
    return None
