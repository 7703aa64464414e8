"""Ours against plain FastAPI, default BentoML, MLServer and KServe, on the same model.

    python -m bench.harness [--quick] [--model TAG] [--payload-log on|off|both] [--out DIR]

Trains the default model into a temporary BENTOML_HOME (or serves `--model TAG` from the
current one), installs the peers' virtualenvs if needed, starts every system on a free
loopback port, checks each answers one row with the model's own probabilities, measures a
single client's latency before and after a burst (ours and FastAPI), drives each system
with wrk at every point (single-row requests at several concurrencies, then batch
requests), measures the model's own rows/s in process, cold start and resident memory,
computes the goals, and writes `serving.json`, `serving.md` and `serving.png` to `--out`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import psutil
import requests

from bench.local import ROOT
from serving.arrow_bodies import write_instances
from serving.media import ARROW_STREAM

from . import bodies, goals, in_process, peer_venvs, processes, report, systems, wrk
from .processes import ServerProcess
from .systems import System

RESULTS = ROOT / "bench" / "results"
LIBRARIES = (
    "bentoml",
    "fastapi",
    "uvicorn",
    "starlette",
    "pydantic",
    "scikit-learn",
    "numpy",
    "pandas",
    "psutil",
    "matplotlib",
)
# settings that change what is measured; secrets are recorded as set, never by value
RECORDED_ENV = (
    "WORKERS",
    "BATCH_MAX_SIZE",
    "BATCH_MAX_LATENCY_MS",
    "PREDICT_MAX_ROWS",
    "PREDICT_BATCH_MAX_ROWS",
    "MAX_IN_FLIGHT",
    "MAX_BODY_BYTES",
    "ACCESS_LOG",
    "PAYLOAD_LOG_SAMPLE_RATE",
    "PAYLOAD_LOG_QUEUE",
    "DRIFT_INTERVAL_MINUTES",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "MODEL_RUNTIME",
)
SECRET_ENV = ("API_KEYS", "DRIFT_WEBHOOK_URL")
READY_TIMEOUT_S = 180.0
SETTLE_IDLE_SHARE = 0.1
SETTLE_INTERVAL_S = 0.5

Kind = Literal["single", "batch"]


@dataclass(frozen=True)
class Plan:
    duration_s: int
    warmup_s: int
    concurrency: tuple[int, ...]
    batch_rows: tuple[int, ...]
    batch_concurrency: tuple[int, ...]
    cold_starts: int
    raw_seconds: float
    settle_limit_s: float
    wrk_threads: int
    wrk_timeout_s: int
    probe_s: int  # single client before and after the burst (bench.after_burst)
    burst_s: int
    rest_s: int
    v2_rounds: int  # ours v2 ÷ ours /predict in rounds taking turns (bench.v2_ratio)
    v2_round_s: int


FULL = Plan(
    duration_s=15,
    warmup_s=3,
    concurrency=(1, 8, 64),
    batch_rows=(1_000, 10_000),
    batch_concurrency=(1, 4, 8),  # 8: keep-alive clients spread over both workers
    cold_starts=3,
    raw_seconds=3.0,
    settle_limit_s=60.0,
    wrk_threads=1,
    wrk_timeout_s=60,
    probe_s=5,
    burst_s=10,
    rest_s=10,
    v2_rounds=6,
    v2_round_s=10,
)
QUICK = Plan(
    duration_s=2,
    warmup_s=1,
    concurrency=(1, 8),
    batch_rows=(1_000,),
    batch_concurrency=(1,),
    cold_starts=1,
    raw_seconds=0.3,
    settle_limit_s=10.0,
    wrk_threads=1,
    wrk_timeout_s=30,
    probe_s=1,
    burst_s=2,
    rest_s=1,
    v2_rounds=1,
    v2_round_s=1,
)
RAW_BATCHES = (1, 256)
BURST_CONNECTIONS = 64


@dataclass(frozen=True)
class Point:
    kind: Kind
    rows: int
    concurrency: int


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value


def _plan_default(field: str) -> str:
    def show(value: object) -> str:
        return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)

    return f"(default {show(getattr(FULL, field))}; --quick {show(getattr(QUICK, field))})"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.harness",
        description=__doc__.splitlines()[0],
    )
    add = parser.add_argument
    add(
        "--quick",
        action="store_true",
        help="tiny settings for a smoke run (about a minute); options below still apply",
    )
    add(
        "--model",
        metavar="TAG",
        help="serve this model (name:version) from the current BENTOML_HOME instead of "
        "training the default breast-cancer model into a temporary one",
    )
    add(
        "--payload-log",
        choices=("on", "off", "both"),
        default="on",
        help="PAYLOAD_LOG of our service; 'both' runs ours twice to measure the log's cost "
        "(default on, as shipped)",
    )
    add(
        "--baselines",
        nargs="*",
        choices=systems.BASELINES,
        default=list(systems.BASELINES),
        help="baselines and peers to run next to ours; none: ours only (default: all)",
    )
    add(
        "--v2",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure single rows on our service's /v2/models/NAME/infer (default on)",
    )
    add(
        "--out",
        type=Path,
        default=RESULTS,
        help=f"results directory (default {RESULTS.relative_to(ROOT)})",
    )
    add(
        "--duration",
        type=positive_int,
        metavar="S",
        help=f"seconds measured per point {_plan_default('duration_s')}",
    )
    add(
        "--warmup",
        type=positive_int,
        metavar="S",
        help=f"seconds of warm-up before each point {_plan_default('warmup_s')}",
    )
    add(
        "--concurrency",
        type=positive_int,
        nargs="+",
        metavar="N",
        help=f"connections for single-row requests {_plan_default('concurrency')}",
    )
    add(
        "--batch-rows",
        type=positive_int,
        nargs="*",
        metavar="N",
        help=f"rows per batch request; none: no batch points {_plan_default('batch_rows')}",
    )
    add(
        "--batch-concurrency",
        type=positive_int,
        nargs="+",
        metavar="N",
        help=f"connections for batch requests {_plan_default('batch_concurrency')}",
    )
    add(
        "--cold-starts",
        type=positive_int,
        metavar="N",
        help=f"server starts per system for the cold-start median {_plan_default('cold_starts')}",
    )
    add(
        "--raw-seconds",
        type=positive_float,
        metavar="S",
        help=f"seconds of in-process predict_proba per batch size {_plan_default('raw_seconds')}",
    )
    add(
        "--wrk-threads",
        type=positive_int,
        metavar="N",
        help=f"wrk threads, at most the connections {_plan_default('wrk_threads')}",
    )
    add(
        "--keep-work",
        action="store_true",
        help="keep the temporary directory (model store, server logs, request bodies)",
    )
    return parser.parse_args(argv)


def resolve_plan(args: argparse.Namespace) -> Plan:
    """--quick or full settings, with any option given on the command line on top."""
    plan = QUICK if args.quick else FULL
    overrides = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "concurrency": tuple(args.concurrency) if args.concurrency else None,
        "batch_rows": tuple(args.batch_rows) if args.batch_rows is not None else None,
        "batch_concurrency": tuple(args.batch_concurrency) if args.batch_concurrency else None,
        "cold_starts": args.cold_starts,
        "raw_seconds": args.raw_seconds,
        "wrk_threads": args.wrk_threads,
    }
    return replace(plan, **{k: v for k, v in overrides.items() if v is not None})


def plan_points(plan: Plan) -> list[Point]:
    single = [Point("single", 1, c) for c in plan.concurrency]
    batch = [Point("batch", n, c) for n in plan.batch_rows for c in plan.batch_concurrency]
    return single + batch


def _version(name: str) -> str:
    try:
        return package_version(name)
    except PackageNotFoundError:
        return "absent"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
        )
        return done.stdout.strip()

    changed = [line[3:] for line in git("status", "--porcelain").splitlines()]
    return {"commit": git("rev-parse", "HEAD"), "changed_files": changed}


def recorded_env() -> dict[str, str]:
    env = {name: os.environ[name] for name in RECORDED_ENV if name in os.environ}
    env |= {name: "(set)" for name in SECRET_ENV if os.environ.get(name)}
    return env


def machine_info() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in LIBRARIES},
        "wrk": wrk.version(),
        "env": recorded_env(),
        "git": git_state(),
    }


def prepare_model(model: str | None, work: Path, name: str = "bench") -> tuple[str, Path]:
    """The tag to serve (`model`, else one trained as `name`) and the BENTOML_HOME holding it."""
    from model import store

    if model:
        home = Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")
        os.environ["BENTOML_HOME"] = str(home)
        return store.load(model).tag, home
    from train.data import load_default
    from train.training import TrainConfig, train

    home = work / "bentoml-home"
    os.environ["BENTOML_HOME"] = str(home)
    return train(*load_default(), TrainConfig(name=name)).tag, home


def sample_rows(reference: pd.DataFrame, names: list[str], count: int) -> np.ndarray:
    """`count` complete rows of the model's reference sample, drawn with replacement."""
    complete = reference[names].dropna().to_numpy(dtype="float64")
    if len(complete) == 0:
        raise SystemExit("the model's reference sample has no complete row to send")
    picks = np.random.default_rng(0).integers(0, len(complete), size=count)
    return complete[picks]


