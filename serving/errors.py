"""One JSON shape for every error the APIs answer: `{"error": ..., "detail": ...}`."""

from __future__ import annotations

import json
from collections.abc import Iterable

from pydantic_core import InitErrorDetails, PydanticCustomError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

RETRY_AFTER_SECONDS = "1"
MAX_REPORTED_ERRORS = 100
# the last detail of a validation error that lists only the first of its problems; its
# message starts with the total ("1234 problems in all; ...")
TOO_MANY_ERRORS = "too_many_errors"
# an Arrow body that would decode to more than the limits allow (serving.arrow_bodies)
ARROW_TOO_LARGE = "arrow_too_large"


def summarize(details: list[InitErrorDetails], total: int) -> list[InitErrorDetails]:
    """The first `MAX_REPORTED_ERRORS` of `details`, then a summary if `total` is more."""
    listed = details[:MAX_REPORTED_ERRORS]
    if total <= len(listed):
        return listed
    summary = PydanticCustomError(
        TOO_MANY_ERRORS,
        "{total} problems in all; the first {listed} are listed",
        {"total": total, "listed": len(listed)},
    )
    return [*listed, {"type": summary, "loc": ("instances",), "input": None}]


async def respond(send: Send, status: int, body: dict, headers: Iterable = ()) -> None:
    content = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


class ErrorShapes:
    """Gives every API error one JSON shape, `{"error": ..., "detail": ...}`, and status.

    - too many instances is 422 (BentoML answers every validation error with 400);
    - a shed request (BentoML's batcher: 503) says so and carries Retry-After;
    - BentoML's 4xx bodies that are a one-element list become the object itself.
    Only error responses are buffered; successful ones pass through untouched.
    """

    def __init__(self, app: ASGIApp, *, paths: frozenset[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def reshape(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if message["status"] < 400:
                    await send(message)
                else:
                    start = message
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                status, body, headers = shape_error(start["status"], b"".join(chunks))
                replaced = (b"content-length", b"content-type")
                kept = [(k, v) for k, v in start.get("headers", []) if k not in replaced]
                await respond(send, status, body, [*kept, *headers])

        await self.app(scope, receive, reshape)


def shape_error(status: int, raw: bytes) -> tuple[int, dict, list[tuple[bytes, bytes]]]:
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {"error": raw.decode("utf-8", "replace")}
    if isinstance(body, list) and len(body) == 1 and isinstance(body[0], dict):
        body = body[0]
    if not isinstance(body, dict):
        body = {"error": body}
    headers: list[tuple[bytes, bytes]] = []
    details = body.get("detail") if isinstance(body.get("detail"), list) else []
    if details:
        _count_errors(body, details)
    if status == 400 and any(
        d.get("type") == "too_long" and d.get("loc") == ["instances"] for d in details
    ):
        status = 422
        body["error"] = "too many instances in one request"
    elif status == 400 and any(d.get("type") == ARROW_TOO_LARGE for d in details):
        status = 413
    elif status == 503:
        body = {"error": "overloaded: the model cannot answer in time; retry later"}
        headers.append((b"retry-after", RETRY_AFTER_SECONDS.encode()))
    return status, body, headers


def _count_errors(body: dict, details: list) -> None:
    """Adds `error_count`, the total: more than `detail` lists when it was cut short."""
    summary = next(
        (d for d in details if isinstance(d, dict) and d.get("type") == TOO_MANY_ERRORS), None
    )
    if summary is None:
        body["error_count"] = len(details)
        return
    details.remove(summary)
    total = str(summary.get("msg", "")).split(" ", 1)[0]
    body["error_count"] = int(total) if total.isdigit() else len(details)
    body["error"] = (
        f"{body['error_count']} validation errors for Input; the first {len(details)} are listed"
    )
