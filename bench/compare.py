"""Two runs of the serving benchmark side by side: each point's throughput and p99, as ratios.

    python -m bench.compare BEFORE/serving.json AFTER/serving.json [--system ours ...]

Meant for runs made one after the other on the same machine (for example the sources
before and after a change); a ratio above 1 means the second run answered more requests
per second, or took longer at p99.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

KEY_FIELDS = ("kind", "system", "route", "rows", "concurrency")


def _points(path: Path, systems: list[str]) -> dict[tuple, dict[str, Any]]:
    results = json.loads(path.read_text())
    return {
        tuple(point.get(field) for field in KEY_FIELDS): point
        for point in results["points"]
        if point["system"] in systems
    }


def compare(before: Path, after: Path, systems: list[str]) -> list[dict[str, Any]]:
    first, second = _points(before, systems), _points(after, systems)
    rows = []
    for key in sorted(first.keys() & second.keys(), key=str):
        old, new = first[key], second[key]
        rows.append(
            {
                **dict(zip(KEY_FIELDS, key, strict=True)),
                "before_rps": old["requests_per_s"],
                "after_rps": new["requests_per_s"],
                "rps_ratio": new["requests_per_s"] / old["requests_per_s"],
                "before_p99_ms": old["p99_ms"],
                "after_p99_ms": new["p99_ms"],
                "p99_ratio": new["p99_ms"] / old["p99_ms"],
            }
        )
    return rows


def to_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| route | rows | connections | req/s before | req/s after | ratio "
        "| p99 before (ms) | p99 after (ms) | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        route = row["route"] + (" (Arrow)" if "arrow" in row["system"] else "")
        lines.append(
            f"| {route} | {row['rows']:,} | {row['concurrency']} "
            f"| {row['before_rps']:,.0f} | {row['after_rps']:,.0f} | {row['rps_ratio']:.2f} "
            f"| {row['before_p99_ms']:.1f} | {row['after_p99_ms']:.1f} | {row['p99_ratio']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("before", type=Path, help="serving.json of the first run")
    parser.add_argument("after", type=Path, help="serving.json of the second run")
    parser.add_argument(
        "--system",
        nargs="+",
        default=["ours", "ours_arrow"],
        help="systems to compare (default: ours ours_arrow)",
    )
    args = parser.parse_args(argv)
    print(to_markdown(compare(args.before, args.after, args.system)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