def write_scripts(rows: np.ndarray, sizes: Sequence[int], work: Path) -> dict[int, Path]:
    """One wrk script per request size, posting `{"instances": [[...], ...]}`."""
    scripts = {}
    for size in sorted(set(sizes)):
        body = work / f"body-{size}.json"
        body.write_bytes(bodies.instances(rows[:size]))
        scripts[size] = wrk.post_script(work / f"post-{size}.lua", body)
    return scripts


class Scripts:
    """wrk scripts by rows per request and body kind (`System.body`), written on first use:
    the v2 body takes its input form from the running server's model metadata."""

    def __init__(self, rows: np.ndarray, names: list[str], model: str, work: Path) -> None:
        self.rows, self.names, self.model, self.work = rows, names, model, work
        self._bodies: dict[tuple[int, str], tuple[bytes, str, str]] = {}
        self._scripts: dict[tuple[int, str], Path] = {}

    def body(self, size: int, kind: str, url: str) -> tuple[bytes, str, str]:
        """The body, its content type and the Accept header."""
        key = (size, kind)
        if key not in self._bodies:
            rows, json_type = self.rows[:size], "application/json"
            if kind == "json":
                built = (bodies.instances(rows), json_type, "*/*")
            elif kind == "arrow":
                frame = pd.DataFrame(rows, columns=self.names)
                built = (write_instances(frame), ARROW_STREAM, ARROW_STREAM)
            elif kind == "mlserver":
                built = (bodies.mlserver_pandas(rows, self.names), json_type, "*/*")
            elif kind == "v2":
                metadata = bodies.model_metadata(url, self.model)
                built = (bodies.open_inference(rows, metadata, self.names), json_type, "*/*")
            else:
                raise ValueError(f"unknown body kind {kind!r}")
            self._bodies[key] = built
        return self._bodies[key]

    def get(self, size: int, kind: str, url: str) -> Path:
        key = (size, kind)
        if key not in self._scripts:
            content, content_type, accept = self.body(size, kind, url)
            body = self.work / f"body-{size}-{kind}"
            body.write_bytes(content)
            lua = self.work / f"post-{size}-{kind}.lua"
            self._scripts[key] = wrk.post_script(lua, body, content_type, accept=accept)
        return self._scripts[key]


