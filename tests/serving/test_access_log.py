"""Request ids: a client's X-Request-ID is kept only when it is a short safe id."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from starlette.responses import PlainTextResponse

from serving.access_log import AccessLog, access_logger, request_id_of

GENERATED = re.compile(r"[0-9a-f]{32}")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.fields.append(record.fields)


@pytest.fixture
def access_lines():
    handler = Lines()
    level = access_logger.level
    access_logger.addHandler(handler)
    access_logger.setLevel(logging.INFO)
    yield handler.fields
    access_logger.removeHandler(handler)
    access_logger.setLevel(level)


def answer_with(headers: list[tuple[bytes, bytes]]) -> tuple[str, str]:
    """The id the response echoes and the id the app saw, for raw request headers."""
    seen: list[str] = []

    async def app(scope, receive, send) -> None:
        seen.append(request_id_of(scope))
        await PlainTextResponse("ok")(scope, receive, send)

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[dict] = []

    async def send(message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": headers}
    asyncio.run(AccessLog(app)(scope, receive, send))
    echoed = dict(sent[0]["headers"])[b"x-request-id"].decode("ascii")
    return echoed, seen[0]


@pytest.mark.parametrize(
    "value",
    [b"abc-1", b"7e15d07e", b"Z", b"req:2026-11-25T12.13_01", b"a" * 128],
)
def test_a_safe_client_id_is_kept_logged_and_echoed(value, access_lines):
    echoed, seen = answer_with([(b"x-request-id", value)])
    assert echoed == seen == value.decode()
    assert access_lines[-1]["request_id"] == value.decode()


@pytest.mark.parametrize(
    "value",
    [
        b"a\tb",
        b"a\nb",
        b"a\r\nX-Injected: 1",
        b"../../etc",
        b"a/../../b",
        b"..",
        b"x" * 10_000,
        b"a" * 129,
        "caf\u00e9".encode(),
        b"\xff\xfe\x00",
        b"",
        b" padded",
        b"-leading-dash",
        b"a b",
        b"a\x00b",
    ],
)
def test_an_unsafe_client_id_is_replaced_by_a_generated_one(value, access_lines):
    echoed, seen = answer_with([(b"x-request-id", value)])
    assert GENERATED.fullmatch(echoed) and echoed == seen
    assert access_lines[-1]["request_id"] == echoed


def test_without_a_client_id_each_request_gets_a_new_one():
    first, _ = answer_with([])
    second, _ = answer_with([(b"other", b"abc")])
    assert GENERATED.fullmatch(first) and GENERATED.fullmatch(second) and first != second


def test_the_first_safe_client_id_counts():
    headers = [(b"x-request-id", b"../x"), (b"x-request-id", b"fine"), (b"x-request-id", b"b")]
    assert answer_with(headers) == ("fine", "fine")
