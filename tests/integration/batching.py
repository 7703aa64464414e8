"""Driving the adaptive batcher from the tests: requests sent in bursts, and its metrics.

Clients that each send as soon as their last answer came back do not keep a queue in
front of a fast server: the batcher then rightly sends batches of one or two. A burst of
requests released together does build one, whatever the speed of either side.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import requests

Result = TypeVar("Result")


def batch_stats(server, method: str) -> tuple[float, float]:
    """The sum and count of the batch sizes `method`'s batcher has dispatched."""
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    pattern = (
        r"bentoml_service_adaptive_batch_size_{}{{[^}}]*method_name=\""
        + re.escape(method)
        + r"\"[^}}]*}} (\S+)"
    )
    total = sum(float(v) for v in re.findall(pattern.format("sum"), text))
    count = sum(float(v) for v in re.findall(pattern.format("count"), text))
    return total, count


def in_bursts(
    clients: int, bursts: int, send: Callable[[requests.Session, int], Result]
) -> list[Result]:
    """`send(session, i)` for i below clients * bursts; each `clients` of them start together."""
    barrier = threading.Barrier(clients)
    local = threading.local()

    def one(i: int) -> Result:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        barrier.wait(timeout=60)
        return send(session, i)

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, range(clients * bursts)))