def measure_raw(
    model: in_process.InProcess,
    rows: np.ndarray,
    names: list[str],
    batches: Sequence[int],
    seconds: float,
) -> list[dict[str, float]]:
    """The model's own rows/s per batch size, in process on a prepared frame."""
    measured = []
    for batch in sorted(set(batches)):
        frame = pd.DataFrame(rows[:batch], columns=names)
        model.call(frame)
        calls, started = 0, time.perf_counter()
        while calls < 3 or time.perf_counter() - started < seconds:
            model.call(frame)
            calls += 1
        elapsed = time.perf_counter() - started
        measured.append(
            {
                "batch": batch,
                "calls": calls,
                "seconds": elapsed,
                "ms_per_call": elapsed / calls * 1e3,
                "rows_per_s": batch * calls / elapsed,
            }
        )
        print(f"in process, batch {batch}: {batch * calls / elapsed:,.0f} rows/s", flush=True)
    return measured


def start(system: System, log: Path, stack: contextlib.ExitStack) -> tuple[ServerProcess, float]:
    """Start a server (stopped when `stack` closes); seconds from start to /readyz 200."""
    assert system.start is not None
    started = time.monotonic()
    server = system.start(log)
    stack.callback(processes.stop, server)
    server.wait_ready(READY_TIMEOUT_S)
    return server, time.monotonic() - started


