"""The serving goals, computed from one run's results: ratios against baselines of the same run.

Each goal names its figure, the target and the figures behind it; a goal whose points the run
did not measure (`--quick`, a system left out or failed) says so instead of passing or failing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from . import systems

CONNECTIONS = 64
BATCH_ROWS = 10_000
SINGLE_VS_PEERS = 3.0
P99_MS = 100.0
V2_VS_PREDICT = 0.9  # within 10 % of /predict
JSON_SHARE, ARROW_SHARE = 0.5, 0.7
AFTER_BURST_SHARE = 0.5


@dataclass(frozen=True)
class Goal:
    name: str
    target: str
    value: float | None
    met: bool | None  # None: not measured in this run
    figures: str
    unit: str  # how the value reads: "ratio", "share", "ms" or "count"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


Point = dict[str, Any]


def _single(results: dict[str, Any], system: str) -> Point | None:
    for point in results["points"]:
        key = (point["kind"], point["rows"], point["concurrency"], point["system"])
        if key == ("single", 1, CONNECTIONS, system):
            return point
    return None


def _rate(point: Point | None) -> str:
    return "not measured" if point is None else f"{point['rows_per_s']:,.0f} req/s"


def _goal(
    name: str,
    target: str,
    value: float | None,
    check: Callable[[float], bool],
    figures: str,
    unit: str = "ratio",
) -> Goal:
    return Goal(name, target, value, None if value is None else check(value), figures, unit)


def _ratio(top: Point | None, bottom: Point | None) -> float | None:
    if top is None or bottom is None or bottom["rows_per_s"] <= 0:
        return None
    return top["rows_per_s"] / bottom["rows_per_s"]


def single_row(results: dict[str, Any]) -> list[Goal]:
    ours = _single(results, systems.OURS)
    peers = [p for p in (_single(results, k) for k in systems.PEERS) if p is not None]
    faster = max(peers, key=lambda p: p["rows_per_s"], default=None)
    where = f"single row, {CONNECTIONS} connections"
    named = ", ".join(
        f"{label} {_rate(_single(results, key))}"
        for key, label in ((systems.MLSERVER, "MLServer"), (systems.KSERVE, "KServe"))
    )
    return [
        _goal(
            f"{where}: ours ÷ the faster of MLServer and KServe",
            f"≥ {SINGLE_VS_PEERS:g}x",
            _ratio(ours, faster),
            lambda v: v >= SINGLE_VS_PEERS,
            f"ours {_rate(ours)}; {named}",
        ),
        _goal(
            f"{where}: ours' non-2xx answers",
            "0",
            None if ours is None else float(ours["non_2xx"]),
            lambda v: v == 0,
            f"of {ours['requests']:,} requests" if ours else "not measured",
            unit="count",
        ),
        _goal(
            f"{where}: ours' p99",
            f"≤ {P99_MS:g} ms",
            None if ours is None else ours["p99_ms"],
            lambda v: v <= P99_MS,
            f"p50 {ours['p50_ms']:.1f} ms" if ours else "not measured",
            unit="ms",
        ),
    ]


def open_inference(results: dict[str, Any]) -> list[Goal]:
    ours, v2 = _single(results, systems.OURS), _single(results, systems.OURS_V2)
    peer = _single(results, systems.MLSERVER)
    where = f"single row, {CONNECTIONS} connections"
    return [
        _goal(
            f"{where}: ours v2 ÷ MLServer v2",
            f"≥ {SINGLE_VS_PEERS:g}x",
            _ratio(v2, peer),
            lambda v: v >= SINGLE_VS_PEERS,
            f"ours v2 {_rate(v2)}, MLServer {_rate(peer)}",
        ),
        _v2_vs_predict(results, where, ours, v2),
    ]


def _v2_vs_predict(
    results: dict[str, Any], where: str, ours: Point | None, v2: Point | None
) -> Goal:
    """Judged on the rounds taking turns when the run took them; else on the points."""
    points = f"ours v2 {_rate(v2)}, ours /predict {_rate(ours)}"
    rounds = results.get("v2_rounds")
    if rounds:
        value = rounds["median_per_round"]
        ratios = ", ".join(f"{ratio:.2f}" for ratio in rounds["per_round"])
        figures = (
            f"median of {len(rounds['per_round'])} rounds of {rounds['seconds']} s taking "
            f"turns ({ratios}); the points alone: {points}"
        )
    else:
        value, figures = _ratio(v2, ours), points
    return _goal(
        f"{where}: ours v2 ÷ ours /predict",
        f"≥ {V2_VS_PREDICT:g} (within 10 %)",
        value,
        lambda v: v >= V2_VS_PREDICT,
        figures,
    )


def _best_share(results: dict[str, Any], system: str) -> dict[str, Any] | None:
    shares = [
        r for r in results["batch_vs_raw"] if r["system"] == system and r["rows"] == BATCH_ROWS
    ]
    return max(shares, key=lambda r: r["fraction"], default=None)


def batch(results: dict[str, Any]) -> list[Goal]:
    runtime = results.get("raw_runtime", "the model")
    goals = []
    for system, body, share in (
        (systems.OURS, "JSON", JSON_SHARE),
        (systems.OURS_ARROW, "Arrow", ARROW_SHARE),
    ):
        best = _best_share(results, system)
        figures = (
            "not measured"
            if best is None
            else f"{best['http_rows_per_s']:,.0f} rows/s at {best['concurrency']} connections "
            f"(best of the batch points) against {best['raw_rows_per_s']:,.0f} in process"
        )
        goals.append(
            _goal(
                f"/predict_batch, {BATCH_ROWS:,} rows, {body}: ÷ in-process rows/s ({runtime})",
                f"≥ {share:.0%}",
                None if best is None else best["fraction"],
                lambda v, share=share: v >= share,
                figures,
                unit="share",
            )
        )
    return goals


def after_burst(results: dict[str, Any]) -> list[Goal]:
    records = {r["system"]: r for r in results.get("after_burst", [])}
    ours = records.get(systems.OURS) or records.get(systems.OURS_NO_LOG)
    other = records.get(systems.FASTAPI)
    goals = []
    for phase, title in (("before", "before"), ("right_after", "right after")):
        value, figures = None, "not measured"
        if ours is not None and other is not None:
            mine, theirs = ours[phase]["p50_ms"], other[phase]["p50_ms"]
            value = mine / theirs if theirs > 0 else None
            figures = f"ours {mine:.2f} ms, FastAPI {theirs:.2f} ms"
        goals.append(
            _goal(
                f"single client p50 {title} a burst at {CONNECTIONS} connections: ours ÷ FastAPI",
                f"≤ {AFTER_BURST_SHARE:g}x",
                value,
                lambda v: v <= AFTER_BURST_SHARE,
                figures,
            )
        )
    return goals


def compute(results: dict[str, Any]) -> list[Goal]:
    return [
        *single_row(results),
        *open_inference(results),
        *batch(results),
        *after_burst(results),
    ]
