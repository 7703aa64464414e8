"""Rollout rehearsal: shift live traffic between two model versions behind a real nginx.

    python -m bench.rehearse [--steps 0,10,50,100] [--step-seconds 10] [--connections 16]

Trains two versions of the default model into a temporary model store (or takes
`--old TAG --new TAG` from $BENTOML_HOME), starts one `bentoml serve` per version and an
nginx of its own on a free loopback port with a weighted upstream, then, under constant
load from wrk, moves the new version's share through the steps with graceful reloads
(`nginx -s reload`) and finally rolls back to 0 %. For every step it reports the
configured and observed share of the new version and the failed requests, prints a table
and writes bench/results/rehearsal.{json,md}.

Exit status: 0 passed; 1 a request failed, a share missed its step or a process died
under load; 2 bad arguments; 3 the rehearsal could not run (a tool missing, a process
that did not start); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import requests

from bench import nginx_proxy, wrk_load
from bench.local import ROOT, Server, free_port
from bench.nginx_proxy import Backend, Nginx
from bench.rehearsal_report import (
    StepPlan,
    StepResult,
    check_share,
    markdown,
    problems,
    read_access_log,
    summarize_step,
    text_table,
)
from bench.wrk_load import Wrk

logger = logging.getLogger("bench.rehearse")

EXIT_PASSED, EXIT_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 3, 130
DEFAULT_OUT = ROOT / "bench" / "results" / "rehearsal"
READY_TIMEOUT = 120.0
CLIENT_KEEPALIVE_SECONDS = 75
# servers started for the rehearsal: no payload log and no drift job, only predictions
SERVER_ENV = {"PAYLOAD_LOG": "off", "DRIFT_INTERVAL_MINUTES": "0", "WORKERS": "1"}


class RehearsalError(RuntimeError):
    """The rehearsal could not be run; the message says why."""


class ProcessDied(RehearsalError):
    """A server, nginx or wrk stopped while traffic was being moved: the rehearsal failed."""


class Interrupted(Exception):
    """SIGTERM arrived; raised so every started process is stopped on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(frozen=True)
class Versions:
    home: Path
    old: str
    new: str


@dataclass(frozen=True)
class LoadRun:
    """What the load phase leaves for the report."""

    steps: list[StepPlan]
    window: tuple[float, float]  # epoch seconds: wrk started, last step over
    access_log: Path
    load: dict[str, float | int]  # wrk's summary
    versions: dict[str, dict[str, str]]  # "old"/"new": tag, upstream address, server log


def percent_list(text: str) -> list[int]:
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
    if not steps or any(not 0 <= step <= 100 for step in steps):
        raise argparse.ArgumentTypeError(f"steps must be percentages 0..100, got {text!r}")
    return steps


def positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rehearse",
        description=__doc__.split("\n\n")[2].replace("\n", " "),
        epilog=__doc__.split("\n\n")[3].replace("\n", " "),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--steps",
        type=percent_list,
        default=[0, 10, 50, 100],
        metavar="P,P,...",
        help="shares of traffic (percent) sent to the new version, in order; a rollback "
        "to 0 %% follows the last step",
    )
    parser.add_argument(
        "--step-seconds",
        type=positive(float),
        default=10.0,
        help="how long each step is held under load",
    )
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=1.0,
        help="start of each step left out of the share measurement (old workers finishing "
        "their requests, clients reconnecting); failures are counted over the whole step",
    )
    parser.add_argument(
        "--connections",
        type=positive(int),
        default=16,
        help="concurrent wrk connections to nginx",
    )
    parser.add_argument(
        "--client-keepalive",
        action="store_true",
        help="keep client connections to nginx open between requests (75 s, nginx's "
        "default); by default nginx closes each after its response, because a reload "
        "resets idle keepalive connections and a request racing that reset fails",
    )
    parser.add_argument("--threads", type=positive(int), default=1, help="wrk threads")
    parser.add_argument(
        "--request-timeout",
        type=positive(float),
        default=10.0,
        help="seconds after which wrk counts a request as a timeout (a socket error)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=5.0,
        help="largest allowed gap, in percentage points, between the observed and the "
        "configured share of a step between 0 and 100 %% (those two must be exact)",
    )
    parser.add_argument(
        "--min-requests",
        type=positive(int),
        default=100,
        help="measured requests a step needs before its share is checked",
    )
    parser.add_argument(
        "--old",
        metavar="TAG",
        help="model tag serving the current traffic, from $BENTOML_HOME (with --new); "
        "default: train two versions of the default model into a temporary store",
    )
    parser.add_argument("--new", metavar="TAG", help="model tag being rolled out (with --old)")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="results path without suffix: writes OUT.json and OUT.md",
    )
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the working directory (server, nginx and wrk logs, configurations) "
        "after a passing run; it is always kept after a failure",
    )
    args = parser.parse_args(argv)
    if (args.old is None) != (args.new is None):
        parser.error("--old and --new go together")
    if args.old is not None and args.old == args.new:
        parser.error("--old and --new must be different versions")
    if args.settle_seconds < 0 or args.settle_seconds >= args.step_seconds:
        parser.error("--settle-seconds must be at least 0 and shorter than --step-seconds")
    if args.tolerance < 0:
        parser.error("--tolerance must not be negative")
    if args.out.suffix in (".json", ".md"):
        args.out = args.out.with_suffix("")
    return args