def extra_cold_starts(system: System, count: int, work: Path) -> list[float]:
    """Start, wait for readiness and stop the system `count` times, one at a time."""
    seconds = []
    for attempt in range(count):
        with contextlib.ExitStack() as stack:
            _, elapsed = start(system, work / f"{system.key}-cold-{attempt}.log", stack)
        seconds.append(elapsed)
        print(f"{system.label}: cold start {elapsed:.2f} s", flush=True)
    return seconds


def measure_point(
    system: System,
    server: ServerProcess,
    point: Point,
    script: Path,
    plan: Plan,
    all_pids: list[int],
) -> dict[str, Any]:
    route = system.batch_route if point.kind == "batch" else system.single_route
    url = f"{server.url}{route}"
    pid = server.process.pid
    wait = {
        "idle_share": SETTLE_IDLE_SHARE,
        "interval": SETTLE_INTERVAL_S,
        "limit": plan.settle_limit_s,
    }
    common = {
        "connections": point.concurrency,
        "threads": plan.wrk_threads,
        "timeout_s": plan.wrk_timeout_s,
    }
    wrk.run(url, script, duration_s=plan.warmup_s, **common)
    processes.settle(all_pids, **wait)
    load_1m = os.getloadavg()[0]
    cpu_before = processes.cpu_seconds([pid])
    result = wrk.run(url, script, duration_s=plan.duration_s, **common)
    cpu_after = processes.cpu_seconds([pid])
    settle_s = processes.settle(all_pids, **wait)
    elapsed = result.duration_s or float(plan.duration_s)
    return {
        **asdict(point),
        "system": system.key,
        "route": route,
        **result.to_json(),
        "rows_per_s": result.ok_requests * point.rows / elapsed,
        "server_cpu_percent": (cpu_after - cpu_before) / elapsed * 100,
        "wrk_cpu_percent": result.cpu_s / elapsed * 100,
        "backlog_cpu_s": processes.cpu_seconds([pid]) - cpu_after,
        "settle_s": settle_s,
        "load_1m": round(load_1m, 2),
    }


def _describe(record: dict[str, Any]) -> str:
    errors = sum(record["socket_errors"].values())
    return (
        f"{record['system']:<22} {record['kind']:<6} rows {record['rows']:>6} "
        f"c {record['concurrency']:>3}: {record['requests_per_s']:9.1f} req/s "
        f"{record['rows_per_s']:11,.0f} rows/s p50 {record['p50_ms']:8.1f} ms "
        f"p99 {record['p99_ms']:8.1f} ms non-2xx {record['non_2xx']} socket errors {errors} "
        f"wrk CPU {record['wrk_cpu_percent']:.0f}% load {record['load_1m']}"
    )


def _short(error: BaseException, lines: int = 12) -> str:
    """An error for the report: its first line and the last lines of a server log it carries."""
    text = str(error).strip().splitlines() or [type(error).__name__]
    return "\n".join(text[:1] + text[1:][-lines:])


def install_peers(chosen: list[System]) -> dict[str, str]:
    """Each chosen peer's virtualenv, installed unless reusable; failures by system key."""
    failed = {}
    for system in chosen:
        if system.key in systems.PEERS:
            try:
                peer_venvs.ensure(system.key)
            except (peer_venvs.PeerInstallError, OSError, subprocess.SubprocessError) as exc:
                failed[system.key] = f"virtualenv not installed: {_short(exc)}"
    return failed


