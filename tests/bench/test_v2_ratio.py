"""The v2 ÷ /predict rounds: the summary's ratios, and one short run against a real server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.v2_ratio import PREDICT, V2, summary

ROOT = Path(__file__).resolve().parents[2]


def run(requests_per_s: float, cpu_us: float, non_2xx: int = 0) -> dict:
    return {
        "requests_per_s": requests_per_s,
        "server_cpu_us_per_request": cpu_us,
        "non_2xx": non_2xx,
    }


def test_the_ratio_is_judged_on_the_rounds() -> None:
    rounds = [
        {PREDICT: run(1000, 900), V2: run(800, 1000)},
        {PREDICT: run(1200, 850), V2: run(1200, 880)},
        {PREDICT: run(1500, 800), V2: run(1400, 820, non_2xx=2)},
    ]
    found = summary(rounds)
    assert found[PREDICT]["requests_per_s"] == 1200 and found[V2]["requests_per_s"] == 1200
    assert found["of_medians"] == pytest.approx(1.0)
    assert found["per_round"] == pytest.approx([0.8, 1.0, 1400 / 1500])
    assert found["median_per_round"] == pytest.approx(1400 / 1500)
    assert found[V2]["server_cpu_us_per_request"] == 880
    assert found["non_2xx"] == 2


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_one_short_round_against_a_real_server(tmp_path: Path) -> None:
    """In a process of its own: the benchmark points BENTOML_HOME at its own store."""
    out = tmp_path / "v2_ratio"
    run = subprocess.run(
        [sys.executable, "-m", "bench.v2_ratio", "--rounds", "1", "--seconds", "1",
         "--connections", "4", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    found = json.loads(out.with_suffix(".json").read_text())
    (only,) = found["rounds"]
    for route in (PREDICT, V2):
        assert only[route]["requests"] > 0 and only[route]["non_2xx"] == 0
        assert only[route]["server_cpu_us_per_request"] > 0
    assert "v2 ÷ /predict" in out.with_suffix(".md").read_text()
