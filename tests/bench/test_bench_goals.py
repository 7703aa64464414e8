"""The serving goals computed from one run's results."""

from __future__ import annotations

from typing import Any

from bench import goals


def _point(system: str, rows_per_s: float, kind: str = "single", rows: int = 1, **extra: Any):
    return {
        "kind": kind,
        "rows": rows,
        "concurrency": extra.pop("concurrency", 64),
        "system": system,
        "rows_per_s": rows_per_s,
        "requests": extra.pop("requests", 10_000),
        "non_2xx": extra.pop("non_2xx", 0),
        "p50_ms": extra.pop("p50_ms", 20.0),
        "p99_ms": extra.pop("p99_ms", 80.0),
    }


def _probe(p50_ms: float) -> dict[str, float]:
    return {"p50_ms": p50_ms}


def _results() -> dict[str, Any]:
    return {
        "points": [
            _point("ours", 3_300.0),
            _point("ours", 9_999.0, concurrency=8),  # another point: not the goal's
            _point("ours_v2", 3_100.0),
            _point("mlserver", 1_000.0),
            _point("kserve", 1_100.0),
        ],
        "raw_runtime": "scikit-learn",
        "batch_vs_raw": [
            {"system": "ours", "rows": 10_000, "concurrency": 1, "http_rows_per_s": 1e5,
             "raw_rows_per_s": 1e6, "fraction": 0.1},
            {"system": "ours", "rows": 10_000, "concurrency": 8, "http_rows_per_s": 5.5e5,
             "raw_rows_per_s": 1e6, "fraction": 0.55},
            {"system": "ours", "rows": 1_000, "concurrency": 8, "http_rows_per_s": 9e5,
             "raw_rows_per_s": 1e6, "fraction": 0.9},
            {"system": "ours_arrow", "rows": 10_000, "concurrency": 8, "http_rows_per_s": 6e5,
             "raw_rows_per_s": 1e6, "fraction": 0.6},
        ],
        "after_burst": [
            {"system": "ours", "before": _probe(4.0), "right_after": _probe(6.0)},
            {"system": "fastapi", "before": _probe(10.0), "right_after": _probe(10.0)},
        ],
    }  # fmt: skip


def _by_name(results: dict[str, Any]) -> dict[str, goals.Goal]:
    return {goal.name: goal for goal in goals.compute(results)}


def test_goals_are_ratios_of_the_same_runs_points() -> None:
    found = list(_by_name(_results()).values())
    values = [(round(g.value, 3) if g.value is not None else None, g.met) for g in found]
    assert values == [
        (3.0, True),  # ours 3,300 against KServe 1,100, the faster peer
        (0.0, True),  # non-2xx
        (80.0, True),  # p99 ms
        (3.1, True),  # ours v2 against MLServer
        (0.939, True),  # ours v2 against ours /predict
        (0.55, True),  # JSON: the best 10,000-row share, not the 1,000-row one
        (0.6, False),  # Arrow: under 70 %
        (0.4, True),  # single client before the burst
        (0.6, False),  # right after
    ]
    assert "KServe 1,100 req/s" in found[0].figures
    assert "8 connections" in found[5].figures


def test_a_miss_on_errors_or_tail_latency_is_a_miss() -> None:
    results = _results()
    results["points"][0] = _point("ours", 4_000.0, non_2xx=3, p99_ms=140.0)
    found = goals.compute(results)
    assert (found[1].value, found[1].met) == (3.0, False)
    assert (found[2].value, found[2].met) == (140.0, False)


def test_goals_whose_points_the_run_did_not_measure_say_so() -> None:
    quick = {"points": [_point("ours", 500.0, concurrency=8)], "batch_vs_raw": []}
    found = goals.compute(quick)
    assert len(found) == 9
    assert all(goal.value is None and goal.met is None for goal in found)
    assert all("not measured" in goal.figures for goal in found if goal.unit != "count")


def test_the_v2_goal_is_judged_on_the_rounds_when_the_run_took_them() -> None:
    results = _results()  # its points alone: 3,100 against 3,300 req/s, 0.939
    results["v2_rounds"] = {"per_round": [0.8, 0.88, 0.95], "median_per_round": 0.88,
                            "seconds": 10}  # fmt: skip
    goal = _by_name(results)["single row, 64 connections: ours v2 ÷ ours /predict"]
    assert (goal.value, goal.met) == (0.88, False)
    assert "median of 3 rounds of 10 s taking turns (0.80, 0.88, 0.95)" in goal.figures
    assert "the points alone: ours v2 3,100 req/s, ours /predict 3,300 req/s" in goal.figures