def check(system: System, url: str, scripts: Scripts, expected: np.ndarray) -> None:
    """One single-row request answered 2xx with the model's probabilities for that row."""
    assert system.single_route is not None
    content, content_type, accept = scripts.body(1, system.body, url)
    response = requests.post(
        f"{url}{system.single_route}",
        data=content,
        headers={"Content-Type": content_type, "Accept": accept},
        timeout=60,
    )
    bodies.check_answer(system.answer, response.status_code, response.text, expected)


def measure_after_burst(
    measured: list[System], servers: dict[str, ServerProcess], plan: Plan, scripts: Scripts
) -> list[dict[str, Any]]:
    """bench.after_burst's single client before and after a burst, for ours and FastAPI."""
    from bench import after_burst  # it imports this module

    args = argparse.Namespace(
        probe_seconds=plan.probe_s,
        burst_seconds=plan.burst_s,
        rest_seconds=plan.rest_s,
        connections=BURST_CONNECTIONS,
    )
    pids = [server.process.pid for server in servers.values()]
    chosen = [s for s in measured if s.key in (systems.OURS, systems.OURS_NO_LOG, systems.FASTAPI)]
    records = []
    for system in chosen:
        url = servers[system.key].url
        processes.settle(
            pids,
            idle_share=SETTLE_IDLE_SHARE,
            interval=SETTLE_INTERVAL_S,
            limit=plan.settle_limit_s,
        )
        records.append(after_burst.measure(system, url, scripts.get(1, system.body, url), args))
        print("after burst: " + after_burst.table(records[-1:], args).splitlines()[-1], flush=True)
    return records


def measure_v2_rounds(
    measured: list[System], servers: dict[str, ServerProcess], plan: Plan, scripts: Scripts
) -> dict[str, Any] | None:
    """Ours v2 ÷ ours /predict on ours' server in rounds taking turns (bench.v2_ratio): one
    point of each moves by about ±10 % between runs here, as much as the goal's margin."""
    from bench import v2_ratio

    by_key = {system.key: system for system in measured}
    if plan.v2_rounds == 0 or not {systems.OURS, systems.OURS_V2} <= by_key.keys():
        return None
    server = servers[systems.OURS]
    routes = {v2_ratio.PREDICT: by_key[systems.OURS], v2_ratio.V2: by_key[systems.OURS_V2]}
    rounds = v2_ratio.take_rounds(
        {key: f"{server.url}{system.single_route}" for key, system in routes.items()},
        {key: scripts.get(1, system.body, server.url) for key, system in routes.items()},
        BURST_CONNECTIONS,
        plan.v2_round_s,
        plan.v2_rounds,
        server.process.pid,
    )
    return {
        "connections": BURST_CONNECTIONS,
        "seconds": plan.v2_round_s,
        "rounds": rounds,
        **v2_ratio.summary(rounds),
    }


@dataclass
class HttpRun:
    records: list[dict[str, Any]]
    facts: dict[str, dict[str, Any]]
    failed: dict[str, str]
    after_burst: list[dict[str, Any]]
    v2_rounds: dict[str, Any] | None = None


def _start_all(
    started: list[System],
    plan: Plan,
    work: Path,
    run: HttpRun,
    stack: contextlib.ExitStack,
) -> dict[str, ServerProcess]:
    """Cold starts one at a time, then one server per system left running (in `stack`)."""
    for system in started:
        try:
            cold = extra_cold_starts(system, plan.cold_starts - 1, work)
        except (RuntimeError, TimeoutError, OSError) as exc:
            run.failed[system.key] = f"did not start: {_short(exc)}"
            continue
        run.facts[system.key]["cold_start_s"] = cold
    servers: dict[str, ServerProcess] = {}
    for system in started:
        if system.key in run.failed:
            continue
        try:
            server, elapsed = start(system, work / f"{system.key}.log", stack)
        except (RuntimeError, TimeoutError, OSError) as exc:
            run.failed[system.key] = f"did not start: {_short(exc)}"
            continue
        servers[system.key] = server
        run.facts[system.key]["cold_start_s"].append(elapsed)
        print(f"{system.label}: ready in {elapsed:.2f} s at {server.url}", flush=True)
    return servers


