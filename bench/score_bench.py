"""Offline scoring speed: `python -m train score` against the model's own rows/s, per runtime.

    python -m bench.score_bench [--rows 1000000] [--chunk-rows 50000]
                                [--formats parquet csv] [--runtimes sklearn onnx] [--repeat 3]
                                [--baseline-tree DIR [--baseline-label TEXT]] [--out DIR]

Writes bench/results/score.{json,md}: for each runtime (MODEL_RUNTIME: scikit-learn's
pipeline, the ONNX model) and input format (the output has the input's format), rows/s of
`score_file` (read, check, predict, write), the process CPU time it took, and rows/s of the
runtime's raw answer in memory over the same rows in the same chunks. Each repeat times
every runtime in turn (raw then scoring, back to back, after one warm-up prediction), so
the runtimes share the machine's load; the summary is the median of the repeats. With both
runtimes, the ONNX ÷ scikit-learn ratio of `score` rows/s is the speed-up offline scoring
gets: the ratio of the medians, and the median of each repeat's ratio.

--baseline-tree DIR compares whole commands with older code: DIR holds a copy of the
project as of an earlier commit (`git archive <commit> | tar -x -C DIR`), and
--baseline-label names it in the report (default: DIR's name). Each repeat of the Parquet
input then also runs `python -m train score` on the same file with the same chunk rows as
two processes, taking turns (which one goes first alternates): DIR's code (cwd=DIR, its
default runtime, MODEL_RUNTIME unset) and this tree's code with MODEL_RUNTIME=onnx, both on
the model trained here (one BentoML home). Each writes a new temporary output; rows/s is
over the process's wall-clock time, start-up included, and CPU time is the children's
user + system time (getrusage). The first repeat's two outputs are compared (same row
numbers and predictions, probabilities within 1e-4; the run stops if they differ) and the
check is reported. Each tree's `score_file` is also timed inside a process of its own
(after loading the model and one chunk of warm-up), so the comparison is given with and
without start-up. score.{json,md} gain a section with both medians, the ratio of the
medians, the median of the repeats' ratios and every repeat's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from model import store
from train.data import load_default
from train.score import score_file
from train.training import TrainConfig, train

RESULTS = Path(__file__).resolve().parent / "results"
CURRENT_TREE = Path(__file__).resolve().parents[1]
FORMATS = ("parquet", "csv")
PROBABILITY_TOLERANCE = 1e-4
BASELINE, NOW = "baseline", "now_onnx"  # the two `python -m train score` commands compared


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
    commands: CommandComparison | None = None,
) -> dict[str, dict]:
    """Each runtime's runs, interleaved: every repeat runs every runtime once (then, with
    `commands`, both `python -m train score` processes)."""
    runs: dict[str, list[dict]] = {runtime: [] for runtime in models}
    for _ in range(repeat):
        for runtime, model in models.items():
            runs[runtime].append(run_once(model, table, source, chunk_rows))
        if commands is not None:
            commands.take_turn(source, chunk_rows, len(table))
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


@dataclass(frozen=True)
class ScoreCommand:
    """`python -m train score` run from a tree of the project's code, with its environment."""

    tree: Path
    env: dict[str, str]

    def imported_tree(self) -> Path:
        """Where this command's `train` package comes from (the cwd must win over the
        editable install of the current tree)."""
        done = subprocess.run([sys.executable, "-c", "import train; print(train.__file__)"],
                              cwd=self.tree, env=self.env, capture_output=True, text=True,
                              check=True)  # fmt: skip
        return Path(done.stdout.strip()).resolve().parents[1]


def score_commands(baseline_tree: Path) -> dict[str, ScoreCommand]:
    """The baseline tree's code with its default runtime, and this tree's with ONNX."""
    inherited = {k: v for k, v in os.environ.items() if k not in ("MODEL_RUNTIME", "PYTHONPATH")}
    return {
        BASELINE: ScoreCommand(baseline_tree.resolve(), inherited),
        NOW: ScoreCommand(CURRENT_TREE, {**inherited, "MODEL_RUNTIME": "onnx"}),
    }


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_command(
    command: ScoreCommand, tag: str, source: Path, output: Path, chunk_rows: int, rows: int
) -> dict[str, float]:
    """Wall-clock seconds, rows/s and CPU seconds of one `python -m train score` process."""
    argv = [sys.executable, "-m", "train", "score", "--model", tag, "--input", str(source),
            "--output", str(output), "--errors", f"{output}.errors.csv",
            "--chunk-rows", str(chunk_rows), "--no-progress"]  # fmt: skip
    cpu_started, started = children_cpu_seconds(), time.perf_counter()
    scored_in(command, argv, rows, " ".join(argv))
    seconds, cpu_seconds = time.perf_counter() - started, children_cpu_seconds() - cpu_started
    return {"seconds": seconds, "rows_per_s": rows / seconds, "cpu_s": cpu_seconds}


