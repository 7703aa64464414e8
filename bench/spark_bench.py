"""The Spark engine against the local scorer on the same Parquet file.

    python -m bench.spark_bench [--rows 1000000] [--large-rows 5000000] [--repeat 3]
                                [--master local[2]] [--out bench/results]

Writes bench/results/spark.{json,md}. One process: the local scorer (`score_file`) and
Spark (`score_on_spark`, local[2] by default) score the same file, back to back, so the
ratio holds even when other work shares the machine. Timed apart:

- the JVM's start (creating the SparkSession), once;
- the first job (Python workers started, the model shipped and loaded), on a small file;
- a job's fixed cost: a 1,000-row file, once the workers are warm;
- scoring, after one untimed run of each engine on the file: median of `--repeat`
  rounds, each running the local scorer, mapInArrow and mapInPandas on every core, and
  mapInArrow in one partition (one core: the per-core rate); then rounds of both engines
  on the large file (time per row from `--rows` to `--large-rows`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from model import store
from train.data import load_default
from train.score import score_file
from train.spark.engine import score_on_spark
from train.spark.session import spark_session
from train.training import TrainConfig, train

RESULTS = Path(__file__).resolve().parent / "results"
ROW_GROUP_ROWS = 100_000  # Parquet writers in lakes use row groups of this order, or larger
SMALL_ROWS = 1_000


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def write_input(features: pd.DataFrame, rows: int, path: Path) -> Path:
    table = features.sample(n=rows, replace=True, random_state=0).reset_index(drop=True)
    table.to_parquet(path, row_group_size=ROW_GROUP_ROWS)
    return path


def median_seconds(action: Callable[[], object], repeat: int) -> dict:
    runs = [timed(action) for _ in range(repeat)]
    return {"seconds": statistics.median(runs), "runs": runs, "load_average": os.getloadavg()[0]}


def interleaved(actions: dict[str, Callable[[], object]], repeat: int) -> dict[str, dict]:
    """Each action once per round, round after round: load changes hit them all alike."""
    runs: dict[str, list[float]] = {name: [] for name in actions}
    loads: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(repeat):
        for name, action in actions.items():
            runs[name].append(timed(action))
            loads[name].append(os.getloadavg()[0])
    return {
        name: {"seconds": statistics.median(runs[name]), "runs": runs[name],
               "load_average": statistics.median(loads[name])}
        for name in actions
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the main file")
    parser.add_argument("--large-rows", type=int, default=5_000_000, help="rows of the large file")
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration (median)")
    parser.add_argument("--master", default="local[2]", help="Spark master (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="spark-bench-"))
    os.environ["BENTOML_HOME"] = str(work / "home")
    try:
        result = measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "spark.json").write_text(json.dumps(result, indent=2))
    (args.out / "spark.md").write_text(report(result))
    print(json.dumps(result))


def measure(args: argparse.Namespace, work: Path) -> dict:
    features, target = load_default()
    model = store.load(train(features, target, TrainConfig(name="spark-bench")).tag)
    small = write_input(features, SMALL_ROWS, work / "small.parquet")
    main_file = write_input(features, args.rows, work / "main.parquet")
    large = write_input(features, args.large_rows, work / "large.parquet")

    def local(source: Path) -> Callable[[], object]:
        return lambda: score_file(model, source, work / "local-out.parquet",
                                  work / "local-errors.csv", progress=False)  # fmt: skip

    quiet = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
    jvm_seconds = timed(lambda: spark_session(args.master, quiet))
    spark = spark_session(args.master)
    spark.sparkContext.setLogLevel("ERROR")
    cores = spark.sparkContext.defaultParallelism

    def on_spark(source: Path, **options: object) -> Callable[[], object]:
        return lambda: score_on_spark(spark, model, str(source), str(work / "spark-out.parquet"),
                                      str(work / "spark-errors.csv"), **options)  # type: ignore[arg-type]  # fmt: skip

    try:
        first_job = timed(on_spark(small))
        job_overhead = median_seconds(on_spark(small), args.repeat)
        warm_up = {"local": timed(local(main_file)), "spark": timed(on_spark(main_file))}
        timings = interleaved(
            {
                "local": local(main_file),
                "spark_arrow": on_spark(main_file),
                "spark_pandas": on_spark(main_file, udf="pandas"),
                "spark_arrow_one_partition": on_spark(main_file, partitions=1),
            },
            args.repeat,
        )
        timings |= interleaved(
            {"local_large": local(large), "spark_arrow_large": on_spark(large)},
            max(1, args.repeat - 1),
        )
    finally:
        spark.stop()
    rows_of = {name: args.large_rows if name.endswith("large") else args.rows for name in timings}
    for name, timing in timings.items():
        timing["rows_per_s"] = rows_of[name] / timing["seconds"]
        timing["us_per_row"] = timing["seconds"] / rows_of[name] * 1e6
    return with_rates({
        "rows": args.rows, "large_rows": args.large_rows, "repeat": args.repeat,
        "master": args.master, "spark_cores": cores, "machine_cores": os.cpu_count(),
        "row_group_rows": ROW_GROUP_ROWS,
        "input_mib": main_file.stat().st_size / 2**20,
        "large_input_mib": large.stat().st_size / 2**20,
        "jvm_start_seconds": jvm_seconds, "first_job_seconds": first_job,
        "warm_up_seconds": warm_up,
        "job_overhead": job_overhead, "timings": timings,
        "spark_to_local": timings["spark_arrow"]["rows_per_s"] / timings["local"]["rows_per_s"],
        "pandas_to_arrow": timings["spark_pandas"]["rows_per_s"]
        / timings["spark_arrow"]["rows_per_s"],
        "load_average": os.getloadavg(),
    })  # fmt: skip


def with_rates(result: dict) -> dict:
    """The rates a cluster projection uses, from the timings.

    One task keeps two processes busy: the JVM thread that reads and converts rows to
    Arrow, and the Python worker that checks and scores them. So one partition is not one
    core's work; the per-core rate is the whole job on every core, divided by the cores.
    """
    t = result["timings"]
    overhead = result["job_overhead"]["seconds"]
    result["per_task_rows_per_s"] = result["rows"] / (
        t["spark_arrow_one_partition"]["seconds"] - overhead
    )
    result["per_core_rows_per_s"] = (
        result["large_rows"]
        / (t["spark_arrow_large"]["seconds"] - overhead)
        / result["spark_cores"]
    )
    return result


def report(result: dict) -> str:
    t = result["timings"]
    rows, large = result["rows"], result["large_rows"]
    lines = [
        f"# Spark engine against the local scorer, {rows:,} Parquet rows\n",
        f"Spark `{result['master']}` ({result['spark_cores']} cores) and `python -m train "
        f"score` on the same file ({result['input_mib']:.0f} MiB, row groups of "
        f"{result['row_group_rows']:,} rows), in one process, back to back; median of "
        f"{result['repeat']} rounds (each runs every configuration once, after one untimed "
        "run of each engine). Spark times are whole jobs: read, check, score, write the "
        "output and the errors dataset.\n",
        "| start-up | seconds |",
        "|---|---:|",
        f"| JVM start (SparkSession created) | {result['jvm_start_seconds']:.1f} |",
        f"| first job: Python workers started, model shipped and loaded ({SMALL_ROWS:,} rows) "
        f"| {result['first_job_seconds']:.1f} |",
        f"| fixed cost of a later job ({SMALL_ROWS:,} rows) "
        f"| {result['job_overhead']['seconds']:.2f} |",
        "",
        "| engine | rows | seconds | rows/s | µs per row |",
        "|---|---:|---:|---:|---:|",
    ]
    labels = {
        "local": ("local scorer", rows),
        "spark_arrow": ("Spark, mapInArrow", rows),
        "spark_pandas": ("Spark, mapInPandas", rows),
        "spark_arrow_one_partition": ("Spark, mapInArrow, one partition (one core)", rows),
        "local_large": ("local scorer", large),
        "spark_arrow_large": ("Spark, mapInArrow", large),
    }
    for name, (label, count) in labels.items():
        timing = t[name]
        lines.append(
            f"| {label} | {count:,} | {timing['seconds']:.2f} | {timing['rows_per_s']:,.0f} "
            f"| {timing['us_per_row']:.2f} |"
        )
    lines += [
        "",
        f"- Spark (mapInArrow) to the local scorer: **{result['spark_to_local']:.0%}** of its "
        "rows/s on the same file.",
        f"- mapInPandas to mapInArrow: {result['pandas_to_arrow']:.0%}; compare with the "
        "spread of the runs below before reading a winner into it.",
        f"- Time per row, {rows:,} to {large:,} rows: Spark "
        f"{t['spark_arrow']['us_per_row']:.2f} to {t['spark_arrow_large']['us_per_row']:.2f} "
        f"µs, local {t['local']['us_per_row']:.2f} to {t['local_large']['us_per_row']:.2f} µs.",
        f"- One task (one partition, the fixed job cost taken off): "
        f"{result['per_task_rows_per_s']:,.0f} rows/s; it keeps two processes busy (the "
        "JVM converting rows to Arrow, the Python worker scoring), so it is no faster "
        "alone than on both cores here.",
        f"- Per-core rate ({large:,} rows on all {result['spark_cores']} cores, the fixed "
        f"job cost taken off, divided by the cores): "
        f"**{result['per_core_rows_per_s']:,.0f} rows/s per core**, the rate a cluster "
        "projection uses.",
        "",
        "Runs (seconds): "
        + "; ".join(
            f"{name} {', '.join(f'{s:.2f}' for s in timing['runs'])} "
            f"(load {timing['load_average']:.2f})"
            for name, timing in t.items()
        ),
        "",
        f"{result['machine_cores']} cores; load average {result['load_average'][0]:.2f} at the "
        "end. Other work shared the machine: read the ratios, measured side by side, rather "
        "than the absolute numbers.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
