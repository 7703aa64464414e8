"""Offline scoring speed: `python -m train score` against the model's own rows/s, per runtime.

    python -m bench.score_bench [--rows 1000000] [--chunk-rows 50000]
                                [--formats parquet csv] [--runtimes sklearn onnx] [--repeat 3]

Writes bench/results/score.{json,md}: for each runtime (MODEL_RUNTIME: scikit-learn's
pipeline, the ONNX model) and input format (the output has the input's format), rows/s of
`score_file` (read, check, predict, write) and of the runtime's raw answer in memory over
the same rows in the same chunks. Each repeat times raw then scoring, back to back, after
one warm-up prediction; the summary is the median of the repeats. With both runtimes, the
ONNX ÷ scikit-learn ratio of `score` rows/s is the speed-up offline scoring gets.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from model import store
from train.data import load_default
from train.score import score_file
from train.training import TrainConfig, train

RESULTS = Path(__file__).resolve().parent / "results"
FORMATS = ("parquet", "csv")


RUNTIMES = ("sklearn", "onnx")


def raw_seconds(model: store.LoadedModel, table: pd.DataFrame, chunk_rows: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(table), chunk_rows):
        model.outputs(table.iloc[start : start + chunk_rows])
    return time.perf_counter() - started


def best_raw_rows_per_s(
    model: store.LoadedModel, table: pd.DataFrame, chunk_rows: int
) -> tuple[float, dict[str, float]]:
    """The faster of the raw answer with the default BLAS threads and with one (what
    scoring uses), so the baseline is never the weaker configuration."""
    default = len(table) / raw_seconds(model, table, chunk_rows)
    with threadpool_limits(limits=1, user_api="blas"):
        one_thread = len(table) / raw_seconds(model, table, chunk_rows)
    return max(default, one_thread), {"default_blas": default, "one_blas_thread": one_thread}


def score_seconds(model: store.LoadedModel, source: Path, chunk_rows: int) -> float:
    work = source.parent
    started = time.perf_counter()
    summary = score_file(model, source, work / f"out{source.suffix}", work / "errors.csv",
                         chunk_rows=chunk_rows, progress=False)  # fmt: skip
    seconds = time.perf_counter() - started
    assert summary.bad_rows == 0 and summary.scored == summary.rows
    return seconds


def write_input(table: pd.DataFrame, work: Path, file_format: str) -> Path:
    source = work / f"in.{file_format}"
    if file_format == "parquet":
        table.to_parquet(source)
    else:
        table.to_csv(source, index=False)
    return source


def measure(
    model: store.LoadedModel, table: pd.DataFrame, source: Path, chunk_rows: int, repeat: int
) -> dict:
    runs = []
    for _ in range(repeat):
        raw, raw_by_threads = best_raw_rows_per_s(model, table, chunk_rows)
        scored = len(table) / score_seconds(model, source, chunk_rows)
        runs.append({"raw_predict_proba_rows_per_s": raw, "raw_by_blas_threads": raw_by_threads,
                     "score_rows_per_s": scored, "ratio": scored / raw,
                     "load_average": os.getloadavg()[0]})  # fmt: skip
    raw = statistics.median(run["raw_predict_proba_rows_per_s"] for run in runs)
    scored = statistics.median(run["score_rows_per_s"] for run in runs)
    return {
        "raw_predict_proba_rows_per_s": raw, "score_rows_per_s": scored,
        "ratio": scored / raw, "input_mib": source.stat().st_size / 2**20, "runs": runs,
    }  # fmt: skip


def report(result: dict) -> str:
    lines = [
        f"# Offline scoring, {result['rows']:,} rows (chunks of {result['chunk_rows']:,})\n",
        "Median of "
        f"{result['repeat']} runs; each run times the runtime's raw answer on the same chunks "
        "in memory (with the default BLAS threads and with one; the faster counts), then "
        "`python -m train score` (read, check, predict, write; output in the input's "
        "format).\n",
        "| runtime | input | input MiB | raw rows/s | `score` rows/s | score ÷ raw |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for key, measured in result["formats"].items():
        runtime, name = key.split(":")
        lines.append(
            f"| {runtime} | {name} | {measured['input_mib']:,.0f} "
            f"| {measured['raw_predict_proba_rows_per_s']:,.0f} "
            f"| {measured['score_rows_per_s']:,.0f} | **{measured['ratio']:.0%}** |"
        )
    for name in FORMATS:
        pair = [result["formats"].get(f"{runtime}:{name}") for runtime in RUNTIMES]
        if all(pair):
            speedup = pair[1]["score_rows_per_s"] / pair[0]["score_rows_per_s"]
            lines.append(f"\n`score` of {name} with ONNX ÷ with scikit-learn: **{speedup:.2f}x**")
    lines += [
        "",
        "Runs: raw rows/s with default BLAS threads / one BLAS thread, score rows/s, ratio, "
        "load average after the run:",
        "",
    ]
    for name, measured in result["formats"].items():
        runs = "; ".join(
            f"{run['raw_by_blas_threads']['default_blas']:,.0f} / "
            f"{run['raw_by_blas_threads']['one_blas_thread']:,.0f}, "
            f"{run['score_rows_per_s']:,.0f}, {run['ratio']:.0%}, {run['load_average']:.2f}"
            for run in measured["runs"]
        )
        lines.append(f"- {name}: {runs}")
    lines.append(
        f"\nPeak RSS {result['peak_rss_mib']:,.0f} MiB (this script also holds the whole input "
        f"table in memory for the raw baseline); {result['cores']} cores, load average "
        f"{result['load_average'][0]:.2f} at the end."
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the input file")
    parser.add_argument("--chunk-rows", type=int, default=50_000, help="rows per chunk")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS),
                        help="input (and output) formats to measure")  # fmt: skip
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES),
                        help="MODEL_RUNTIME values to measure")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="runs per format (median)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="score-bench-"))
    os.environ["BENTOML_HOME"] = str(work / "home")
    features, target = load_default()
    tag = train(features, target, TrainConfig(name="score-bench")).tag
    table = features.sample(n=args.rows, replace=True, random_state=0).reset_index(drop=True)

    result: dict = {"rows": args.rows, "chunk_rows": args.chunk_rows, "repeat": args.repeat,
                    "formats": {}}  # fmt: skip
    for file_format in args.formats:
        source = write_input(table, work, file_format)
        for runtime in args.runtimes:
            model = store.load(tag, runtime)
            model.outputs(table.iloc[: args.chunk_rows])  # warm-up: lazy imports
            result["formats"][f"{runtime}:{file_format}"] = measure(
                model, table, source, args.chunk_rows, args.repeat
            )
        source.unlink()
    result.update(
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        cores=os.cpu_count(),
        load_average=os.getloadavg(),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "score.json").write_text(json.dumps(result, indent=2))
    (args.out / "score.md").write_text(report(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
