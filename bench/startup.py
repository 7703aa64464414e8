"""Cold start and resident memory of `bentoml serve service:TabularModel`, before and after load.

    python -m bench.startup [--starts N] [--duration S] [--variant LABEL [ARG ...]] [--out DIR]

Trains the default model into a temporary BENTOML_HOME (or serves `--model TAG` from the
current one). Every variant is a server: `service=MODULE:CLASS` and `dir=PATH` serve another
copy of the service (`bentoml serve --working-dir`), `NAME=VALUE` sets its environment; the
default is one variant, `shipped`, the service as it is. Cold start is timed from the
server command to the first 200 from /readyz, `--starts` times per variant, interleaved.
Then one server per variant stays up: resident memory per worker idle, wrk load (single
rows at 1, 8 and 64 connections, `/predict_batch` of 1,000 and 10,000 rows at 1 and 4),
resident memory right after it and after `--rest` seconds. Writes `startup.json` and
`startup.md` to `--out`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.local import SERVICE, Server

from . import harness, processes
from .processes import ServerProcess
from .systems import System

DEFAULT_VARIANT = ("shipped",)
LOAD_PLAN = replace(
    harness.FULL,
    duration_s=8,
    warmup_s=2,
    cold_starts=3,
    settle_limit_s=30.0,
)
REST_S = 10.0
SETTLE = {"idle_share": harness.SETTLE_IDLE_SHARE, "interval": harness.SETTLE_INTERVAL_S}


@dataclass(frozen=True)
class Variant:
    label: str
    service: str = SERVICE
    working_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [self.service]
        if self.working_dir is not None:
            parts.append(f"from {self.working_dir}")
        parts += [f"{name}={value}" for name, value in self.env.items()]
        return " ".join(parts)


def parse_variant(tokens: Sequence[str]) -> Variant:
    """`LABEL [service=MODULE:CLASS] [dir=PATH] [NAME=VALUE ...]`."""
    label, *settings = tokens
    service, working_dir, env = SERVICE, None, {}
    for token in settings:
        name, equals, value = token.partition("=")
        if not equals:
            raise argparse.ArgumentTypeError(f"{token!r} in variant {label!r} is not NAME=VALUE")
        if name == "service":
            service = value
        elif name == "dir":
            working_dir = Path(value).resolve()
        else:
            env[name] = value
    return Variant(label, service, working_dir, env)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add = parser.add_argument
    add("--starts", type=harness.positive_int, default=LOAD_PLAN.cold_starts,
        help="cold starts per variant (default %(default)s)")  # fmt: skip
    add("--duration", type=harness.positive_int, default=LOAD_PLAN.duration_s, metavar="S",
        help="seconds of load per point, after a warm-up (default %(default)s)")  # fmt: skip
    add("--rest", type=float, default=REST_S, metavar="S",
        help="seconds of rest after the load, then memory again (default %(default)s)")  # fmt: skip
    add("--no-load", action="store_true", help="cold starts and idle memory only")
    add("--variant", action="append", nargs="+", metavar="ARG",
        help="LABEL [service=MODULE:CLASS] [dir=PATH] [NAME=VALUE ...]; repeatable")  # fmt: skip
    add("--model", metavar="TAG", help="serve this model from the current BENTOML_HOME")
    add("--out", type=Path, default=harness.RESULTS, help="results directory")
    add("--keep-work", action="store_true", help="keep the temporary directory")
    return parser.parse_args(argv)


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def as_system(variant: Variant, home: Path, tag: str, work: Path) -> System:
    env = {
        "MODEL_TAG": tag,
        "PAYLOAD_LOG_DIR": str(work / f"payload-logs-{variant.label}"),
        "DRIFT_REPORT_DIR": str(work / "drift-reports"),
        **variant.env,
    }

    def start(log: Path) -> ServerProcess:
        return Server(home, log, service=variant.service, working_dir=variant.working_dir, **env)

    return System(
        key=variant.label,
        label=variant.label,
        description=variant.describe(),
        single_route="/predict",
        batch_route="/predict_batch",
        start=start,
    )


def workers(pid: int) -> list[psutil.Process]:
    found = []
    for process in processes.tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            if any(processes.BENTOML_WORKER in part for part in process.cmdline()):
                found.append(process)
    return found


def cold_start(system: System, log: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    """Start the server (stopped when `stack` closes): seconds to /readyz 200, and when the
    supervisor started its workers (the rest is the workers' own start)."""
    load = load_average()
    started_at = time.time()
    server, seconds = harness.start(system, log, stack)
    spawned = [p.create_time() - started_at for p in workers(server.process.pid)]
    return {
        "server": server,
        "seconds": seconds,
        "workers_spawned_s": min(spawned, default=float("nan")),
        "load_1m": load,
    }


def cold_starts(systems: list[System], count: int, work: Path) -> dict[str, list[dict]]:
    """`count` starts per system, one server at a time, systems interleaved."""
    timings: dict[str, list[dict]] = {s.key: [] for s in systems}
    for attempt in range(count):
        for system in systems:
            with contextlib.ExitStack() as stack:
                timing = cold_start(system, work / f"{system.key}-cold-{attempt}.log", stack)
            del timing["server"]
            timings[system.key].append(timing)
            print(
                f"{system.label}: ready in {timing['seconds']:.2f} s, workers spawned at "
                f"{timing['workers_spawned_s']:.2f} s (load {timing['load_1m']})",
                flush=True,
            )
    return timings


def request_scripts(tag: str, work: Path, sizes: Sequence[int]) -> dict[int, Path]:
    from model import store

    names = store.load(tag).schema.names
    rows = harness.sample_rows(store.load_reference(tag), names, max(sizes))
    return harness.write_scripts(rows, sizes, work)


def under_load(
    systems: list[System], plan: harness.Plan, tag: str, work: Path, loaded: bool, rest_s: float
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """One server per system side by side: memory idle, after every point, right after the
    load and after `rest_s` seconds of rest."""
    scripts = request_scripts(tag, work, (1, *plan.batch_rows)) if loaded else {}
    facts: dict[str, dict[str, Any]] = {}
    records = []
    with contextlib.ExitStack() as stack:
        servers = {s.key: harness.start(s, work / f"{s.key}.log", stack)[0] for s in systems}
        pids = [server.process.pid for server in servers.values()]
        processes.settle(pids, **SETTLE, limit=plan.settle_limit_s)
        for key, server in servers.items():
            facts[key] = {"memory_idle": processes.memory(server.process.pid)}
        points = harness.plan_points(plan) if loaded else []
        for point in points:
            for system in systems:
                server = servers[system.key]
                record = harness.measure_point(
                    system, server, point, scripts[point.rows], plan, pids
                )
                record["per_worker_mib"] = processes.memory(server.process.pid)["per_worker_mib"]
                print(_describe(record), flush=True)
                records.append(record)
        for key, server in servers.items():
            facts[key]["memory_after_load"] = processes.memory(server.process.pid)
        time.sleep(rest_s)
        for key, server in servers.items():
            facts[key]["memory_after_rest"] = processes.memory(server.process.pid)
    return facts, records


def _describe(record: dict[str, Any]) -> str:
    rss = ", ".join(f"{mib:.0f}" for mib in record["per_worker_mib"])
    return (
        f"{record['system']:<16} {record['kind']:<6} rows {record['rows']:>6} "
        f"c {record['concurrency']:>3}: {record['rows_per_s']:10,.0f} rows/s "
        f"p99 {record['p99_ms']:7.1f} ms non-2xx {record['non_2xx']} "
        f"RSS per worker {rss} MiB (load {record['load_1m']})"
    )


def _mib(values: Sequence[float]) -> str:
    return ", ".join(f"{value:.0f}" for value in values)


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Cold start and memory",
        "",
        f"{results['started_at']}, load average {results['load_average_start']} at start, "
        f"{results['load_average_end']} at end; {results['cores']} cores; model "
        f"{results['model']}; {results['plan']['duration_s']} s per load point.",
        "",
        "| variant | cold start median s | cold starts s | workers spawned at s | "
        "load 1 min at starts | RSS per worker MiB, idle | after a point, most | "
        f"after load | after {results['plan']['rest_s']:g} s rest |",
        "|---|---:|---|---|---|---:|---:|---:|---:|",
    ]
    for key, fact in results["variants"].items():
        starts = fact["cold_starts"]
        after_points = [max(r["per_worker_mib"]) for r in results["points"] if r["system"] == key]
        lines.append(
            f"| {key} | {fact['cold_start_median_s']:.2f} | "
            f"{_mib_s([s['seconds'] for s in starts])} | "
            f"{_mib_s([s['workers_spawned_s'] for s in starts])} | "
            f"{', '.join(str(s['load_1m']) for s in starts)} | "
            f"{_mib(fact['memory_idle']['per_worker_mib'])} | "
            f"{max(after_points, default=0):.0f} | "
            f"{_mib(fact['memory_after_load']['per_worker_mib'])} | "
            f"{_mib(fact['memory_after_rest']['per_worker_mib'])} |"
        )
    lines += ["", "Variants:", ""]
    lines += [f"- `{key}`: {fact['description']}" for key, fact in results["variants"].items()]
    return "\n".join(lines) + "\n"


def _mib_s(values: Sequence[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def write(results: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "startup.json", out / "startup.md"]
    written[0].write_text(json.dumps(results, indent=2, default=str) + "\n")
    written[1].write_text(markdown(results))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not args.no_load and shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk (or run with --no-load)")
    variants = [parse_variant(tokens) for tokens in args.variant or [DEFAULT_VARIANT]]
    plan = replace(LOAD_PLAN, duration_s=args.duration, cold_starts=args.starts)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    with harness.work_dir(args.keep_work) as work:
        tag, home = harness.prepare_model(args.model, work)
        chosen = [as_system(variant, home, tag, work) for variant in variants]
        timings = cold_starts(chosen, plan.cold_starts, work)
        facts, records = under_load(chosen, plan, tag, work, not args.no_load, args.rest)
    for system in chosen:
        facts[system.key] |= {
            "description": system.description,
            "cold_starts": timings[system.key],
            "cold_start_median_s": statistics.median(t["seconds"] for t in timings[system.key]),
        }
    results = {
        "started_at": started_at,
        "load_average_start": load_at_start,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
        "model": tag,
        "plan": {**asdict(plan), "load": not args.no_load, "rest_s": args.rest},
        "variants": facts,
        "points": records,
    }
    print(markdown(results), flush=True)
    print("wrote " + ", ".join(str(path) for path in write(results, args.out)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
