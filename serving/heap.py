"""Give the memory a large request freed back to the system once the worker is idle.

glibc's malloc keeps freed memory in its heaps: after a 10,000-row `/predict_batch`
(the JSON body, a dict per row, the frame, the answer) a worker stays about 100 MiB
above its idle size until `malloc_trim` hands the free pages back. `HeapTrimmer` checks
the worker every few seconds from a daemon thread and trims when its resident memory
grew since the last trim and the worker is idle, so trimming never competes with
requests. C libraries without `malloc_trim` (musl, macOS) get no trimmer.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading

logger = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0
MIN_GROWTH_BYTES = 16 * 2**20
IDLE_CPU_SHARE = 0.25
"""Busy below this share of one core over a check interval counts as idle."""
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (the container images are Debian)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    has_trim = hasattr(libc, "malloc_trim") and hasattr(libc, "gnu_get_libc_version")
    return libc if has_trim else None


def resident_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES


def cpu_seconds() -> float:
    """User and system CPU time of the whole process, every thread included."""
    times = os.times()
    return times.user + times.system


class HeapTrimmer:
    def __init__(
        self,
        libc: ctypes.CDLL,
        interval_s: float = CHECK_INTERVAL_S,
        min_growth_bytes: int = MIN_GROWTH_BYTES,
        idle_share: float = IDLE_CPU_SHARE,
    ) -> None:
        self._trim = libc.malloc_trim
        self.interval_s = interval_s
        self.min_growth_bytes = min_growth_bytes
        self.idle_share = idle_share
        self.trims = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="heap-trimmer", daemon=True)

    def start(self) -> HeapTrimmer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def is_due(self, grown_bytes: int, busy_share: float) -> bool:
        return grown_bytes >= self.min_growth_bytes and busy_share < self.idle_share

    def trim(self) -> int:
        """Return free heap pages to the system; the resident bytes after it."""
        self._trim(0)
        self.trims += 1
        return resident_bytes()

    def _watch(self) -> None:
        baseline, cpu = resident_bytes(), cpu_seconds()
        while not self._stopped.wait(self.interval_s):
            now, cpu_before = resident_bytes(), cpu
            cpu = cpu_seconds()
            busy_share = (cpu - cpu_before) / self.interval_s
            baseline = min(baseline, now)
            if self.is_due(now - baseline, busy_share):
                baseline = self.trim()
                logger.debug("trimmed the heap from %d to %d MiB", now >> 20, baseline >> 20)


def start_heap_trimmer() -> HeapTrimmer | None:
    """Trim this process's heap after large requests; None where malloc_trim is missing."""
    libc = glibc()
    if libc is None:
        logger.info("no glibc malloc_trim here: freed heap memory is not trimmed")
        return None
    return HeapTrimmer(libc).start()
