"""Our v2 infer against our /predict: single rows at 64 connections, in rounds taking turns.

    python -m bench.v2_ratio [--rounds 8] [--seconds 10] [--connections 64] [--model TAG]

One server of ours (settings as shipped, payload log on), one model. After a warm-up of
each route, every round runs wrk on both routes back to back, the order alternating
between rounds, so both share the machine's drift; the CPU seconds of the server's
processes are read around every run. Reports each route's median req/s and CPU µs per
request, the ratio of the medians and the median of the rounds' ratios (v2 ÷ /predict).
A single 15 s point of `make bench` moves by about ±10 % between runs here, as much as
the goal's margin (within 10 %); the rounds are what judge it.

Writes bench/results/v2_ratio.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import bodies, processes, wrk
from bench.harness import machine_info, prepare_model, sample_rows, start
from bench.local import ROOT
from bench.systems import Context, ours

RESULTS = ROOT / "bench" / "results"
PREDICT, V2 = "predict", "v2"
WARMUP_S = 3


def run_route(url: str, script: Path, connections: int, seconds: int, pid: int) -> dict:
    """One wrk run: its result, and the server's CPU microseconds per request."""
    before = processes.cpu_seconds([pid])
    result = wrk.run(url, script, connections=connections, duration_s=seconds)
    cpu = processes.cpu_seconds([pid]) - before
    return {**result.to_json(), "server_cpu_us_per_request": cpu / max(result.requests, 1) * 1e6}


def summary(rounds: list[dict[str, dict]]) -> dict[str, Any]:
    """Medians per route, the ratio of the medians and the median of the rounds' ratios."""
    medians = {
        route: {
            "requests_per_s": statistics.median(r[route]["requests_per_s"] for r in rounds),
            "server_cpu_us_per_request": statistics.median(
                r[route]["server_cpu_us_per_request"] for r in rounds
            ),
        }
        for route in (PREDICT, V2)
    }
    per_round = [r[V2]["requests_per_s"] / r[PREDICT]["requests_per_s"] for r in rounds]
    return {
        **medians,
        "of_medians": medians[V2]["requests_per_s"] / medians[PREDICT]["requests_per_s"],
        "median_per_round": statistics.median(per_round),
        "per_round": per_round,
        "non_2xx": sum(r[route]["non_2xx"] for r in rounds for route in (PREDICT, V2)),
    }


def table(found: dict[str, Any], args: argparse.Namespace) -> str:
    rounds = found["rounds"]
    lines = [
        f"# Our v2 infer ÷ our /predict: single rows, {args.connections} connections, "
        f"{len(rounds)} rounds of {args.seconds} s taking turns",
        "",
        "| route | median req/s | median server CPU µs per request |",
        "|---|---:|---:|",
        *(
            f"| {label} | {found[route]['requests_per_s']:,.0f} "
            f"| {found[route]['server_cpu_us_per_request']:,.0f} |"
            for route, label in ((PREDICT, "/predict"), (V2, "/v2/models/NAME/infer"))
        ),
        "",
        f"v2 ÷ /predict: **{found['median_per_round']:.2f}** (median of the rounds' ratios: "
        f"{', '.join(f'{ratio:.2f}' for ratio in found['per_round'])}); ratio of the "
        f"medians {found['of_medians']:.2f}; non-2xx {found['non_2xx']}.",
        "",
        f"Load average {found['machine']['load_average_start']} at the start, "
        f"{found['load_average_end']} at the end; {found['machine']['cores']} cores.",
    ]
    return "\n".join(lines) + "\n"


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    tag, home = prepare_model(args.model, work)
    from model.store import load_reference, load_schema

    names = load_schema(tag).names
    row = sample_rows(load_reference(tag), names, 1)
    context = Context(tag=tag, home=home, work=work)
    system = ours(context, payload_log=True)
    with contextlib.ExitStack() as stack:
        server, _ = start(system, work / "ours.log", stack)
        metadata = bodies.model_metadata(server.url, context.model_name)
        sent = {PREDICT: bodies.instances(row), V2: bodies.open_inference(row, metadata, names)}
        urls = {
            PREDICT: f"{server.url}/predict",
            V2: f"{server.url}/v2/models/{context.model_name}/infer",
        }
        scripts = {}
        for route, body in sent.items():
            (work / f"{route}.json").write_bytes(body)
            scripts[route] = wrk.post_script(work / f"{route}.lua", work / f"{route}.json")
        for route in (PREDICT, V2):
            run_route(urls[route], scripts[route], args.connections, WARMUP_S, server.process.pid)
        rounds = take_rounds(
            urls, scripts, args.connections, args.seconds, args.rounds, server.process.pid
        )
    return {"model": tag, "rounds": rounds, **summary(rounds)}


def take_rounds(
    urls: dict[str, str],
    scripts: dict[str, Path],
    connections: int,
    seconds: int,
    count: int,
    pid: int,
) -> list[dict[str, Any]]:
    """`count` rounds, each running both routes back to back, the order alternating."""
    rounds = []
    for index in range(count):
        order = (PREDICT, V2) if index % 2 == 0 else (V2, PREDICT)
        done = {
            route: run_route(urls[route], scripts[route], connections, seconds, pid)
            for route in order
        }
        rounds.append({**done, "first": order[0]})
        print(
            f"v2 ÷ /predict, round {index + 1}: /predict "
            f"{done[PREDICT]['requests_per_s']:,.0f}, v2 {done[V2]['requests_per_s']:,.0f} req/s",
            flush=True,
        )
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.v2_ratio", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=10, help="per route and round")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--model", help="model tag (default: one trained for the run)")
    parser.add_argument("--out", type=Path, default=RESULTS / "v2_ratio")
    args = parser.parse_args(argv)
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="v2-ratio-") as temp:
        found = measure(args, Path(temp))
    found |= {"machine": machine, "load_average_end": [round(x, 2) for x in os.getloadavg()]}
    found["settings"] = {k: v for k, v in vars(args).items() if k != "out"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(found, indent=2, default=str) + "\n")
    args.out.with_suffix(".md").write_text(table(found, args))
    print(table(found, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
