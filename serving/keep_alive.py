"""Keep-alive connections recycled, so that a client's connections spread over the workers.

The workers share one listening socket, and a worker that wakes accepts every connection
waiting. A client that opens its connections at once (a pool, a load balancer, a load
generator) may find most of them on one worker, which then does most of the work while
the other idles, for as long as the connections live. So each connection is closed
(`Connection: close` on an answer) once it has carried `max_requests` answers or is
`max_seconds` old; the client opens a new one, and the worker that accepts it is the one
with time to: connections drift to the less busy worker.

A connection is known by its client address and port, from its first answer on; at most
`TRACKED_CONNECTIONS` are remembered, the least recently seen forgotten first (a
forgotten one starts counting again).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

TRACKED_CONNECTIONS: Final = 4096
_CLOSE: Final = (b"connection", b"close")


class RecycleConnections:
    def __init__(self, app: ASGIApp, *, max_requests: float, max_seconds: float) -> None:
        self.app = app
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        # (host, port) -> (monotonic time of its first answer, answers so far)
        self._connections: OrderedDict[tuple[str, int], tuple[float, int]] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or not client or not self._last_answer(tuple(client)):
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), _CLOSE]}
            await send(message)

        await self.app(scope, receive, send_closing)

    def _last_answer(self, client: tuple[str, int]) -> bool:
        """Counts one answer on `client`'s connection; True if it is to be its last."""
        now = time.monotonic()
        first, answers = self._connections.pop(client, (now, 0))
        answers += 1
        if answers >= self.max_requests or now - first >= self.max_seconds:
            return True
        self._connections[client] = (first, answers)
        if len(self._connections) > TRACKED_CONNECTIONS:
            self._connections.popitem(last=False)
        return False
