"""Choose /predict's adaptive-batching knobs: wrk at 64 connections against each setting.

    python bench/batching.py [--duration 15] [--connections 64]

Starts one `bentoml serve` per setting (same model, same machine, same run), drives it
with single-row requests and writes bench/results/batching.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

from deploy.local import ROOT, Server
from train import registry
from train.data import load_default
from train.training import TrainConfig, train

SETTINGS = [(16, 1000), (64, 1000), (256, 1000), (64, 100), (64, 20)]
RESULTS = ROOT / "bench" / "results"


def wrk_script(path: Path, body: str) -> Path:
    escaped = body.replace("\\", "\\\\").replace('"', '\\"')
    path.write_text(
        f'wrk.method = "POST"\nwrk.body = "{escaped}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    return path


def parse_wrk(output: str) -> dict[str, float]:
    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.M))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": ms(latency["50"]),
        "p99_ms": ms(latency["99"]),
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per setting")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-home-"))
    os.environ["BENTOML_HOME"] = str(home)
    features, target = load_default()
    tag = train(features, target, TrainConfig(name="bench")).tag
    row = features.iloc[0].tolist()
    script = wrk_script(home / "predict.lua", json.dumps({"instances": [row]}))

    results = []
    for max_batch, max_latency in SETTINGS:
        server = Server(
            home,
            home / f"serve-{max_batch}-{max_latency}.log",
            MODEL_TAG=tag,
            BATCH_MAX_SIZE=str(max_batch),
            BATCH_MAX_LATENCY_MS=str(max_latency),
        )
        try:
            server.wait_ready()
            subprocess.run(
                ["wrk", "-t1", "-c8", "-d3s", "-s", str(script), f"{server.url}/predict"],
                check=True,
                capture_output=True,
            )
            run = subprocess.run(
                [
                    "wrk",
                    "-t2",
                    f"-c{args.connections}",
                    f"-d{args.duration}s",
                    "--latency",
                    "-s",
                    str(script),
                    f"{server.url}/predict",
                ],
                check=True,
                capture_output=True,
                text=True,
            )
        finally:
            server.stop()
        measured = {
            "max_batch_size": max_batch,
            "max_latency_ms": max_latency,
            **parse_wrk(run.stdout),
        }
        print(json.dumps(measured), flush=True)
        results.append(measured)

    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "cores": os.cpu_count(),
        "connections": args.connections,
        "duration_s": args.duration,
        "model": registry.load(tag).tag,
    }
    (RESULTS / "batching.json").write_text(json.dumps({**meta, "results": results}, indent=2))
    lines = [
        f"# /predict batching settings, {args.connections} connections, "
        f"{os.cpu_count()} cores, wrk {args.duration}s each",
        "",
        "| max_batch_size | max_latency_ms | req/s | p50 ms | p99 ms | non-2xx |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['max_batch_size']} | {r['max_latency_ms']} | {r['requests_per_s']:.0f} | "
        f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['non_2xx']} |"
        for r in results
    ]
    (RESULTS / "batching.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
