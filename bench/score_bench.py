"""Offline scoring speed: `python -m train score` against the model's own rows/s, per runtime.

    python -m bench.score_bench [--rows 1000000] [--chunk-rows 50000]
                                [--formats parquet csv] [--runtimes sklearn onnx] [--repeat 3]

Writes bench/results/score.{json,md}: for each runtime (MODEL_RUNTIME: scikit-learn's
pipeline, the ONNX model) and input format (the output has the input's format), rows/s of
`score_file` (read, check, predict, write), the process CPU time it took, and rows/s of the
runtime's raw answer in memory over the same rows in the same chunks. Each repeat times
every runtime in turn (raw then scoring, back to back, after one warm-up prediction), so
the runtimes share the machine's load; the summary is the median of the repeats. With both
runtimes, the ONNX ÷ scikit-learn ratio of `score` rows/s is the speed-up offline scoring
gets: the ratio of the medians, and the median of each repeat's ratio.
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


def score_seconds(model: store.LoadedModel, source: Path, chunk_rows: int) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of scoring `source`."""
    work = source.parent
    started, cpu_started = time.perf_counter(), time.process_time()
    summary = score_file(model, source, work / f"out{source.suffix}", work / "errors.csv",
                         chunk_rows=chunk_rows, progress=False)  # fmt: skip
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    assert summary.bad_rows == 0 and summary.scored == summary.rows
    return seconds, cpu_seconds


def write_input(table: pd.DataFrame, work: Path, file_format: str) -> Path:
    source = work / f"in.{file_format}"
    if file_format == "parquet":
        table.to_parquet(source)
    else:
        table.to_csv(source, index=False)
    return source


def run_once(model: store.LoadedModel, table: pd.DataFrame, source: Path, chunk_rows: int) -> dict:
    raw, raw_by_threads = best_raw_rows_per_s(model, table, chunk_rows)
    seconds, cpu_seconds = score_seconds(model, source, chunk_rows)
    scored = len(table) / seconds
    return {"raw_predict_proba_rows_per_s": raw, "raw_by_blas_threads": raw_by_threads,
            "score_rows_per_s": scored, "score_cpu_s": cpu_seconds, "ratio": scored / raw,
            "load_average": os.getloadavg()[0]}  # fmt: skip


def measure(
    models: dict[str, store.LoadedModel],
    table: pd.DataFrame,
    source: Path,
    chunk_rows: int,
    repeat: int,
) -> dict[str, dict]:
    """Each runtime's runs, interleaved: every repeat runs every runtime once."""
    runs: dict[str, list[dict]] = {runtime: [] for runtime in models}
    for _ in range(repeat):
        for runtime, model in models.items():
            runs[runtime].append(run_once(model, table, source, chunk_rows))
    return {runtime: summary(measured, source) for runtime, measured in runs.items()}


def summary(runs: list[dict], source: Path) -> dict:
    raw = statistics.median(run["raw_predict_proba_rows_per_s"] for run in runs)
    scored = statistics.median(run["score_rows_per_s"] for run in runs)
    cpu = statistics.median(run["score_cpu_s"] for run in runs)
    return {
        "raw_predict_proba_rows_per_s": raw, "score_rows_per_s": scored, "score_cpu_s": cpu,
        "ratio": scored / raw, "input_mib": source.stat().st_size / 2**20, "runs": runs,
    }  # fmt: skip


def speedups(result: dict) -> dict[str, dict[str, float]]:
    """ONNX ÷ scikit-learn `score` rows/s per format: of the medians, and per repeat."""
    found = {}
    for name in FORMATS:
        pair = [result["formats"].get(f"{runtime}:{name}") for runtime in RUNTIMES]
        if not all(pair):
            continue
        sklearn, onnx = pair
        per_repeat = [
            fast["score_rows_per_s"] / slow["score_rows_per_s"]
            for slow, fast in zip(sklearn["runs"], onnx["runs"], strict=True)
        ]
        found[name] = {
            "of_medians": onnx["score_rows_per_s"] / sklearn["score_rows_per_s"],
            "median_per_repeat": statistics.median(per_repeat),
            "per_repeat": per_repeat,
            "cpu": sklearn["score_cpu_s"] / onnx["score_cpu_s"],
        }
    return found


def report(result: dict) -> str:
    lines = [
        f"# Offline scoring, {result['rows']:,} rows (chunks of {result['chunk_rows']:,})\n",
        "Median of "
        f"{result['repeat']} runs; the runtimes take turns within each repeat. Each run "
        "times the runtime's raw answer on the same chunks in memory (with the default BLAS "
        "threads and with one; the faster counts), then `python -m train score` (read, check, "
        "predict, write; output in the input's format) and the process CPU time it took.\n",
        "| runtime | input | input MiB | raw rows/s | `score` rows/s | score ÷ raw "
        "| `score` CPU s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key, measured in result["formats"].items():
        runtime, name = key.split(":")
        lines.append(
            f"| {runtime} | {name} | {measured['input_mib']:,.0f} "
            f"| {measured['raw_predict_proba_rows_per_s']:,.0f} "
            f"| {measured['score_rows_per_s']:,.0f} | **{measured['ratio']:.0%}** "
            f"| {measured['score_cpu_s']:.2f} |"
        )
    for name, speedup in result.get("speedups", {}).items():
        per_repeat = ", ".join(f"{ratio:.2f}" for ratio in speedup["per_repeat"])
        lines.append(
            f"\n`score` of {name} with ONNX ÷ with scikit-learn: **{speedup['of_medians']:.2f}x** "
            f"(median of the repeats' ratios {speedup['median_per_repeat']:.2f}x: {per_repeat}); "
            f"CPU time ÷ {speedup['cpu']:.2f}"
        )
    lines += [
        "",
        "Runs: raw rows/s with default BLAS threads / one BLAS thread, score rows/s, ratio, "
        "score CPU s, load average after the run:",
        "",
    ]
    for name, measured in result["formats"].items():
        runs = "; ".join(
            f"{run['raw_by_blas_threads']['default_blas']:,.0f} / "
            f"{run['raw_by_blas_threads']['one_blas_thread']:,.0f}, "
            f"{run['score_rows_per_s']:,.0f}, {run['ratio']:.0%}, {run['score_cpu_s']:.2f}, "
            f"{run['load_average']:.2f}"
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
    models = {runtime: store.load(tag, runtime) for runtime in args.runtimes}
    for model in models.values():
        model.outputs(table.iloc[: args.chunk_rows])  # warm-up: lazy imports
    for file_format in args.formats:
        source = write_input(table, work, file_format)
        measured = measure(models, table, source, args.chunk_rows, args.repeat)
        for runtime, summarized in measured.items():
            result["formats"][f"{runtime}:{file_format}"] = summarized
        source.unlink()
    result["speedups"] = speedups(result)
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
