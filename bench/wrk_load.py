"""Constant load from wrk: one JSON body POSTed over and over, stopped by its own pid."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from .local import wait_or_kill

logger = logging.getLogger(__name__)


class WrkError(RuntimeError):
    """wrk is missing, exited early or printed no summary."""


@dataclass(frozen=True)
class WrkSummary:
    requests: int
    seconds: float
    requests_per_s: float
    non_2xx: int
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    def to_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "socket_errors": self.socket_errors}


def require() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkError("wrk not found; apt-get install -y --no-install-recommends wrk")
    return path


def version() -> str:
    """`wrk 4.1.0`, from the first line of `wrk -v`."""
    run = subprocess.run([require(), "-v"], capture_output=True, text=True, check=False)
    first = (run.stdout or run.stderr).splitlines()
    return first[0].split(" [")[0].strip() if first else "wrk"


def post_script(body: str, path: str = "/predict") -> str:
    """A wrk Lua script POSTing `body` (JSON) to `path` on every request."""
    if "]==]" in body:
        raise ValueError("body must not contain the Lua string terminator ]==]")
    return (
        "-- POST the same JSON body on every request\n"
        'wrk.method = "POST"\n'
        f'wrk.path = "{path}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{body}]==]\n"
    )


def parse_summary(output: str) -> WrkSummary:
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if done is None:
        raise WrkError(f"no summary in wrk's output:\n{output}")
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[done.group(3)]
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    connect, read, write, timeout = map(int, errors.groups()) if errors else (0, 0, 0, 0)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    return WrkSummary(
        requests=int(done.group(1)),
        seconds=float(done.group(2)) * unit,
        requests_per_s=float(rate.group(1)) if rate else 0.0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        connect_errors=connect,
        read_errors=read,
        write_errors=write,
        timeouts=timeout,
    )


class Wrk:
    """wrk in its own process group, writing its report to `output`.

    `max_seconds` bounds the run even if it is never stopped; `stop()` ends it earlier
    with SIGINT, on which wrk prints its report as at the end of its duration.
    """

    def __init__(
        self,
        url: str,
        script: Path,
        output: Path,
        *,
        connections: int,
        threads: int,
        max_seconds: int,
        timeout_seconds: float,
    ) -> None:
        self.output = output
        self.command = [
            require(),
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{max_seconds}s",
            f"--timeout={timeout_seconds:g}s",
            "-s",
            str(script),
            url,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        logger.info("wrk pid %d: %s", self.process.pid, " ".join(self.command[1:]))

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            wait_or_kill(self.process, timeout, "wrk")
        return self.process.returncode

    def summary(self) -> WrkSummary:
        if self.running():
            raise WrkError("wrk is still running")
        return parse_summary(self.output.read_text(errors="replace"))
