"""Offline scoring speed: `python -m train score` against the model's own predict rows/s.

    python -m bench.score_bench [--rows 1000000] [--chunk-rows 50000] [--format parquet]

Writes bench/results/score.{json,md}: rows/s of `score_file` (read, check, predict,
write) and of raw `predict_proba` over the same rows in the same chunks, in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from train import registry
from train.data import load_default
from train.score import score_file
from train.training import TrainConfig, train

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the input file")
    parser.add_argument("--chunk-rows", type=int, default=50_000, help="rows per chunk")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet",
                        help="input and output format")  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="score-bench-"))
    os.environ["BENTOML_HOME"] = str(work / "home")
    features, target = load_default()
    model = registry.load(train(features, target, TrainConfig(name="score-bench")).tag)
    table = features.sample(n=args.rows, replace=True, random_state=0).reset_index(drop=True)
    source = work / f"in.{args.format}"
    if args.format == "parquet":
        table.to_parquet(source)
    else:
        table.to_csv(source, index=False)

    started = time.perf_counter()
    for start in range(0, len(table), args.chunk_rows):
        model.pipeline.predict_proba(table.iloc[start : start + args.chunk_rows])
    raw_seconds = time.perf_counter() - started

    started = time.perf_counter()
    summary = score_file(model, source, work / f"out.{args.format}", work / "errors.csv",
                         chunk_rows=args.chunk_rows, progress=False)  # fmt: skip
    score_seconds = time.perf_counter() - started
    assert summary.scored == args.rows

    result = {
        "rows": args.rows, "chunk_rows": args.chunk_rows, "format": args.format,
        "raw_predict_proba_rows_per_s": args.rows / raw_seconds,
        "score_rows_per_s": args.rows / score_seconds,
        "ratio": raw_seconds / score_seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "input_mib": source.stat().st_size / 2**20,
        "cores": os.cpu_count(), "load_average": os.getloadavg(),
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "score.json").write_text(json.dumps(result, indent=2))
    raw_rate, score_rate = result["raw_predict_proba_rows_per_s"], result["score_rows_per_s"]
    (args.out / "score.md").write_text(
        f"# Offline scoring, {args.rows:,} rows ({args.format}, chunks of {args.chunk_rows:,})\n\n"
        "| | rows/s |\n|---|---:|\n"
        f"| raw `predict_proba`, same chunks, in memory | {raw_rate:,.0f} |\n"
        f"| `python -m train score` (read, check, predict, write) | {score_rate:,.0f} |\n\n"
        f"Ratio: **{result['ratio']:.0%}** of raw. Peak RSS {result['peak_rss_mib']:,.0f} MiB "
        f"(the whole input table is also held in memory by this script for the raw baseline); "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}.\n"
    )  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
