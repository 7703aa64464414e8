"""A bound on request line plus headers, enforced while they arrive (431 beyond it).

Uvicorn's httptools parser keeps every header byte a client sends until the headers end,
with no limit, so one connection could make a worker hold hundreds of MiB. BentoML starts
uvicorn itself with its automatic protocol choice; `install` puts this bounded protocol in
that choice's place before the server starts. (Uvicorn's h11 protocol has a bound of its
own, 16 KiB, and is left as it is.)
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import uvicorn.protocols.http.auto as auto_protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderLimitedProtocol(HttpToolsProtocol):
    """Httptools' protocol that answers 431 and closes once headers pass `max_header_bytes`.

    Bytes are counted from the start of a request until its headers are complete: the
    parser holds at most the limit plus one socket read.

    After the 431 the server stops sending but lingers, reading and dropping what the
    client still sends, for at most `linger_seconds` and `linger_bytes`: closing with
    unread bytes makes the kernel reset the connection, which can destroy the 431 before
    the client reads it.
    """

    max_header_bytes = 64 * 2**10
    linger_seconds = 2.0
    linger_bytes = 2**20

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reading_headers = True
        self.headers_ended_in_read = False
        self.header_bytes = 0
        self.refused = False
        self.dropped_bytes = 0
        self.linger_end: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self.refused:
            self.dropped_bytes += len(data)
            if self.dropped_bytes > self.linger_bytes:
                self.transport.close()
            return
        counted = self.reading_headers
        self.headers_ended_in_read = False
        super().data_received(data)
        # a read in which headers ended holds body bytes (and perhaps a next request): the
        # next read counts again if a next request's headers are still arriving
        if counted and not self.headers_ended_in_read:
            self.header_bytes += len(data)
            if self.header_bytes > self.max_header_bytes and not self.transport.is_closing():
                self.refuse_headers()

    def on_headers_complete(self) -> None:
        self.reading_headers = False
        self.headers_ended_in_read = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_headers = True
        self.header_bytes = 0

    def refuse_headers(self) -> None:
        body = json.dumps(
            {
                "error": f"request line and headers larger than {self.max_header_bytes} bytes "
                "(MAX_HEADER_BYTES)"
            }
        ).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.refused = True
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.linger_end = self.loop.call_later(self.linger_seconds, self.transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.linger_end is not None:
            self.linger_end.cancel()
        super().connection_lost(exc)


def install(max_header_bytes: int) -> bool:
    """Makes uvicorn's automatic protocol choice the bounded one; False if it uses h11."""
    if not issubclass(auto_protocol.AutoHTTPProtocol, HttpToolsProtocol):
        return False
    HeaderLimitedProtocol.max_header_bytes = max_header_bytes
    auto_protocol.AutoHTTPProtocol = HeaderLimitedProtocol
    return True
