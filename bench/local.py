"""A local `bentoml serve` process on a free port, stopped by its own process id.

Used by the integration tests, the benchmarks and the rollout rehearsal."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "service:TabularModel"


def wait_or_kill(process: subprocess.Popen, timeout: float, name: str) -> int:
    """Wait for a process started in its own group; past `timeout` seconds, kill the group."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        logger.warning("%s still running after %ss; killing pid %d", name, timeout, process.pid)
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerCommand:
    """Any HTTP server command on a free loopback port, in its own process group.

    `argv` may contain `{port}`; ready means a 200 from `ready_path`.
    """

    def __init__(
        self, argv: list[str], log_path: Path, env: dict[str, str], ready_path: str = "/readyz"
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_path = ready_path
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [part.format(port=self.port) for part in argv],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: workers stop with it
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from start until the readiness path answered 200."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(f"{self.url}{self.ready_path}", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            wait_or_kill(self.process, timeout, "server")
        self._log.close()
        return self.process.returncode


class Server(ServerCommand):
    """`bentoml serve` of the models in `models_home` (a BENTOML_HOME).

    Each server gets a BentoML home of its own next to its log, sharing only the model
    store: `bentoml serve` clears its home's Prometheus directory at start, which would
    silently break the metrics of any other server running from the same home.
    """

    def __init__(
        self,
        models_home: Path,
        log_path: Path,
        *,
        service: str = SERVICE,
        working_dir: Path | None = None,
        **env: str,
    ) -> None:
        """`service` and `working_dir` serve another copy of the service (benchmarks)."""
        self.home = log_path.parent / f"{log_path.stem}-bentoml-home"
        self.home.mkdir(parents=True, exist_ok=True)
        (models_home / "models").mkdir(parents=True, exist_ok=True)
        if not (self.home / "models").exists():
            (self.home / "models").symlink_to((models_home / "models").resolve())
        bentoml = Path(sys.executable).with_name("bentoml")
        argv = [str(bentoml), "serve", service, "--host", "127.0.0.1", "--port", "{port}"]
        if working_dir is not None:
            argv += ["--working-dir", str(working_dir)]
        super().__init__(argv, log_path, {"BENTOML_HOME": str(self.home), **env})
