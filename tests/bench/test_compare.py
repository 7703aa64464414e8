"""Two benchmark runs compared point by point."""

from __future__ import annotations

import json
from pathlib import Path

from bench.compare import compare, to_markdown


def point(system: str, concurrency: int, rps: float, p99: float) -> dict:
    return {
        "kind": "single",
        "system": system,
        "route": "/predict",
        "rows": 1,
        "concurrency": concurrency,
        "requests_per_s": rps,
        "p99_ms": p99,
    }


def run(path: Path, points: list[dict]) -> Path:
    path.write_text(json.dumps({"points": points}))
    return path


def test_points_of_the_same_system_are_paired_and_others_left_out(tmp_path):
    before = run(tmp_path / "a.json", [point("ours", 1, 100, 10), point("fastapi", 1, 50, 5)])
    after = run(tmp_path / "b.json", [point("ours", 1, 120, 8), point("ours", 8, 300, 20)])
    (row,) = compare(before, after, ["ours"])
    assert (row["concurrency"], row["rps_ratio"], row["p99_ratio"]) == (1, 1.2, 0.8)
    assert "| /predict | 1 | 1 | 100 | 120 | 1.20 | 10.0 | 8.0 | 0.80 |" in to_markdown([row])
