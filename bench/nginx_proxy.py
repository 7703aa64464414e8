"""A private nginx on a loopback port with a weighted upstream, reloaded gracefully.

nginx runs in a prefix of its own (config, pid file, logs and temporary files in one
directory), in the foreground as a child of this process and in its own process group, so
it never touches a system nginx and is always stopped by its own pid.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .local import wait_or_kill

logger = logging.getLogger(__name__)

TEMPLATE = Path(__file__).resolve().parent / "nginx" / "rehearsal.conf.template"
PLACEHOLDER = re.compile(r"@[A-Z_]+@")


class NginxError(RuntimeError):
    """nginx is missing, refused its configuration or did not start, reload or stop."""


@dataclass(frozen=True)
class Backend:
    """One upstream server; weight 0 means it takes no traffic (`down`)."""

    address: str
    weight: int


def split_weights(new_percent: int) -> tuple[int, int]:
    """(old, new) upstream weights for a share of `new_percent` % to the new version."""
    if not 0 <= new_percent <= 100:
        raise ValueError(f"share must be within 0..100, not {new_percent}")
    divisor = math.gcd(100 - new_percent, new_percent)
    return (100 - new_percent) // divisor, new_percent // divisor


def upstream_servers(backends: list[Backend]) -> str:
    if not any(backend.weight > 0 for backend in backends):
        raise ValueError("at least one upstream server needs a positive weight")
    lines = [
        f"        server {b.address} weight={b.weight};"
        if b.weight > 0
        else f"        server {b.address} down;"
        for b in backends
    ]
    return "\n".join(lines)


def render(
    template: str,
    *,
    prefix: Path,
    port: int,
    generation: int,
    backends: list[Backend],
    keepalive_seconds: int,
) -> str:
    values = {
        "@PREFIX@": str(prefix),
        "@PORT@": str(port),
        "@GENERATION@": str(generation),
        "@SERVERS@": upstream_servers(backends),
        "@KEEPALIVE@": f"{keepalive_seconds}s",
    }
    unknown = set(PLACEHOLDER.findall(template)) - values.keys()
    if unknown:
        raise NginxError(f"unknown placeholders in the nginx template: {sorted(unknown)}")
    return PLACEHOLDER.sub(lambda match: values[match.group(0)], template)


def version() -> str:
    """`nginx/1.22.1`, from `nginx -v`."""
    binary = require()
    run = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    return (run.stderr or run.stdout).strip().removeprefix("nginx version: ")


def find() -> str | None:
    """nginx on PATH, else where Debian installs it (/usr/sbin is not on every PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


def require() -> str:
    path = find()
    if path is None:
        raise NginxError("nginx not found; apt-get install -y --no-install-recommends nginx")
    return path


def child_pids(parent: int) -> set[int]:
    """Processes whose parent is `parent`, from /proc."""
    children = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name in parentheses may contain spaces: fields follow the last ')'
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == parent:
            children.add(int(entry.name))
    return children


class Nginx:
    def __init__(
        self, prefix: Path, port: int, *, keepalive_seconds: int = 0, template: Path = TEMPLATE
    ) -> None:
        self.binary = require()
        self.prefix = prefix
        self.port = port
        self.keepalive_seconds = keepalive_seconds
        self.url = f"http://127.0.0.1:{port}"
        self.template = template.read_text()
        self.conf = prefix / "conf" / "nginx.conf"
        self.error_log = prefix / "logs" / "error.log"
        self.access_log = prefix / "logs" / "access.log"
        self.pid_file = prefix / "nginx.pid"
        self.process: subprocess.Popen[bytes] | None = None
        for sub in ("conf", "logs", "tmp"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        # a master started as root runs its workers as an unprivileged user: let it through
        for directory in (prefix, prefix / "tmp"):
            directory.chmod(0o711)

    def _command(self, *args: str) -> list[str]:
        return [
            self.binary,
            "-p",
            f"{self.prefix}/",
            "-c",
            str(self.conf),
            "-e",
            str(self.error_log),
            *args,
        ]

    def _run(self, *args: str) -> None:
        run = subprocess.run(
            self._command(*args), capture_output=True, text=True, timeout=30, check=False
        )
        if run.returncode != 0:
            raise NginxError(f"nginx {' '.join(args)} failed: {run.stderr.strip()}")

    def configure(self, generation: int, backends: list[Backend]) -> None:
        """Write the configuration of one step and have nginx check it (`nginx -t`)."""
        text = render(
            self.template,
            prefix=self.prefix,
            port=self.port,
            generation=generation,
            backends=backends,
            keepalive_seconds=self.keepalive_seconds,
        )
        self.conf.write_text(text)
        (self.prefix / "conf" / f"step-{generation}.conf").write_text(text)
        self._run("-t", "-q")

    def start(self) -> None:
        """Start the master (it starts its worker); `wait_ready()` waits for it."""
        with (self.prefix / "logs" / "stderr.log").open("wb") as stderr:
            self.process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: workers stop with it
            )
        logger.info("nginx master pid %d on %s, prefix %s", self.process.pid, self.url, self.prefix)

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise NginxError(f"nginx is not running; see {self.error_log}")
            if self.pid_file.is_file() and self.workers() and self._accepts():
                return
            time.sleep(0.05)
        raise NginxError(f"nginx not listening after {timeout}s; see {self.error_log}")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def workers(self) -> set[int]:
        return child_pids(self.process.pid) if self.running() else set()

    def reload(self, generation: int, backends: list[Backend], timeout: float = 15.0) -> float:
        """Switch to a new configuration gracefully; returns when its worker is running.

        `nginx -s reload` signals the master, which starts workers with the new configuration
        and lets the old ones finish the requests they are serving before they exit; their
        idle keepalive client connections are closed at once (see the template).
        Returns the epoch time at which a new worker was seen.
        """
        if not self.running():
            raise NginxError(f"nginx is not running; see {self.error_log}")
        self.configure(generation, backends)
        before = self.workers()
        self._run("-s", "reload")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.workers() - before:
                logger.info("nginx reloaded: configuration %d", generation)
                return time.time()
            time.sleep(0.02)
        raise NginxError(f"no new nginx worker {timeout}s after reload; see {self.error_log}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """Graceful quit (`nginx -s quit`), then the process group by pid if it hangs."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            try:
                self._run("-s", "quit")
            except (NginxError, subprocess.TimeoutExpired) as exc:
                logger.warning(
                    "nginx -s quit failed (%s); signalling pid %d", exc, self.process.pid
                )
                os.killpg(self.process.pid, signal.SIGQUIT)
            wait_or_kill(self.process, timeout, "nginx")
        return self.process.returncode
