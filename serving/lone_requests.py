"""BentoML's adaptive batcher, with one fix: a wait that gathered no batch is not learned.

BentoML's CorkDispatcher holds a request back while it expects others to join, for up to
the average wait of its recent batches (`Optimizer.wait`: how long each batch's first
request waited for the model call). Under a burst that average grows to the model call's
duration. Afterwards a lone request waits about that long, its batch of one records that
wait, and the average sustains itself: the single-client latency stays several times its
pre-burst value as long as traffic stays light (reproduced in
tests/serving/test_lone_requests.py).

`keep_lone_requests_unheld()` makes a batch of one request record no wait, and drop the
learned wait at once: nobody joined, so the wait bought nothing, and the next lone request
is not held. Under load batches have many requests, and the batcher learns its wait as
before from them at its next refresh (every 5 s).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

PATCHED = "_lone_requests_unheld"


def keep_lone_requests_unheld() -> None:
    """Patch BentoML's batching optimizer in this process (idempotent)."""
    from bentoml._internal.marshal.dispatcher import Optimizer

    if getattr(Optimizer.log_outbound, PATCHED, False):
        return
    Optimizer.log_outbound = unheld(Optimizer.log_outbound)


def unheld(log_outbound: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(log_outbound)
    def log(self: Any, n: int, wait: float, duration: float) -> Any:
        if n > 1:
            return log_outbound(self, n, wait, duration)
        logged = log_outbound(self, n, 0.0, duration)
        # after the original, which may refresh the wait from earlier (burst) batches
        self.wait = 0.0
        return logged

    setattr(log, PATCHED, True)
    return log