def scored_in(command: ScoreCommand, argv: list[str], rows: int, what: str) -> dict:
    """Run `argv` (`what`) in `command`'s tree; the JSON summary it printed last, every row
    scored."""
    done = subprocess.run(argv, cwd=command.tree, env=command.env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} in {command.tree} exited {done.returncode}:\n"
                           f"{done.stderr[-4000:]}")  # fmt: skip
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    if (printed["scored"], printed["bad_rows"]) != (rows, 0):
        raise RuntimeError(f"{command.tree}: scored {printed}, expected {rows} good rows")
    return printed


# Run in a tree's directory: its `score_file` timed inside the process, after one chunk of
# warm-up, so start-up (interpreter, imports, loading the model) is left out.
TIMED_SCORING = """
import json, os, sys, time
from pathlib import Path
from model import store
from train.score import score_file
tag, source, warm, output, chunk_rows = sys.argv[1:6]
runtime = os.environ.get("MODEL_RUNTIME")
model = store.load(tag, runtime) if runtime else store.load(tag)
out = Path(output)
score_file(model, Path(warm), out.with_name("warm.parquet"), out.with_name("warm-errors.csv"),
           chunk_rows=int(chunk_rows), progress=False)
started, cpu_started = time.perf_counter(), time.process_time()
summary = score_file(model, Path(source), out, out.with_name(out.name + ".errors.csv"),
                     chunk_rows=int(chunk_rows), progress=False)
print(json.dumps({"seconds": time.perf_counter() - started,
                  "cpu_s": time.process_time() - cpu_started,
                  "scored": summary.scored, "bad_rows": summary.bad_rows,
                  "runtime": "onnx" if getattr(model, "compiled", None) else "sklearn"}))
"""


def run_timed_scoring(
    command: ScoreCommand,
    tag: str,
    source: Path,
    warm: Path,
    output: Path,
    chunk_rows: int,
    rows: int,
) -> dict[str, float | str]:
    """Seconds, rows/s and CPU seconds of `score_file` inside a process of `command`'s tree."""
    argv = [sys.executable, "-c", TIMED_SCORING, tag, str(source), str(warm), str(output),
            str(chunk_rows)]  # fmt: skip
    printed = scored_in(command, argv, rows, "timed scoring")
    return {"seconds": printed["seconds"], "rows_per_s": rows / printed["seconds"],
            "cpu_s": printed["cpu_s"], "runtime": printed["runtime"]}  # fmt: skip


def compare_outputs(baseline: Path, now: Path, tolerance: float = PROBABILITY_TOLERANCE) -> dict:
    """Whether two scoring outputs give the same answers: same columns and row numbers,
    equal predictions, probabilities within `tolerance`."""
    old, new = pq.read_table(baseline).to_pandas(), pq.read_table(now).to_pandas()
    found: dict = {"rows": len(old), "columns": list(old.columns), "tolerance": tolerance,
                   "same_columns": list(old.columns) == list(new.columns),
                   "same_row_numbers": len(old) == len(new)}  # fmt: skip
    if not (found["same_columns"] and found["same_row_numbers"]):
        return {**found, "agree": False}
    found["same_row_numbers"] = bool(np.array_equal(old["row"], new["row"]))
    found["predictions_differing"] = int((old["prediction"] != new["prediction"]).sum())
    probabilities = [name for name in old.columns if name.startswith("probability_")]
    differences = (old[probabilities] - new[probabilities]).abs().to_numpy()
    found["max_probability_difference"] = float(differences.max()) if differences.size else 0.0
    found["agree"] = (
        found["same_row_numbers"]
        and found["predictions_differing"] == 0
        and found["max_probability_difference"] <= tolerance
    )
    return found


