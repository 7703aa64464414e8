"""Media types of request and response bodies."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Scope

ARROW_STREAM = "application/vnd.apache.arrow.stream"
ARROW_MEDIA_TYPE = ARROW_STREAM.encode()


def media_type_of(scope: Scope) -> bytes:
    """The body's media type; JSON when none is given, as BentoML assumes."""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return value.split(b";")[0].strip().lower()
    return b"application/json"


def accepts_arrow(request: Request) -> bool:
    """The client asked for an Arrow IPC stream answer (`Accept`)."""
    return ARROW_STREAM in request.headers.get("accept", "")