def run_http(
    chosen: list[System],
    plan: Plan,
    scripts: Scripts,
    work: Path,
    expected: np.ndarray,
    failed: dict[str, str],
) -> HttpRun:
    """Every point on every system; servers run side by side, points are interleaved.

    A system with `server_of` is measured on that system's server: no start of its own. A
    system that does not start, or does not answer one row with the model's probabilities
    (`expected`), is left out and recorded in `failed`; ours must not fail.
    """
    facts: dict[str, dict[str, Any]] = {
        s.key: {"label": s.label, "description": s.description} for s in chosen
    }
    for system in chosen:
        if system.key in systems.PEERS:
            facts[system.key]["specs"] = peer_venvs.specs(system.key)
    run = HttpRun([], facts, dict(failed), [])
    started = [s for s in chosen if s.server_of is None and s.key not in run.failed]
    with contextlib.ExitStack() as stack:
        servers = _start_all(started, plan, work, run, stack)
        for system in chosen:
            if system.server_of is not None and system.server_of in servers:
                servers[system.key] = servers[system.server_of]
        for system in chosen:
            if system.key not in servers:
                run.failed.setdefault(system.key, f"its server ({system.server_of}) did not start")
            elif system.single_route is not None:
                try:
                    check(system, servers[system.key].url, scripts, expected)
                except (bodies.BodyError, requests.RequestException) as exc:
                    run.failed[system.key] = _short(exc)
        for key, reason in run.failed.items():
            print(f"{facts[key]['label']}: FAILED, not measured: {reason}", flush=True)
        if chosen[0].key in run.failed:
            raise SystemExit(f"{chosen[0].label} failed: {run.failed[chosen[0].key]}")
        measured = [s for s in chosen if s.key not in run.failed]
        running = {s.key: servers[s.key] for s in measured if s.server_of is None}
        pids = [server.process.pid for server in running.values()]
        processes.settle(
            pids,
            idle_share=SETTLE_IDLE_SHARE,
            interval=SETTLE_INTERVAL_S,
            limit=plan.settle_limit_s,
        )
        for key, server in running.items():
            facts[key]["memory_idle"] = processes.memory(server.process.pid)
        run.after_burst = measure_after_burst(measured, running, plan, scripts)
        for point in plan_points(plan):
            for system in measured:
                route = system.single_route if point.kind == "single" else system.batch_route
                if route is None:
                    continue
                server = servers[system.key]
                script = scripts.get(point.rows, system.body, server.url)
                record = measure_point(system, server, point, script, plan, pids)
                print(_describe(record), flush=True)
                run.records.append(record)
        run.v2_rounds = measure_v2_rounds(measured, servers, plan, scripts)
        for key, server in running.items():
            facts[key]["memory_after_load"] = processes.memory(server.process.pid)
    for fact in facts.values():
        if fact.get("cold_start_s"):
            fact["cold_start_median_s"] = statistics.median(fact["cold_start_s"])
    return run