@dataclass
class CommandComparison:
    """The baseline's `python -m train score` against this tree's with ONNX, taking turns;
    the first turn's outputs are checked for the same answers."""

    commands: dict[str, ScoreCommand]
    tag: str
    work: Path
    runs: list[dict] = field(default_factory=list)
    agreement: dict | None = None

    def check_trees(self) -> None:
        for name, command in self.commands.items():
            imported = command.imported_tree()
            if imported != command.tree:
                raise RuntimeError(f"{name}: `train` imported from {imported}, not {command.tree}")

    def take_turn(self, source: Path, chunk_rows: int, rows: int) -> None:
        order = [BASELINE, NOW] if len(self.runs) % 2 == 0 else [NOW, BASELINE]
        outputs = Path(tempfile.mkdtemp(prefix="cli-", dir=self.work))
        run: dict = {"first": order[0]}
        for name in order:
            run[name] = run_command(self.commands[name], self.tag, source,
                                    outputs / f"{name}.parquet", chunk_rows, rows)  # fmt: skip
        warm = outputs / "warm-input.parquet"
        pq.write_table(pq.read_table(source).slice(0, chunk_rows), warm)
        run["scoring"] = {
            name: run_timed_scoring(self.commands[name], self.tag, source, warm,
                                    outputs / f"{name}-timed.parquet", chunk_rows, rows)
            for name in order
        }  # fmt: skip
        run["load_average"] = os.getloadavg()[0]
        if self.agreement is None:
            self.agreement = compare_outputs(outputs / f"{BASELINE}.parquet",
                                             outputs / f"{NOW}.parquet")  # fmt: skip
            if not self.agreement["agree"]:
                raise SystemExit(f"the baseline and the current code answer differently, "
                                 f"comparing them is meaningless (outputs in {outputs}): "
                                 f"{self.agreement}")  # fmt: skip
        shutil.rmtree(outputs)
        self.runs.append(run)


def ratios(runs: list[dict]) -> dict:
    """Medians of both, the ratio of the medians and of each repeat (now ÷ baseline)."""
    medians = {
        name: {
            "rows_per_s": statistics.median(run[name]["rows_per_s"] for run in runs),
            "cpu_s": statistics.median(run[name]["cpu_s"] for run in runs),
        }
        for name in (BASELINE, NOW)
    }
    per_repeat = [run[NOW]["rows_per_s"] / run[BASELINE]["rows_per_s"] for run in runs]
    return {
        **medians,
        "of_medians": medians[NOW]["rows_per_s"] / medians[BASELINE]["rows_per_s"],
        "median_per_repeat": statistics.median(per_repeat), "per_repeat": per_repeat,
        "cpu": medians[BASELINE]["cpu_s"] / medians[NOW]["cpu_s"],
    }  # fmt: skip


def command_summary(runs: list[dict], agreement: dict, label: str, baseline_tree: Path) -> dict:
    """Both measures' ratios: whole commands, and (when timed) scoring inside the processes."""
    summary = {
        "label": label, "baseline_tree": str(baseline_tree), "now_commit": head_commit(),
        "input": "parquet", **ratios(runs), "agreement": agreement, "runs": runs,
    }  # fmt: skip
    if runs and all("scoring" in run for run in runs):
        summary["scoring"] = ratios([run["scoring"] for run in runs])
    return summary


