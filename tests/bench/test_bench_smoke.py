"""The serving benchmark: wrk's report parsed, and a --quick run end to end (every system,
every point, every output file)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import wrk
from bench.harness import QUICK, plan_points

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = {"ours", "fastapi", "default_bento"}
ARROW = "ours_arrow"  # ours' server again, with Arrow batch bodies: batch points only
SINGLE_ONLY = {"ours_v2", "mlserver", "kserve"}  # single-row points only
STARTED = SYSTEMS | {"mlserver", "kserve"}  # each with a server of its own

# wrk's report as printed: one-letter units are padded with a trailing space ("1.20s ")
WRK_SECONDS = "\n".join(
    [
        "Running 4s test @ http://127.0.0.1:45155/",
        "  1 threads and 1 connections",
        "  Thread Stats   Avg      Stdev     Max   +/- Stdev",
        "    Latency     1.20s     0.94ms   1.20s    66.67%",
        "    Req/Sec     0.00      0.00     0.00    100.00%",
        "  Latency Distribution",
        "     50%    1.20s ",
        "     75%    1.20s ",
        "     90%    1.20s ",
        "     99%    2.50s ",
        "  3 requests in 4.01s, 339.00B read",
        "  Socket errors: connect 0, read 0, write 0, timeout 2",
        "  Non-2xx or 3xx responses: 1",
        "Requests/sec:      0.75",
        "Transfer/sec:      84.61B",
    ]
)


def test_wrk_report_with_second_latencies_and_errors_is_parsed() -> None:
    parsed = wrk.parse(WRK_SECONDS)
    assert (parsed.p50_ms, parsed.p99_ms) == (1200.0, 2500.0)
    assert (parsed.requests, parsed.duration_s, parsed.requests_per_s) == (3, 4.01, 0.75)
    assert parsed.non_2xx == 1
    assert parsed.ok_requests == 2
    assert parsed.socket_errors == {"connect": 0, "read": 0, "write": 0, "timeout": 2}


def test_wrk_units_are_converted_to_milliseconds() -> None:
    assert [wrk.to_ms(t) for t in ("250.00us", "3.5ms", "1.20s", "1.00m")] == [
        0.25,
        3.5,
        1200.0,
        60000.0,
    ]


def _missing() -> list[str]:
    missing = ["wrk (apt-get install wrk)"] if shutil.which("wrk") is None else []
    for module in ("fastapi", "uvicorn", "matplotlib"):
        if importlib.util.find_spec(module) is None:
            missing.append(f"{module} (make install)")
    return missing


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = _missing()
    if missing:
        message = "the benchmark needs " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path_factory.mktemp("bench")
    run = subprocess.run(
        [sys.executable, "-m", "bench.harness", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,  # the first run installs the peers' virtualenvs
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return out


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1600)
def test_quick_run_measures_every_system_at_every_point(results: Path) -> None:
    data = json.loads((results / "serving.json").read_text())
    assert set(data["systems"]) == {*SYSTEMS, ARROW, *SINGLE_ONLY}
    assert data["failed"] == {}
    measured = {(p["kind"], p["rows"], p["concurrency"], p["system"]): p for p in data["points"]}
    expected = {
        (point.kind, point.rows, point.concurrency, system)
        for point in plan_points(QUICK)
        for system in (SYSTEMS | {ARROW} if point.kind == "batch" else SYSTEMS | SINGLE_ONLY)
    }
    assert set(measured) == expected
    for key, point in measured.items():
        assert point["requests_per_s"] > 0, key
        assert point["rows_per_s"] > 0, key


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1600)
def test_quick_run_reports_ratios_raw_speed_cold_start_and_memory(results: Path) -> None:
    data = json.loads((results / "serving.json").read_text())
    baselines = {(r["system"], r["baseline"]) for r in data["ratios"]}
    others = ("fastapi", "default_bento", "mlserver", "kserve")
    assert baselines == {
        *(("ours", baseline) for baseline in others),
        *(("ours_v2", baseline) for baseline in others),
        (ARROW, "fastapi"),
        (ARROW, "default_bento"),
        ("ours_v2", "ours"),
    }
    assert all(r["throughput_ratio"] > 0 for r in data["ratios"])
    assert {r["batch"] for r in data["raw"]} >= {1, 256}
    assert {r["system"] for r in data["batch_vs_raw"]} == {"ours", ARROW}
    assert all(r["fraction"] > 0 for r in data["batch_vs_raw"])
    assert "memory_idle" not in data["systems"][ARROW]  # no server of its own
    for key in STARTED:
        system = data["systems"][key]
        assert system["cold_start_median_s"] > 0
        assert all(mib > 0 for mib in system["memory_after_load"]["per_worker_mib"])
    assert data["machine"]["cores"] >= 1
    assert len(data["machine"]["load_average_start"]) == 3


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1600)
def test_quick_run_writes_markdown_and_png(results: Path) -> None:
    markdown = (results / "serving.md").read_text()
    for heading in (
        "## Goals",
        "## Throughput and latency",
        "## Ratios",
        "## A single client before and after a burst",
        "## Ours v2 ÷ ours /predict, in rounds",
        "## Cold start and memory",
    ):
        assert heading in markdown
    assert (results / "serving.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1600)
def test_quick_run_measures_a_single_client_and_computes_the_goals(results: Path) -> None:
    data = json.loads((results / "serving.json").read_text())
    assert [r["system"] for r in data["after_burst"]] == ["ours", "fastapi"]
    for record in data["after_burst"]:
        for phase in ("before", "burst", "right_after", "after_rest"):
            assert record[phase]["requests"] > 0, (record["system"], phase)
    found = {goal["name"]: goal for goal in data["goals"]}
    assert len(found) == 9
    # --quick measures neither 64 connections nor 10,000-row batches; v2 ÷ /predict is
    # judged on its rounds (one round of 1 s here), taken on ours' server after the points
    measured = [g for g in found.values() if g["met"] is not None]
    assert [g["name"] for g in measured] == [
        name
        for name in found
        if name.startswith("single client p50") or name.endswith("ours v2 ÷ ours /predict")
    ]
    (only,) = data["v2_rounds"]["rounds"]
    assert only["predict"]["requests"] > 0 and only["v2"]["requests"] > 0