def step_plan(steps: list[int]) -> list[tuple[str, int]]:
    """(label, new share) of every step, the rollback to 0 % last."""
    return [(f"{share} %", share) for share in steps] + [("rollback 0 %", 0)]


def prepare_versions(args: argparse.Namespace, work: Path) -> Versions:
    """The two tags, trained into `work` unless given; BENTOML_HOME is set accordingly."""
    if args.old is None:
        os.environ["BENTOML_HOME"] = str(work / "bentoml-home")
    home = Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")
    # imported here: bentoml resolves its model store from BENTOML_HOME on first use
    from model import store
    from model.settings import settings
    from train.data import load_default
    from train.training import TrainConfig, train

    if args.old is not None:
        return Versions(home, store.resolve_tag("", args.old), store.resolve_tag("", args.new))
    name = settings().model.name
    features, target = load_default()
    old = train(features, target, TrainConfig(name=name, estimator="linear", seed=1, promote=True))
    new = train(
        features, target, TrainConfig(name=name, estimator="hist_gradient_boosting", seed=2)
    )
    logger.info("trained %s (old) and %s (new) into %s", old.tag, new.tag, home)
    return Versions(home, old.tag, new.tag)


def request_body(tag: str) -> str:
    """One row of the model's stored training sample, in schema order, as a request body."""
    from model import store

    names = store.load_schema(tag).names
    row = store.load_reference(tag)[names].iloc[0].tolist()
    values = [None if isinstance(v, float) and math.isnan(v) else v for v in row]
    return json.dumps({"instances": [values]}, allow_nan=False)


def start_server(versions: Versions, tag: str, log: Path, cleanup: Cleanup) -> Server:
    with deferred_signals():
        server = Server(versions.home, log, MODEL_TAG=tag, **SERVER_ENV)
        cleanup.add(f"server {tag} (pid {server.process.pid})", server.stop)
    logger.info("bentoml serve pid %d for %s on %s", server.process.pid, tag, server.url)
    return server


def check_serves(server: Server, tag: str) -> None:
    served = requests.get(f"{server.url}/model", timeout=10).json()["tag"]
    if served != tag:
        raise RehearsalError(f"{server.url} serves {served}, expected {tag}")


