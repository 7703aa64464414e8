"""What a rollout rehearsal measured: nginx's access log per traffic step, checks and tables.

Each access-log line starts with the number of the configuration (step) that routed the
request, so a request is counted under the step whose weights chose its upstream, even
when it completes after the next reload. The share is measured over the requests that
started after a settle window following the reload (by start, not completion time: a
slower version would otherwise be under-counted early in a step); failures are counted
over the whole step.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

LINE = re.compile(
    r'^(?P<generation>\d+) (?P<time>[\d.]+) (?P<status>\d{3}) "(?P<addresses>[^"]*)" '
    r'"(?P<upstream_statuses>[^"]*)" (?P<seconds>[\d.]+) (?P<method>\S+) (?P<uri>.*)$'
)


@dataclass(frozen=True)
class LogRecord:
    generation: int
    time: float  # epoch seconds when nginx finished the request ($msec)
    status: int
    upstream: str  # the server that answered last, "" when nginx reached none
    tries: int  # upstream servers tried
    seconds: float  # nginx's $request_time
    method: str
    uri: str

    @property
    def started(self) -> float:
        return self.time - self.seconds


@dataclass(frozen=True)
class StepPlan:
    index: int
    label: str
    new_percent: int
    started_at: float  # epoch seconds: load start for the first step, else reload done


@dataclass
class StepResult:
    index: int
    label: str
    configured_new_percent: int
    started_at: float = 0.0  # epoch seconds: load start, or when the reload was running
    requests: int = 0  # routed by this step's configuration while the load ran
    measured: int = 0  # of those, started after the settle window
    to_new: int = 0
    to_old: int = 0
    observed_new_percent: float | None = None
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # status -> count
    carried_over: int = 0  # requests of the previous step that completed during this one
    retried: int = 0  # requests nginx passed to a second server
    p50_ms: float | None = None  # nginx's request time of the step's 2xx answers
    p99_ms: float | None = None
    share_checked: bool = False
    share_ok: bool = True
    share_note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def last_upstream(addresses: str) -> tuple[str, int]:
    """The address that answered and how many were tried, from `$upstream_addr`."""
    tried = [a.strip() for a in re.split(r"[,:]\s", addresses) if a.strip() not in ("", "-")]
    return (tried[-1] if tried else ""), len(tried)


def percentile_ms(seconds: list[float], percent: float) -> float:
    ordered = sorted(seconds)
    index = min(len(ordered) - 1, round(percent / 100 * (len(ordered) - 1)))
    return round(ordered[index] * 1000, 1)


def parse_line(line: str) -> LogRecord | None:
    match = LINE.match(line.rstrip("\n"))
    if match is None:
        return None
    upstream, tries = last_upstream(match["addresses"])
    return LogRecord(
        generation=int(match["generation"]),
        time=float(match["time"]),
        status=int(match["status"]),
        upstream=upstream,
        tries=tries,
        seconds=float(match["seconds"]),
        method=match["method"],
        uri=match["uri"],
    )


def read_access_log(path: Path, uri: str = "/predict") -> list[LogRecord]:
    records, unparsed = [], 0
    with path.open(errors="replace") as lines:
        for line in lines:
            record = parse_line(line)
            if record is None:
                unparsed += 1
            elif record.uri == uri:
                records.append(record)
    if unparsed:
        logger.warning("%d access-log lines of %s not understood", unparsed, path)
    return records


def summarize_step(
    records: list[LogRecord],
    plan: StepPlan,
    *,
    previous_generation: int | None,
    load_window: tuple[float, float],
    settle_seconds: float,
    old_address: str,
    new_address: str,
) -> StepResult:
    begin, end = load_window
    result = StepResult(plan.index, plan.label, plan.new_percent, plan.started_at)
    failures: Counter[str] = Counter()
    latencies: list[float] = []
    for record in records:
        if not begin <= record.time < end:
            continue
        if record.generation == previous_generation and record.time >= plan.started_at:
            result.carried_over += 1
        if record.generation != plan.index:
            continue
        result.requests += 1
        result.retried += record.tries > 1
        # a request to a server marked down is a routing error, settled or not
        down = {0: new_address, 100: old_address}.get(plan.new_percent)
        if record.upstream == down:
            result.share_ok = False
        if not 200 <= record.status < 300:
            failures[str(record.status)] += 1
            continue
        latencies.append(record.seconds)
        if record.started >= plan.started_at + settle_seconds:
            result.measured += 1
            result.to_new += record.upstream == new_address
            result.to_old += record.upstream == old_address
    result.failed = sum(failures.values())
    if latencies:
        result.p50_ms, result.p99_ms = percentile_ms(latencies, 50), percentile_ms(latencies, 99)
    result.failures = dict(failures)
    answered = result.to_new + result.to_old
    if answered:
        result.observed_new_percent = round(100.0 * result.to_new / answered, 2)
    return result


def check_share(result: StepResult, *, tolerance: float, min_requests: int) -> None:
    """Set the step's share verdict: exact at 0 and 100 %, within `tolerance` points else."""
    if result.configured_new_percent in (0, 100):
        result.share_checked = result.requests > 0
        result.share_note = "exact (other version down)"
        if not result.share_ok:
            result.share_note = "requests reached the version marked down"
        return
    if result.measured < min_requests or result.observed_new_percent is None:
        result.share_note = f"not checked: {result.measured} < {min_requests} measured requests"
        return
    result.share_checked = True
    miss = abs(result.observed_new_percent - result.configured_new_percent)
    result.share_ok = miss <= tolerance
    result.share_note = f"off by {miss:.1f} points (tolerance {tolerance:g})"


