"""Keep-alive recycling, on a real uvicorn server in a thread (no BentoML)."""

from __future__ import annotations

import asyncio
import http.client
import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from serving import keep_alive
from serving.keep_alive import RecycleConnections
from tests.serving.uvicorn_thread import serving

MAX_REQUESTS = 3
MAX_SECONDS = 0.5


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    app = Starlette(routes=[Route("/", lambda _: PlainTextResponse("ok"))])
    recycled = RecycleConnections(app, max_requests=MAX_REQUESTS, max_seconds=MAX_SECONDS)
    with serving(recycled) as chosen:
        yield chosen


def answers(connection: http.client.HTTPConnection, count: int) -> list[str | None]:
    """The Connection header of `count` answers on one connection (None: kept alive)."""
    headers = []
    for _ in range(count):
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.read() == b"ok"
        headers.append(response.getheader("connection"))
    return headers


def test_a_connection_is_closed_after_its_last_answer(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    assert answers(connection, MAX_REQUESTS) == [None] * (MAX_REQUESTS - 1) + ["close"]
    assert connection.sock is None  # closed after that answer
    # http.client opens a new connection on its own, counted from the start
    assert answers(connection, MAX_REQUESTS) == [None] * (MAX_REQUESTS - 1) + ["close"]
    connection.close()


def test_an_old_connection_is_closed_after_its_next_answer(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    assert answers(connection, 1) == [None]
    time.sleep(MAX_SECONDS + 0.1)
    assert answers(connection, 1) == ["close"]
    connection.close()


def test_connections_are_counted_apart(port):
    first = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    second = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    assert answers(first, 1) + answers(second, 1) + answers(first, 1) == [None, None, None]
    assert answers(first, 1) == ["close"]
    assert answers(second, 1) == [None]
    first.close()
    second.close()


def test_at_most_so_many_connections_are_remembered(monkeypatch):
    monkeypatch.setattr(keep_alive, "TRACKED_CONNECTIONS", 2)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    recycled = RecycleConnections(app, max_requests=10, max_seconds=60)

    async def answer_five() -> None:
        for client_port in range(5):
            scope = {"type": "http", "client": ("10.0.0.1", client_port)}
            await recycled(scope, None, _discard)

    asyncio.run(answer_five())
    assert list(recycled._connections) == [("10.0.0.1", 3), ("10.0.0.1", 4)]


async def _discard(message):
    pass
