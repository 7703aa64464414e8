"""Server processes of the benchmark: started on free loopback ports, measured, stopped by pid."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterable
from typing import Protocol

import psutil

BENTOML_WORKER = "_bentoml_impl.worker"
SPAWNED_WORKER = "multiprocessing.spawn"  # MLServer's and KServe's worker processes


class ServerProcess(Protocol):
    url: str
    process: subprocess.Popen[bytes]

    def wait_ready(self, timeout: float = 60.0) -> float: ...

    def stop(self, timeout: float = 20.0) -> int: ...


def tree(pid: int) -> list[psutil.Process]:
    """The process and its descendants that are alive now."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop(server: ServerProcess, timeout: float = 20.0) -> None:
    """Stop the server, then any of its descendants still alive (each by its own pid)."""
    descendants = tree(server.process.pid)[1:]
    server.stop(timeout)
    for process in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(descendants, timeout=5)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU seconds of these processes' trees."""
    total = 0.0
    for pid in pids:
        for process in tree(pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
    return total


def _rss(processes: Iterable[psutil.Process]) -> int:
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total


def _is_worker(process: psutil.Process, marker: str = BENTOML_WORKER) -> bool:
    try:
        return any(marker in part for part in process.cmdline())
    except psutil.NoSuchProcess:
        return False


def memory(pid: int) -> dict[str, float | list[float]]:
    """Resident memory in MiB: per worker process (with its own children) and the whole tree.

    BentoML's workers are the `_bentoml_impl.worker` processes under `bentoml serve`;
    MLServer's and KServe's are the processes their parent spawned with multiprocessing (for
    MLServer, the parent serves HTTP too: it counts in the whole tree only); a server
    without such children (uvicorn) is its own single worker.
    """
    processes = tree(pid)
    workers = [p for p in processes if _is_worker(p)]
    workers = workers or [p for p in processes[1:] if _is_worker(p, SPAWNED_WORKER)]
    workers = workers or processes[:1]
    per_worker = [_rss(tree(worker.pid)) / 2**20 for worker in workers]
    return {
        "workers": len(per_worker),
        "per_worker_mib": per_worker,
        "tree_mib": _rss(processes) / 2**20,
        "processes": len(processes),
    }


def settle(pids: list[int], *, idle_share: float, interval: float, limit: float) -> float:
    """Wait until these servers use less than `idle_share` of one core; returns seconds waited."""
    started = time.monotonic()
    before = cpu_seconds(pids)
    while time.monotonic() - started < limit:
        time.sleep(interval)
        after = cpu_seconds(pids)
        if after - before < idle_share * interval:
            break
        before = after
    return time.monotonic() - started
