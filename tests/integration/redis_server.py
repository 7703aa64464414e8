"""Real processes for the stream consumer's tests and benchmark: a redis-server on a free
loopback port with its own directory, and `python -m serving.stream`; both stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from bench.local import ROOT, free_port, wait_or_kill

REDIS_SERVER = "redis-server"
INSTALL = "apt-get install redis-server"


def require_redis_server() -> str:
    """The redis-server binary, or a skip naming the install command (a failure under CI)."""
    binary = shutil.which(REDIS_SERVER) or shutil.which(REDIS_SERVER, path="/usr/sbin:/usr/bin")
    if binary is None:
        message = f"redis-server is not installed ({INSTALL})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must install it (.ci/run)", pytrace=False)
        pytest.skip(message)
    return binary


class RedisServer:
    """`redis-server` in `directory`; `appendonly` turns on AOF with an fsync per write."""

    def __init__(self, directory: Path, *, appendonly: bool = False, fsync: str = "always") -> None:
        self.binary = require_redis_server()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.fsync = fsync
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.fsync,
            "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, start_new_session=True)
        client = self.client()
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, redis.BusyLoadingError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start:\n{self.log()}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (Redis writes its AOF and exits), then SIGKILL past `timeout`."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            wait_or_kill(self.process, timeout, "redis-server")
        self.process = None


class ConsumerProcess:
    """`python -m serving.stream` in its own process group, its log in a file."""

    def __init__(self, name: str, work: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = work / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serving.stream"],
            cwd=ROOT,
            env={**os.environ, "STREAM_CONSUMER": name, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_reading(self, timeout: float = 120.0) -> None:
        """Until the model is loaded and the consumer reads its stream."""
        deadline = time.monotonic() + timeout
        while "reading" not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"consumer {self.name} is not reading:\n{self.log()}")
            time.sleep(0.1)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            wait_or_kill(self.process, timeout, self.name)
        self._log.close()
        return self.process.returncode
