"""The serving benchmark's results as JSON, a Markdown report and a PNG plot."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAME = "serving"
STYLES = ("-", "--", ":", "-.")


def write(results: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{NAME}.json", out / f"{NAME}.md", out / f"{NAME}.png"]
    paths[0].write_text(json.dumps(results, indent=2) + "\n")
    paths[1].write_text(markdown(results))
    plot(results, paths[2])
    return paths


def _label(results: dict[str, Any], key: str) -> str:
    return results["systems"][key]["label"]


def _num(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _point(record: dict[str, Any]) -> str:
    rows = "1 row" if record["rows"] == 1 else f"{record['rows']:,} rows"
    return f"{rows}, c={record['concurrency']}"


def _table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    """`align` has one letter per column: l (left) or r (right)."""
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _header(results: dict[str, Any]) -> list[str]:
    plan, machine = results["plan"], results["machine"]
    versions = machine["versions"]
    git = machine["git"]
    changed = f", {len(git['changed_files'])} files changed" if git["changed_files"] else ""
    quick = " (--quick)" if plan["quick"] else ""
    others = [f["label"] for k, f in results["systems"].items() if not k.startswith("ours")]
    return [
        "# Serving benchmark: " + ", ".join(["ours", *others]),
        "",
        f"Produced by `python -m bench.harness`{quick} at {results['started_at']}. "
        f"Every system serves `{results['model']['tag']}` "
        f"({results['model']['features']} numeric features) on this machine in the same run.",
        "",
        f"- Machine: {machine['cores']} cores, {machine['cpu_model']}, "
        f"{machine['memory_gib']} GiB; load average (1, 5, 15 min) at start "
        f"{machine['load_average_start']}, at end {machine.get('load_average_end')}",
        f"- wrk: {machine['wrk']}, {plan['wrk_threads']} thread, {plan['duration_s']} s per "
        f"point after {plan['warmup_s']} s of warm-up, request timeout {plan['wrk_timeout_s']} s",
        f"- Versions: Python {machine['python']}, "
        + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- Source: commit {git['commit'][:12]}{changed}; settings from the environment: "
        f"{machine['env'] or 'none'}",
        f"- Payload log of ours: {plan['payload_log']}",
        "",
    ]


def _point_rows(results: dict[str, Any], kind: str) -> list[list[str]]:
    rows = []
    for r in results["points"]:
        if r["kind"] != kind:
            continue
        rows.append(
            [
                f"{r['rows']:,}",
                str(r["concurrency"]),
                _label(results, r["system"]),
                f"`{r['route']}`",
                _num(r["requests_per_s"], 1),
                _num(r["rows_per_s"]),
                _num(r["p50_ms"], 1),
                _num(r["p99_ms"], 1),
                str(r["non_2xx"]),
                str(sum(r["socket_errors"].values())),
                _num(r["server_cpu_percent"]),
                _num(r["wrk_cpu_percent"], 1),
                _num(r["load_1m"], 2),
            ]
        )
    return rows


POINT_HEADER = [
    "rows/request",
    "connections",
    "system",
    "route",
    "req/s",
    "rows/s",
    "p50 ms",
    "p99 ms",
    "non-2xx",
    "socket errors",
    "server CPU %",
    "wrk CPU %",
    "load 1 min",
]


def _points(results: dict[str, Any]) -> list[str]:
    lines = ["## Throughput and latency", ""]
    for kind, title in (("single", "Single-row requests"), ("batch", "Batch requests")):
        rows = _point_rows(results, kind)
        if rows:
            lines += [f"### {title}", ""]
            lines += _table(POINT_HEADER, rows, "rrll" + "r" * 9)
            lines.append("")
    lines += [
        "rows/s counts rows of 2xx answers; socket errors include wrk's timeouts; CPU % is "
        "of one core (200 % = both cores of a 2-core machine).",
        "",
    ]
    return lines


def _ratios(results: dict[str, Any]) -> list[str]:
    if not results["ratios"]:
        return []
    rows = [
        [
            _point(r),
            f"{_label(results, r['system'])} ÷ {_label(results, r['baseline'])}",
            _num(r["throughput_ratio"], 2),
            _num(r["p99_ratio"], 2),
        ]
        for r in results["ratios"]
    ]
    return [
        "## Ratios",
        "",
        "*system ÷ baseline* at each point; rows/s above 1 and p99 below 1 mean the first "
        "system did better.",
        "",
        *_table(["point", "system ÷ baseline", "rows/s", "p99"], rows, "llrr"),
        "",
    ]


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return {
        "share": f"{value:.1%}",
        "ms": f"{value:.1f} ms",
        "count": f"{value:,.0f}",
    }.get(unit, f"{value:.2f}")


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[met]


def goal_line(goal: dict[str, Any]) -> str:
    """One goal on one line, for the console."""
    return (
        f"goal: {goal['name']}: {_figure(goal['value'], goal['unit'])} "
        f"(target {goal['target']}): {_verdict(goal['met'])}; {goal['figures']}"
    )


def _goals(results: dict[str, Any]) -> list[str]:
    rows = [
        [
            g["name"],
            g["target"],
            _figure(g["value"], g["unit"]),
            _verdict(g["met"]),
            g["figures"],
        ]
        for g in results.get("goals", [])
    ]
    if not rows:
        return []
    return [
        "## Goals",
        "",
        "Computed from this run only: every ratio is between systems measured side by side "
        "on this machine, point by point.",
        "",
        *_table(["goal", "target", "this run", "verdict", "figures"], rows, "llrll"),
        "",
    ]


def _failed(results: dict[str, Any]) -> list[str]:
    failed = results.get("failed") or {}
    if not failed:
        return []
    lines = ["## Not measured", ""]
    for key, reason in failed.items():
        lines += [
            f"- **{_label(results, key)}**:",
            "",
            "  ```",
            *(f"  {line}" for line in reason.splitlines()),
            "  ```",
            "",
        ]
    return lines


def _after_burst(results: dict[str, Any]) -> list[str]:
    records = results.get("after_burst") or []
    if not records:
        return []
    plan = results["plan"]
    rows = [
        [
            r["label"],
            _num(r["before"]["p50_ms"], 2),
            _num(r["burst"]["requests_per_s"]),
            _num(r["right_after"]["p50_ms"], 2),
            _num(r["after_rest"]["p50_ms"], 2),
        ]
        for r in records
    ]
    header = ["system", "p50 ms before", "burst req/s", "p50 ms right after"]
    header.append(f"p50 ms after {plan['rest_s']} s rest")
    return [
        "## A single client before and after a burst",
        "",
        f"`bench.after_burst`'s measurement on the servers of this run, before the points: one "
        f"connection for {plan['probe_s']} s, a burst of {plan['burst_s']} s at 64 "
        "connections, one connection again right after it and after a rest.",
        "",
        *_table(header, rows, "lrrrr"),
        "",
    ]


def _v2_rounds(results: dict[str, Any]) -> list[str]:
    found = results.get("v2_rounds")
    if not found:
        return []
    rows = [
        [
            str(index),
            "/predict" if done["first"] == "predict" else "v2",
            _num(done["predict"]["requests_per_s"]),
            _num(done["v2"]["requests_per_s"]),
            _num(ratio, 2),
            _num(done["predict"]["server_cpu_us_per_request"]),
            _num(done["v2"]["server_cpu_us_per_request"]),
        ]
        for index, (done, ratio) in enumerate(
            zip(found["rounds"], found["per_round"], strict=True), start=1
        )
    ]
    header = ["round", "first", "/predict req/s", "v2 req/s", "v2 ÷ /predict"]
    header += ["/predict server CPU µs per request", "v2 server CPU µs per request"]
    return [
        "## Ours v2 ÷ ours /predict, in rounds",
        "",
        f"`bench.v2_ratio`'s measurement on ours' server after the points: single rows at "
        f"{found['connections']} connections, {found['seconds']} s per route and round, the "
        f"order alternating. Median of the rounds' ratios **{found['median_per_round']:.2f}**, "
        f"ratio of the medians {found['of_medians']:.2f}.",
        "",
        *_table(header, rows, "rlrrrrr"),
        "",
    ]


def _raw(results: dict[str, Any]) -> list[str]:
    lines = [
        "## The model in process",
        "",
        f"{results.get('raw_description', '`pipeline.predict_proba` on a prepared frame')} "
        "in the harness's process, no HTTP, no JSON: the model's own limit.",
        "",
    ]
    rows = [
        [f"{r['batch']:,}", _num(r["rows_per_s"]), _num(r["ms_per_call"], 3)]
        for r in results["raw"]
    ]
    lines += [*_table(["rows per call", "rows/s", "ms per call"], rows, "rrr"), ""]
    if results["batch_vs_raw"]:
        rows = [
            [
                _label(results, r["system"]),
                f"{r['rows']:,}",
                str(r["concurrency"]),
                _num(r["http_rows_per_s"]),
                _num(r["raw_rows_per_s"]),
                f"{r['fraction']:.1%}",
            ]
            for r in results["batch_vs_raw"]
        ]
        header = ["system", "rows/request", "connections", "/predict_batch rows/s"]
        header += ["in process rows/s (same rows per call)", "share"]
        lines += ["### /predict_batch against the model in process", ""]
        lines += [*_table(header, rows, "lrrrrr"), ""]
    return lines


def _memory(results: dict[str, Any]) -> list[str]:
    rows = []
    for fact in results["systems"].values():
        if "memory_idle" not in fact:  # measured on another system's server
            continue
        idle, loaded = fact["memory_idle"], fact["memory_after_load"]
        rows.append(
            [
                fact["label"],
                _num(fact["cold_start_median_s"], 2),
                ", ".join(f"{s:.2f}" for s in fact["cold_start_s"]),
                str(idle["workers"]),
                ", ".join(f"{m:.0f}" for m in idle["per_worker_mib"]),
                ", ".join(f"{m:.0f}" for m in loaded["per_worker_mib"]),
                _num(loaded["tree_mib"]),
            ]
        )
    header = ["system", "cold start median s", "cold starts s", "workers"]
    header += ["RSS per worker MiB, idle", "after load", "all processes MiB after load"]
    return [
        "## Cold start and memory",
        "",
        "Cold start: from starting the server command to the first 200 from its readiness "
        "route (`/readyz`; MLServer and KServe: `/v2/health/ready`). RSS per worker: the worker "
        "process and its children; MLServer's and KServe's parent process (for MLServer, its "
        "HTTP front) counts in all processes only.",
        "",
        *_table(header, rows, "lrlrrrr"),
        "",
    ]


def _systems(results: dict[str, Any]) -> list[str]:
    lines = ["## Systems", ""]
    for fact in results["systems"].values():
        specs = f" Installed: {', '.join(fact['specs'])}." if fact.get("specs") else ""
        lines.append(f"- **{fact['label']}**: {fact['description']}.{specs}")
    return [*lines, ""]


def markdown(results: dict[str, Any]) -> str:
    lines = _header(results) + _goals(results) + _failed(results) + _systems(results)
    lines += _points(results) + _ratios(results) + _after_burst(results) + _v2_rounds(results)
    lines += _raw(results) + _memory(results)
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    figure, axes = plt.subplots(2, 2, figsize=(12, 9))
    batch_sizes = sorted({r["rows"] for r in results["points"] if r["kind"] == "batch"})
    for number, (key, fact) in enumerate(results["systems"].items()):
        color = f"C{number}"
        for axis, field in ((axes[0][0], "requests_per_s"), (axes[0][1], "p99_ms")):
            line = Line(key, "single", 1, field, fact["label"], color, "-")
            _draw(axis, results, line)
        for style, rows in zip(STYLES * 4, batch_sizes, strict=False):
            label = f"{fact['label']}, {rows:,} rows"
            for axis, field in ((axes[1][0], "rows_per_s"), (axes[1][1], "p99_ms")):
                _draw(axis, results, Line(key, "batch", rows, field, label, color, style))
    titles = [
        ("Single-row requests: throughput", "requests/s"),
        ("Single-row requests: p99 latency", "p99 ms"),
        ("Batch requests: throughput", "rows/s"),
        ("Batch requests: p99 latency", "p99 ms"),
    ]
    machine = results["machine"]
    kinds = ("single", "single", "batch", "batch")
    for axis, kind, (title, unit) in zip(axes.flat, kinds, titles, strict=True):
        axis.set_title(title)
        axis.set_xlabel("concurrent connections")
        axis.set_ylabel(unit)
        axis.set_xscale("log", base=2)
        ticks = sorted({r["concurrency"] for r in results["points"] if r["kind"] == kind})
        axis.set_xticks(ticks, [str(t) for t in ticks])
        axis.xaxis.set_minor_locator(NullLocator())
        axis.grid(True, alpha=0.3)
        if axis.has_data():
            axis.legend(fontsize=8)
    for axis in (axes[0][1], axes[1][1]):
        axis.set_yscale("log")
    figure.suptitle(
        f"{results['model']['tag']}, {machine['cores']} cores, load average at start "
        f"{machine['load_average_start'][0]}, wrk {results['plan']['duration_s']} s per point"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


@dataclass(frozen=True)
class Line:
    system: str
    kind: str
    rows: int
    field: str
    label: str
    color: str
    style: str


def _draw(axis: Any, results: dict[str, Any], line: Line) -> None:
    points = sorted(
        (r["concurrency"], r[line.field])
        for r in results["points"]
        if r["system"] == line.system and r["kind"] == line.kind and r["rows"] == line.rows
    )
    if points:
        xs, ys = zip(*points, strict=True)
        axis.plot(xs, ys, line.style, color=line.color, marker="o", label=line.label)
