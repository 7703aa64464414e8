"""BentoML's own dispatcher after a burst: with the fix, light traffic unlearns the wait.

A real CorkDispatcher batches a model whose call takes 4 ms plus 0.3 ms a request. A burst
of 64 concurrent clients teaches it to hold requests back; then lone requests follow. The
optimizer's learned wait, which decides how long a lone request is held, is read after a
refresh: no timing thresholds, only what the batcher learned.
"""

from __future__ import annotations

import asyncio
import time
import types
from collections.abc import Awaitable, Callable, Sequence

import pytest
from bentoml._internal.marshal.dispatcher import CorkDispatcher, Optimizer

from serving.lone_requests import PATCHED, keep_lone_requests_unheld, unheld

Call = Callable[[int], Awaitable[int]]


def model(batch: Sequence[int]) -> list[int]:
    time.sleep(0.004 + 0.0003 * len(batch))
    return list(batch)


async def lone(call: Call, count: int) -> None:
    for _ in range(count):
        await call(1)


async def burst(call: Call, clients: int, seconds: float) -> None:
    end = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < end:
            await call(1)

    await asyncio.gather(*(client() for _ in range(clients)))


def learned_waits(fixed: bool) -> tuple[float, float, float]:
    """The optimizer's wait (s) right after a burst, after one lone request, and after 60."""

    async def scenario() -> tuple[float, float, float]:
        dispatcher = CorkDispatcher(1000, 32, fallback=lambda: None, get_batch_size=lambda x: 1)
        log = Optimizer.log_outbound if fixed else Optimizer.log_outbound.__wrapped__
        dispatcher.optimizer.log_outbound = types.MethodType(log, dispatcher.optimizer)
        call = dispatcher(model)
        await lone(call, 20)  # the dispatcher's own training requests
        await burst(call, 64, 2.0)
        dispatcher.optimizer.trigger_refresh()
        after_burst = dispatcher.optimizer.wait
        await lone(call, 1)
        after_one = dispatcher.optimizer.wait
        await lone(call, 60)  # more than the optimizer keeps (50)
        dispatcher.optimizer.trigger_refresh()
        dispatcher.shutdown()
        return after_burst, after_one, dispatcher.optimizer.wait

    return asyncio.run(scenario())


@pytest.fixture(scope="module", autouse=True)
def patched() -> None:
    keep_lone_requests_unheld()


def test_patch_is_applied_once() -> None:
    first = Optimizer.log_outbound
    keep_lone_requests_unheld()
    assert Optimizer.log_outbound is first
    assert getattr(first, PATCHED)
    assert not getattr(first.__wrapped__, PATCHED, False)


def test_unfixed_batcher_keeps_holding_lone_requests_after_a_burst() -> None:
    after_burst, after_one, after_lone = learned_waits(fixed=False)
    assert after_burst > 0.002
    assert after_one > 0.002  # the lone request got no company, and the wait stays
    # every lone request waited about the learned wait and taught it again
    assert after_lone > after_burst / 2


def test_fixed_batcher_unlearns_the_wait_under_light_traffic() -> None:
    after_burst, after_one, after_lone = learned_waits(fixed=True)
    assert after_burst > 0.002  # bursts still teach it to batch
    assert after_one == 0.0  # the first lone request ends the holding
    assert after_lone == 0.0


def test_only_batches_of_one_lose_their_wait() -> None:
    recorded: list[tuple[int, float, float]] = []

    def log(self: types.SimpleNamespace, n: int, wait: float, duration: float) -> None:
        recorded.append((n, wait, duration))
        self.wait = 0.5  # what a refresh over earlier batches could set

    optimizer = types.SimpleNamespace(wait=0.02)
    fixed = unheld(log)
    fixed(optimizer, 2, 0.02, 0.005)
    assert optimizer.wait == 0.5
    fixed(optimizer, 1, 0.02, 0.005)
    assert optimizer.wait == 0.0
    assert recorded == [(2, 0.02, 0.005), (1, 0.0, 0.005)]
