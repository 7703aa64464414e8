"""The heap trimmer: trims only after growth and only when the worker is idle."""

from __future__ import annotations

import pytest

from serving import heap as memory

pytestmark = pytest.mark.skipif(memory.glibc() is None, reason="needs glibc's malloc_trim")


def trimmer(**options: float) -> memory.HeapTrimmer:
    libc = memory.glibc()
    assert libc is not None
    return memory.HeapTrimmer(libc, **options)


def test_due_only_after_growth_while_idle():
    heap = trimmer(min_growth_bytes=16 * 2**20, idle_share=0.25)
    assert heap.is_due(32 * 2**20, busy_share=0.05)
    assert not heap.is_due(8 * 2**20, busy_share=0.05)
    assert not heap.is_due(32 * 2**20, busy_share=0.9)


def freed_below_a_live_block() -> tuple[bytearray, int]:
    """About 80 MiB freed under a block still in use: malloc keeps it until trimmed."""
    blocks = [bytearray(4096) for _ in range(20_000)]
    pinned = bytearray(4096)
    del blocks
    return pinned, memory.resident_bytes()


def test_trim_gives_freed_memory_back():
    pinned, before = freed_below_a_live_block()
    heap = trimmer()
    after = heap.trim()
    assert heap.trims == 1
    assert before - after > 40 * 2**20
    del pinned


def test_watcher_trims_an_idle_process_that_grew():
    heap = trimmer(interval_s=0.05, min_growth_bytes=1, idle_share=1e9)
    heap.start()
    pinned, _ = freed_below_a_live_block()
    try:
        for _ in range(100):
            if heap.trims:
                break
            heap._stopped.wait(0.05)
    finally:
        heap.stop()
    assert heap.trims >= 1
    del pinned


def test_started_where_glibc_is():
    heap = memory.start_heap_trimmer()
    assert heap is not None
    heap.stop()