def _index(records: list[dict[str, Any]]) -> dict[tuple[str, int, int, str], dict[str, Any]]:
    return {(r["kind"], r["rows"], r["concurrency"], r["system"]): r for r in records}


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def ratios(records: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """Ours against each baseline (and payload log on against off) at every point."""
    index = _index(records)
    mine = (systems.OURS, systems.OURS_NO_LOG, systems.OURS_ARROW, systems.OURS_V2)
    ours = [k for k in mine if k in keys]
    pairs = [(o, b) for o in ours for b in systems.BASELINES if b in keys]
    if systems.OURS in keys and systems.OURS_NO_LOG in keys:
        pairs.append((systems.OURS, systems.OURS_NO_LOG))
    if systems.OURS in keys and systems.OURS_V2 in keys:
        pairs.append((systems.OURS_V2, systems.OURS))
    compared = []
    for record in records:
        for system, baseline in pairs:
            other = index.get((record["kind"], record["rows"], record["concurrency"], baseline))
            if record["system"] != system or other is None:
                continue
            compared.append(
                {
                    **{k: record[k] for k in ("kind", "rows", "concurrency")},
                    "system": system,
                    "baseline": baseline,
                    "throughput_ratio": _ratio(record["rows_per_s"], other["rows_per_s"]),
                    "p99_ratio": _ratio(record["p99_ms"], other["p99_ms"]),
                }
            )
    return compared


def batch_vs_raw(
    records: list[dict[str, Any]], raw: list[dict[str, float]]
) -> list[dict[str, Any]]:
    """/predict_batch rows/s as a share of in-process rows/s at the same batch size."""
    by_batch = {int(r["batch"]): r["rows_per_s"] for r in raw}
    ours = (systems.OURS, systems.OURS_NO_LOG, systems.OURS_ARROW)
    return [
        {
            "system": r["system"],
            "rows": r["rows"],
            "concurrency": r["concurrency"],
            "http_rows_per_s": r["rows_per_s"],
            "raw_rows_per_s": by_batch[r["rows"]],
            "fraction": r["rows_per_s"] / by_batch[r["rows"]],
        }
        for r in records
        if r["kind"] == "batch" and r["system"] in ours
    ]


def check_tools() -> None:
    missing = [tool for tool in ("wrk",) if shutil.which(tool) is None]
    for module in ("fastapi", "uvicorn", "matplotlib"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise SystemExit(
            f"missing {', '.join(missing)}: apt-get install wrk; "
            "make install (fastapi, uvicorn, matplotlib)"
        )


@contextlib.contextmanager
def work_dir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}", flush=True)
        else:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every started server is stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    check_tools()
    plan = resolve_plan(args)
    machine = machine_info()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"load average at start: {machine['load_average_start']}", flush=True)
    with work_dir(args.keep_work) as work:
        tag, home = prepare_model(args.model, work)
        from model import store

        loaded = store.load(tag)
        names = loaded.schema.names
        if loaded.schema.categorical:
            raise SystemExit(f"{tag} has categorical features; the baselines take numbers only")
        rows = sample_rows(store.load_reference(tag), names, max((1, *plan.batch_rows)))
        model = in_process.of(tag)
        raw = measure_raw(model, rows, names, (*RAW_BATCHES, *plan.batch_rows), plan.raw_seconds)
        expected = loaded.pipeline.predict_proba(pd.DataFrame(rows[:1], columns=names))
        context = systems.Context(tag=tag, home=home, work=work)
        chosen = systems.build(context, args.payload_log, args.baselines, v2=args.v2)
        failed = install_peers(chosen)
        scripts = Scripts(rows, names, context.model_name, work)
        run = run_http(chosen, plan, scripts, work, expected, failed)
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    measured = [s.key for s in chosen if s.key not in run.failed]
    results = {
        "started_at": started_at,
        "model": {"tag": tag, "features": len(names), "labels": loaded.labels},
        "plan": {**asdict(plan), "quick": args.quick, "payload_log": args.payload_log},
        "machine": machine,
        "systems": run.facts,
        "failed": run.failed,
        "points": run.records,
        "ratios": ratios(run.records, measured),
        "raw_runtime": model.runtime,
        "raw_description": model.description,
        "raw": raw,
        "batch_vs_raw": batch_vs_raw(run.records, raw),
        "after_burst": run.after_burst,
        "v2_rounds": run.v2_rounds,
    }
    results["goals"] = [goal.to_json() for goal in goals.compute(results)]
    written = report.write(results, args.out)
    print("wrote " + ", ".join(str(path) for path in written), flush=True)
    for goal in results["goals"]:
        print(report.goal_line(goal), flush=True)
    if run.failed:
        print(f"not measured: {', '.join(sorted(run.failed))} (see {written[1]})", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
