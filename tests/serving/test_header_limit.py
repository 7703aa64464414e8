"""The header bound, on a real uvicorn server in a thread (no BentoML)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from serving.header_limit import HeaderLimitedProtocol
from tests.serving.uvicorn_thread import serving

LIMIT = 8 * 2**10


class _Bounded(HeaderLimitedProtocol):
    max_header_bytes = LIMIT
    linger_seconds = 0.5


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    app = Starlette(routes=[Route("/", lambda _: PlainTextResponse("ok"), methods=["GET", "POST"])])
    with serving(app, http=_Bounded) as chosen:
        yield chosen


def _answers(sock: socket.socket) -> bytes:
    """What the server sent until it closed; a reset after its answer ends it too."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        if not received:
            raise
    return received


def test_normal_requests_pass_also_on_one_kept_alive_connection(port: int):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        header = b"x-pad: " + b"a" * (LIMIT // 2) + b"\r\n"
        for _ in range(3):  # the count starts again with each request
            sock.sendall(b"GET / HTTP/1.1\r\nhost: t\r\n" + header + b"\r\n")
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200"), answer


def test_headers_beyond_the_limit_get_431_and_the_connection_closes(port: int):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: t\r\n")
        sent = 0
        try:
            while sent < 64 * 2**20:  # would be 64 MiB; the server stops it long before
                sock.sendall(b"x-flood: " + b"a" * 16_000 + b"\r\n")
                sent += 16_009
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _answers(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"MAX_HEADER_BYTES" in answer
    assert sent < 8 * 2**20  # refused after the limit plus what was on the wire


def test_one_huge_header_line_is_refused_too(port: int):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /" + b"a" * (4 * LIMIT) + b" HTTP/1.1\r\n")
        assert _answers(sock).startswith(b"HTTP/1.1 431")


def test_after_its_431_the_server_reads_on_before_it_closes(port: int):
    # closing with unread bytes makes the kernel reset the connection, which can destroy
    # the 431 before the client reads it: the server half-closes and drains instead
    request = b"GET / HTTP/1.1\r\nhost: t\r\nx-flood: " + b"a" * (4 * LIMIT) + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):  # until the server's end of sending
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
        for _ in range(3):
            time.sleep(0.05)
            sock.sendall(b"a" * 1024)  # would meet a reset had the server closed
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b""


def test_a_client_that_keeps_sending_after_the_431_is_cut_off(port: int):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: t\r\nx-flood: ")
        sent = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < 64 * 2**20:
                sock.sendall(b"a" * 65536)
                sent += 65536
    assert sent < _Bounded.linger_bytes + 8 * 2**20


def test_a_large_body_in_the_same_read_as_its_headers_is_not_counted(port: int):
    body = b"a" * (16 * LIMIT)
    head = b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n" % len(body)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for _ in range(3):
            sock.sendall(head + body)
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 "), answer
            assert not answer.startswith(b"HTTP/1.1 431"), answer