def problems(steps: list[StepResult], load: dict) -> list[str]:
    """Every reason the rehearsal failed; empty when it passed."""
    found = []
    for step in steps:
        if step.failed:
            found.append(f"step {step.label}: {step.failed} failed requests {step.failures}")
        if not step.share_ok:
            found.append(
                f"step {step.label}: observed {step.observed_new_percent} % new against "
                f"{step.configured_new_percent} % configured ({step.share_note})"
            )
        if step.requests == 0:
            found.append(f"step {step.label}: no requests were logged")
    if load.get("socket_errors"):
        found.append(
            "wrk socket errors: connect {connect_errors}, read {read_errors}, "
            "write {write_errors}, timeout {timeouts}".format(**load)
        )
    if load.get("non_2xx"):
        found.append(f"wrk counted {load['non_2xx']} non-2xx responses")
    return found


HEADERS = (
    "step",
    "configured % new",
    "observed % new",
    "requests",
    "measured",
    "failed",
    "share",
)


def rows(steps: list[StepResult], load: dict) -> list[tuple[str, ...]]:
    """One row per step, then the whole run, whose failures include wrk's socket errors."""

    def observed(step: StepResult) -> str:
        return "-" if step.observed_new_percent is None else f"{step.observed_new_percent:.1f}"

    def verdict(step: StepResult) -> str:
        if not step.share_checked:
            return "not checked"
        return "ok" if step.share_ok else "MISSED"

    return [
        (
            step.label,
            str(step.configured_new_percent),
            observed(step),
            str(step.requests),
            str(step.measured),
            str(step.failed),
            verdict(step),
        )
        for step in steps
    ] + [
        (
            "whole run",
            "-",
            "-",
            str(sum(step.requests for step in steps)),
            str(sum(step.measured for step in steps)),
            str(sum(step.failed for step in steps) + load["socket_errors"]),
            "ok" if all(step.share_ok for step in steps) else "MISSED",
        )
    ]


def text_table(steps: list[StepResult], load: dict) -> str:
    table = [HEADERS, *rows(steps, load)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADERS))]

    def line(row: tuple[str, ...]) -> str:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        return "  ".join(cells)

    return "\n".join([line(HEADERS), *(line(row) for row in table[1:])])


def markdown(report: dict, steps: list[StepResult]) -> str:
    settings = report["settings"]
    load = report["load"]
    lines = [
        f"# Rollout rehearsal: {report['versions']['old']['tag']} → "
        f"{report['versions']['new']['tag']}",
        "",
        f"{'PASSED' if report['passed'] else 'FAILED'}, {report['generated_at']}: "
        f"{report['nginx']}, {report['wrk']}, {settings['connections']} connections "
        f"({'kept alive' if settings['client_keepalive'] else 'one request each'}), "
        f"{settings['step_seconds']:g} s per step, {settings['cores']} cores; "
        f"{load['requests']} requests at {load['requests_per_s']:.0f} req/s, "
        f"{load['socket_errors']} socket errors.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|---|" + "---:|" * (len(HEADERS) - 2) + "---|",
        *("| " + " | ".join(row) + " |" for row in rows(steps, load)),
        "",
        f"*requests*: routed by the step's nginx configuration; *measured*: those started "
        f"more than {settings['settle_seconds']:g} s after the configuration was running "
        f"(the observed share is computed over them); *failed*: non-2xx answers over the "
        f"whole step, and for the whole run also wrk's socket errors (connect, read, write, "
        f"timeout), which wrk does not attribute to a step. 0 % and 100 % steps must be "
        f"exact (the other version is `down`); "
        f"other steps must be within {settings['tolerance']:g} points when at least "
        f"{settings['min_requests']} requests were measured.",
    ]
    if report["problems"]:
        lines += ["", "Problems:", "", *(f"- {problem}" for problem in report["problems"])]
    return "\n".join(lines) + "\n"
