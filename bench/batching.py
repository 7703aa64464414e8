"""Serving settings under load: wrk against one `bentoml serve` per setting, same model.

    python -m bench.batching [--duration 10] [--connections 64]
        [--setting WORKERS=2,BATCH_MAX_SIZE=32 ...]

Each setting is a comma-separated list of environment variables (see docs/operations.md,
Settings). Single-row POSTs to /predict; writes bench/results/batching.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from bench.local import ROOT, Server
from train.data import load_default
from train.training import TrainConfig, train

from . import wrk

DEFAULT_SETTINGS = (
    "WORKERS=1,BATCH_MAX_SIZE=32",
    "WORKERS=2,BATCH_MAX_SIZE=16",
    "WORKERS=2,BATCH_MAX_SIZE=32",
    "WORKERS=2,BATCH_MAX_SIZE=64",
    "WORKERS=2,BATCH_MAX_SIZE=32,BATCH_MAX_LATENCY_MS=100",
    "WORKERS=2,BATCH_MAX_SIZE=32,BATCH_MAX_LATENCY_MS=20",
)
RESULTS = ROOT / "bench" / "results"


def parse_setting(text: str) -> dict[str, str]:
    pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"{text!r}: want NAME=VALUE,NAME=VALUE")
    return {name.strip(): value.strip() for name, value in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per setting")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections")
    parser.add_argument("--setting", type=parse_setting, action="append",
                        help="environment of one server, NAME=VALUE,...; repeat for more "
                             "(default: workers, batch sizes and latency budgets)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args()
    settings = args.setting or [parse_setting(s) for s in DEFAULT_SETTINGS]

    work = Path(tempfile.mkdtemp(prefix="bench-settings-"))
    os.environ["BENTOML_HOME"] = str(work / "home")
    features, target = load_default()
    tag = train(features, target, TrainConfig(name="bench")).tag
    body = work / "body.json"
    body.write_text(json.dumps({"instances": [features.iloc[0].tolist()]}))
    script = wrk.post_script(work / "post.lua", body)

    results = []
    for index, env in enumerate(settings):
        server = Server(work / "home", work / f"serve-{index}.log", MODEL_TAG=tag,
                        PAYLOAD_LOG="on", **env)  # fmt: skip
        try:
            server.wait_ready()
            wrk.run(f"{server.url}/predict", script, connections=8, duration_s=3)
            measured = wrk.run(f"{server.url}/predict", script, connections=args.connections,
                               duration_s=args.duration)  # fmt: skip
        finally:
            server.stop()
        row = {"setting": env, **measured.to_json()}
        print(json.dumps(row), flush=True)
        results.append(row)

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"cores": os.cpu_count(), "connections": args.connections,
            "duration_s": args.duration, "model": tag, "load_average": os.getloadavg()}  # fmt: skip
    (args.out / "batching.json").write_text(json.dumps({**meta, "results": results}, indent=2))
    lines = [
        f"# /predict under settings, {args.connections} connections, {os.cpu_count()} cores, "
        f"wrk {args.duration} s each (load average {os.getloadavg()[0]:.2f} at the end)",
        "",
        "| setting | req/s | p50 ms | p90 ms | p99 ms | non-2xx |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {', '.join(f'{k}={v}' for k, v in r['setting'].items())} | "
        f"{r['requests_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | "
        f"{r['p99_ms']:.1f} | {r['non_2xx']} |"
        for r in results
    ]
    (args.out / "batching.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
