"""Single-client latency before and after a burst, on the same model, in one run.

    python -m bench.after_burst [--burst-seconds 10] [--probe-seconds 5] [--connections 64]
        [--compare-with DIR]

For each system (ours, default BentoML, the FastAPI server; see bench/systems.py), one
server: a single client (wrk, one connection) sends single-row POSTs for `--probe-seconds`,
then 64 connections for `--burst-seconds`, then the single client again, right after the
burst and once more after `--rest-seconds` of silence. Adaptive batchers learn a wait
under the burst; what matters is whether a lone client pays it afterwards.
`--compare-with DIR` also serves the service of another checkout (e.g. a worktree of an
earlier commit), as "ours at DIR".
Writes bench/results/after_burst.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import wrk
from bench.harness import machine_info, prepare_model, sample_rows, start, write_scripts
from bench.local import ROOT, Server
from bench.systems import Context, System, default_bento, fastapi, ours

RESULTS = ROOT / "bench" / "results"
PHASES = ("before", "right_after", "after_rest")


def measure(system: System, url: str, script: Path, args: argparse.Namespace) -> dict[str, Any]:
    route = f"{url}{system.single_route}"

    def probe() -> dict[str, Any]:
        return wrk.run(route, script, connections=1, duration_s=args.probe_seconds).to_json()

    before = probe()
    burst = wrk.run(
        route, script, connections=args.connections, duration_s=args.burst_seconds,
        threads=2,
    ).to_json()  # fmt: skip
    right_after = probe()
    time.sleep(args.rest_seconds)
    return {
        "system": system.key,
        "label": system.label,
        "before": before,
        "burst": burst,
        "right_after": right_after,
        "after_rest": probe(),
    }


def ours_at(shipped: System, context: Context, checkout: Path) -> System:
    env = {"MODEL_TAG": context.tag, "PAYLOAD_LOG_DIR": str(context.work / "payload-logs-at")}
    return replace(
        shipped,
        key="ours_at",
        label=f"ours at {checkout.name}",
        description=f"the service of {checkout}, settings as shipped",
        start=lambda log: Server(context.home, log, working_dir=checkout, **env),
    )


def table(records: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"# Single client (1 connection, {args.probe_seconds} s) before and after a "
        f"{args.burst_seconds} s burst at {args.connections} connections",
        "",
        "| system | p50 ms before | burst req/s | p50 ms right after | p50 ms after "
        f"{args.rest_seconds} s rest | right after / before |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        before, after = r["before"]["p50_ms"], r["right_after"]["p50_ms"]
        lines.append(
            f"| {r['label']} | {before:.2f} | {r['burst']['requests_per_s']:.0f} | "
            f"{after:.2f} | {r['after_rest']['p50_ms']:.2f} | {after / before:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.after_burst", description=__doc__)
    parser.add_argument("--burst-seconds", type=int, default=10)
    parser.add_argument("--probe-seconds", type=int, default=5)
    parser.add_argument("--rest-seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--model", help="model tag (default: one trained for the run)")
    parser.add_argument("--out", type=Path, default=RESULTS / "after_burst")
    parser.add_argument("--compare-with", type=Path, metavar="DIR", help="another checkout")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="after-burst-") as temp:
        work = Path(temp)
        tag, home = prepare_model(args.model, work)
        from model.store import load_reference, load_schema

        rows = sample_rows(load_reference(tag), load_schema(tag).names, 1)
        script = write_scripts(rows, [1], work)[1]
        context = Context(tag=tag, home=home, work=work)
        systems = [ours(context, payload_log=True)]
        if args.compare_with:
            systems.append(ours_at(systems[0], context, args.compare_with.resolve()))
        records = []
        for system in (*systems, default_bento(context), fastapi(context)):
            assert system.start is not None
            with contextlib.ExitStack() as stack:
                server, _ = start(system, work / f"{system.key}.log", stack)
                records.append(measure(system, server.url, script, args))
            print(table(records[-1:], args).splitlines()[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    payload = {"machine": machine_info(), "settings": settings, "records": records}
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    args.out.with_suffix(".md").write_text(table(records, args))
    print(table(records, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
