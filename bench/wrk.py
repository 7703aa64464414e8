"""wrk as a load generator: a Lua script posting one JSON body, and its report parsed."""

from __future__ import annotations

import json
import re
import resource
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
SOCKET_ERRORS = ("connect", "read", "write", "timeout")


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0
    threads: int = 1

    @property
    def ok_requests(self) -> int:
        return max(self.requests - self.non_2xx, 0)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def version() -> str:
    run = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False)
    lines = (run.stdout + run.stderr).splitlines()
    return lines[0].split(" Copyright")[0].strip() if lines else "unknown"


def post_script(
    path: Path, body_path: Path, content_type: str = "application/json", accept: str = "*/*"
) -> Path:
    """A wrk script that posts the body read from `body_path` on every request."""
    path.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["Content-Type"] = {json.dumps(content_type)}\n'
        f'wrk.headers["Accept"] = {json.dumps(accept)}\n'
        f'local file = assert(io.open({json.dumps(str(body_path))}, "rb"))\n'
        'wrk.body = file:read("*a")\n'
        "file:close()\n"
    )
    return path


def to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * UNITS_MS[match.group(2)]


def _search(pattern: str, output: str) -> re.Match[str]:
    match = re.search(pattern, output, re.M)
    if match is None:
        raise ValueError(f"wrk output has no match for {pattern!r}:\n{output}")
    return match


def parse(output: str) -> WrkResult:
    """wrk's report with `--latency`: counts, rate, percentiles, errors."""
    # wrk pads one-letter units ("1.20s ") with a trailing space
    percentiles = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, re.M))
    counted = _search(r"(\d+) requests in ([\d.]+\w+),", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)$", output, re.M)
    socket_errors = {name: 0 for name in SOCKET_ERRORS}
    if errors is not None:
        socket_errors |= {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", errors.group(1))}
    return WrkResult(
        requests=int(counted.group(1)),
        duration_s=to_ms(counted.group(2)) / 1e3,
        requests_per_s=float(_search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        p50_ms=to_ms(percentiles.get("50", "0us")),
        p75_ms=to_ms(percentiles.get("75", "0us")),
        p90_ms=to_ms(percentiles.get("90", "0us")),
        p99_ms=to_ms(percentiles.get("99", "0us")),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
    )


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(
    url: str,
    script: Path,
    *,
    connections: int,
    duration_s: int,
    threads: int = 1,
    timeout_s: int = 60,
) -> WrkResult:
    """Drive `url` for `duration_s` seconds; the result carries wrk's own CPU seconds."""
    threads = max(1, min(threads, connections))
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s}s",
        f"--timeout={timeout_s}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    # wrk is the only child reaped during the run, so the children's CPU delta is its own
    cpu_before = _children_cpu_s()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + timeout_s + 30, check=False
    )
    cpu_s = _children_cpu_s() - cpu_before
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}")
    parsed = parse(done.stdout)
    return WrkResult(**{**asdict(parsed), "cpu_s": cpu_s, "threads": threads})