def head_commit() -> str | None:
    done = subprocess.run(["git", "-C", str(CURRENT_TREE), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)  # fmt: skip
    return done.stdout.strip() or None


def agreement_text(agreement: dict) -> str:
    if not agreement["agree"]:
        return f"**The answers differ**: {agreement}"
    return (
        f"The answers agree (first repeat's outputs): {agreement['rows']:,} rows, the same "
        f"row numbers and predictions, probabilities at most "
        f"{agreement['max_probability_difference']:.1e} apart (tolerance "
        f"{agreement['tolerance']:.0e})."
    )


def command_section(compared: dict, rows: int, chunk_rows: int) -> str:
    label = compared["label"]
    now = "now" + (f" (HEAD {compared['now_commit']} and the working tree)"
                   if compared["now_commit"] else "")  # fmt: skip
    lines = [
        f"## `python -m train score`, Parquet, as of {label} vs now with ONNX\n",
        f"Each repeat also runs `python -m train score` on the same {rows:,}-row Parquet "
        f"file (chunks of {chunk_rows:,}) as two processes taking turns (which one goes "
        f"first alternates): the code as of {label} (`{compared['baseline_tree']}`, its "
        f"default runtime) and {now} with MODEL_RUNTIME=onnx. Rows/s is over each "
        "process's wall-clock time, so **process start-up (interpreter, imports, loading "
        "the model) is included in both**; CPU s is the process's user + system time.\n",
        "| code | runtime | `score` rows/s | CPU s |",
        "|---|---|---:|---:|",
        f"| {label} | default | {compared[BASELINE]['rows_per_s']:,.0f} "
        f"| {compared[BASELINE]['cpu_s']:.2f} |",
        f"| now | onnx | {compared[NOW]['rows_per_s']:,.0f} | {compared[NOW]['cpu_s']:.2f} |",
        "",
        f"Now with ONNX ÷ {label}: **{compared['of_medians']:.2f}x** (median of the repeats' "
        f"ratios {compared['median_per_repeat']:.2f}x: "
        f"{', '.join(f'{ratio:.2f}' for ratio in compared['per_repeat'])}); "
        f"CPU time ÷ {compared['cpu']:.2f}\n",
        agreement_text(compared["agreement"]),
        "",
        f"Runs: {label} rows/s, CPU s; now rows/s, CPU s; which went first; load average "
        "after the pair:",
        "",
    ]
    for index, run in enumerate(compared["runs"], start=1):
        first = label if run["first"] == BASELINE else "now"
        lines.append(
            f"- {index}: {run[BASELINE]['rows_per_s']:,.0f}, {run[BASELINE]['cpu_s']:.2f}; "
            f"{run[NOW]['rows_per_s']:,.0f}, {run[NOW]['cpu_s']:.2f}; {first}; "
            f"{run['load_average']:.2f}"
        )
    if "scoring" in compared:
        lines += ["", *scoring_lines(compared, label)]
    return "\n".join(lines) + "\n"


def scoring_lines(compared: dict, label: str) -> list[str]:
    """The same pair with `score_file` timed inside each process: start-up left out."""
    timed = compared["scoring"]
    lines = [
        f"### Scoring alone, as of {label} vs now with ONNX\n",
        "In the same repeats, each tree's `score_file` (read, check, predict, write) is also "
        "timed inside a process of its own, after loading the model and scoring one chunk "
        "as a warm-up: the rows/s the in-process table above measures, without start-up.\n",
        "| code | runtime | `score_file` rows/s | CPU s |",
        "|---|---|---:|---:|",
        f"| {label} | default | {timed[BASELINE]['rows_per_s']:,.0f} "
        f"| {timed[BASELINE]['cpu_s']:.2f} |",
        f"| now | onnx | {timed[NOW]['rows_per_s']:,.0f} | {timed[NOW]['cpu_s']:.2f} |",
        "",
        f"Now with ONNX ÷ {label}: **{timed['of_medians']:.2f}x** (median of the repeats' "
        f"ratios {timed['median_per_repeat']:.2f}x: "
        f"{', '.join(f'{ratio:.2f}' for ratio in timed['per_repeat'])}); "
        f"CPU time ÷ {timed['cpu']:.2f}",
    ]
    return lines


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
    text = "\n".join(lines) + "\n"
    if "commands" in result:
        text += "\n" + command_section(result["commands"], result["rows"], result["chunk_rows"])
    return text


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
    parser.add_argument("--baseline-tree", type=Path,
                        help="a copy of older code: also time its `python -m train score` "
                        "against this tree's with ONNX, on the Parquet input")  # fmt: skip
    parser.add_argument("--baseline-label", help="the baseline's name in the report "
                        "(e.g. its commit; default: the directory's name)")  # fmt: skip
    args = parser.parse_args()
    if args.baseline_tree is not None:
        if not (args.baseline_tree / "train" / "__main__.py").is_file():
            parser.error(f"--baseline-tree {args.baseline_tree} has no train/__main__.py")
        if "parquet" not in args.formats:
            parser.error("--baseline-tree times the Parquet input: add parquet to --formats")

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
    commands = None
    if args.baseline_tree is not None:
        commands = CommandComparison(score_commands(args.baseline_tree), tag, work)
        commands.check_trees()
    for file_format in args.formats:
        source = write_input(table, work, file_format)
        pair = commands if file_format == "parquet" else None
        measured = measure(models, table, source, args.chunk_rows, args.repeat, pair)
        for runtime, summarized in measured.items():
            result["formats"][f"{runtime}:{file_format}"] = summarized
        source.unlink()
    result["speedups"] = speedups(result)
    if commands is not None:
        assert commands.agreement is not None
        label = args.baseline_label or args.baseline_tree.resolve().name
        result["commands"] = command_summary(commands.runs, commands.agreement, label,
                                             args.baseline_tree.resolve())  # fmt: skip
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