def probe(url: str, body: str, expected: set[str]) -> None:
    answer = requests.post(
        f"{url}/predict",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    if answer.status_code != 200 or answer.json().get("model") not in expected:
        raise RehearsalError(
            f"probe through nginx answered {answer.status_code}: {answer.text[:300]}"
        )


def serving(versions: Versions, new_percent: int) -> set[str]:
    """The tags that may answer at a share of `new_percent` % to the new version."""
    return {
        tag
        for tag, share in ((versions.old, 100 - new_percent), (versions.new, new_percent))
        if share > 0
    }


def backends(old: Server, new: Server, new_percent: int) -> list[Backend]:
    old_weight, new_weight = nginx_proxy.split_weights(new_percent)
    return [
        Backend(f"127.0.0.1:{old.port}", old_weight),
        Backend(f"127.0.0.1:{new.port}", new_weight),
    ]


def hold(seconds: float, alive: dict[str, Callable[[], bool]]) -> None:
    """Sleep `seconds`, checking every quarter second that every process still runs."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(0.25, left))
        dead = [name for name, running in alive.items() if not running()]
        if dead:
            raise ProcessDied(f"stopped during the rehearsal: {', '.join(dead)}")


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block is done.

    A process started inside the block is recorded for cleanup before an interrupt can
    unwind the stack, so it is never left running; the signal is then delivered as usual.
    """
    received: list[int] = []
    watched = (signal.SIGINT, signal.SIGTERM)
    previous = {
        sig: signal.signal(sig, lambda signum, _: received.append(signum)) for sig in watched
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        signal.raise_signal(received[0])


class Cleanup:
    """Stop functions of every started process, run last-started first, signals shielded."""

    def __init__(self) -> None:
        self._stops: list[tuple[str, Callable[[], object]]] = []

    def add(self, name: str, stop: Callable[[], object]) -> None:
        self._stops.append((name, stop))

    def close(self) -> None:
        previous = {
            sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            while self._stops:
                name, stop = self._stops.pop()
                try:
                    stop()
                    logger.info("stopped %s", name)
                except Exception:
                    logger.exception("could not stop %s", name)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run_load(args: argparse.Namespace, versions: Versions, work: Path, cleanup: Cleanup) -> LoadRun:
    """Start servers, nginx and wrk, walk the steps; every process is stopped on return."""
    old = start_server(versions, versions.old, work / "serve-old.log", cleanup)
    new = start_server(versions, versions.new, work / "serve-new.log", cleanup)
    for server, tag in ((old, versions.old), (new, versions.new)):
        logger.info("%s ready after %.1fs", tag, server.wait_ready(READY_TIMEOUT))
        check_serves(server, tag)
    addresses = {
        "old": {"tag": versions.old, "upstream": f"127.0.0.1:{old.port}", "log": str(old.log_path)},
        "new": {"tag": versions.new, "upstream": f"127.0.0.1:{new.port}", "log": str(new.log_path)},
    }

    plan = step_plan(args.steps)
    keepalive = CLIENT_KEEPALIVE_SECONDS if args.client_keepalive else 0
    nginx = Nginx(work / "nginx", free_port(), keepalive_seconds=keepalive)
    nginx.configure(0, backends(old, new, plan[0][1]))
    cleanup.add("nginx", nginx.stop)
    with deferred_signals():
        nginx.start()
    nginx.wait_ready()
    body = request_body(versions.old)
    probe(nginx.url, body, serving(versions, plan[0][1]))

    script = work / "predict.lua"
    script.write_text(wrk_load.post_script(body))
    bound = math.ceil(len(plan) * (args.step_seconds + 20) + 30)
    wrk = Wrk(
        f"{nginx.url}/predict",
        script,
        work / "wrk.txt",
        connections=args.connections,
        threads=args.threads,
        max_seconds=bound,
        timeout_seconds=args.request_timeout,
    )
    cleanup.add("wrk", wrk.stop)
    alive = {
        "old server": lambda: old.process.poll() is None,
        "new server": lambda: new.process.poll() is None,
        "nginx": nginx.running,
        "wrk": wrk.running,
    }

    load_start = time.time()
    with deferred_signals():
        wrk.start()
    steps = [StepPlan(0, plan[0][0], plan[0][1], load_start)]
    logger.info("step %s: %d %% to %s", plan[0][0], plan[0][1], versions.new)
    hold(args.step_seconds, alive)
    for index, (label, share) in enumerate(plan[1:], start=1):
        applied = nginx.reload(index, backends(old, new, share))
        steps.append(StepPlan(index, label, share, applied))
        logger.info("step %s: %d %% to %s", label, share, versions.new)
        hold(args.step_seconds, alive)
    load_end = time.time()

    wrk.stop()
    nginx.stop()  # flushes the access log
    load = wrk.summary().to_dict()
    logger.info("wrk: %s", load)
    return LoadRun(steps, (load_start, load_end), nginx.access_log, load, addresses)


def measure(args: argparse.Namespace, run: LoadRun) -> list[StepResult]:
    records = read_access_log(run.access_log)
    results = []
    for plan in run.steps:
        result = summarize_step(
            records,
            plan,
            previous_generation=plan.index - 1 if plan.index else None,
            load_window=run.window,
            settle_seconds=args.settle_seconds,
            old_address=run.versions["old"]["upstream"],
            new_address=run.versions["new"]["upstream"],
        )
        check_share(result, tolerance=args.tolerance, min_requests=args.min_requests)
        results.append(result)
    return results


def build_report(
    args: argparse.Namespace, run: LoadRun, results: list[StepResult], work: Path
) -> dict:
    found = problems(results, run.load)
    kept = bool(found) or args.keep_logs
    return {
        "passed": not found,
        "problems": found,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nginx": nginx_proxy.version(),
        "wrk": wrk_load.version(),
        "settings": {
            "steps": args.steps,
            "step_seconds": args.step_seconds,
            "settle_seconds": args.settle_seconds,
            "connections": args.connections,
            "client_keepalive": args.client_keepalive,
            "threads": args.threads,
            "request_timeout_s": args.request_timeout,
            "tolerance": args.tolerance,
            "min_requests": args.min_requests,
            "cores": os.cpu_count(),
        },
        "versions": run.versions,
        "load": run.load,
        "steps": [result.to_dict() for result in results],
        "logs": str(work) if kept else None,  # removed after a passing run
    }


def write_results(out: Path, report: dict, results: list[StepResult]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report, results))
    logger.info("wrote %s and %s", out.with_suffix(".json"), out.with_suffix(".md"))


def print_summary(report: dict, results: list[StepResult]) -> None:
    load = report["load"]
    print(text_table(results, load))
    print(
        f"\nwrk: {load['requests']} requests, {load['requests_per_s']:.0f} req/s, "
        f"{load['socket_errors']} socket errors, {load['non_2xx']} non-2xx"
    )
    print(f"settle window left out of each share: {report['settings']['settle_seconds']:g} s")
    for problem in report["problems"]:
        print(f"FAILED: {problem}")
    print("PASSED" if report["passed"] else "FAILED")


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


def rehearse(args: argparse.Namespace, work: Path) -> int:
    cleanup = Cleanup()
    try:
        run = run_load(args, prepare_versions(args, work), work, cleanup)
    finally:
        cleanup.close()
    results = measure(args, run)
    report = build_report(args, run, results, work)
    write_results(args.out, report, results)
    print_summary(report, results)
    return EXIT_PASSED if report["passed"] else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        nginx_proxy.require()
        wrk_load.require()
    except (nginx_proxy.NginxError, wrk_load.WrkError) as exc:
        logger.error("%s", exc)
        return EXIT_ERROR
    signal.signal(signal.SIGTERM, _raise_interrupted)
    work = Path(tempfile.mkdtemp(prefix="rehearsal-"))
    status = EXIT_ERROR
    try:
        status = rehearse(args, work)
    except KeyboardInterrupt:
        logger.error("interrupted; every started process was stopped")
        status = EXIT_INTERRUPTED
    except Interrupted as exc:
        logger.error("stopped by %s; every started process was stopped", exc)
        status = 128 + exc.signum
    except ProcessDied as exc:
        logger.error("rehearsal failed: %s", exc)
        status = EXIT_FAILED
    except (RuntimeError, OSError) as exc:  # ours, the tools', requests' and the servers'
        logger.error("rehearsal could not run: %s", exc)
    finally:
        if status == EXIT_PASSED and not args.keep_logs:
            shutil.rmtree(work, ignore_errors=True)
        else:
            logger.log(
                logging.INFO if status == EXIT_PASSED else logging.ERROR,
                "logs (servers, nginx, wrk) are in %s",
                work,
            )
    return status


if __name__ == "__main__":
    raise SystemExit(main())
