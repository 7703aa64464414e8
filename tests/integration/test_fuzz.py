"""Schemathesis against the running service's own OpenAPI document (v2 routes included):
no server errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_openapi_fuzzing_finds_no_server_error(server, tmp_path):
    schemathesis = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run(
        [
            str(schemathesis), "run", f"{server.url}/docs.json",
            "--checks", "not_a_server_error",
            "--max-examples", "60",
            "--seed", "20261125",
            "--report", "junit", "--report-dir", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:]
    # every operation: both APIs, the probes, and the v2 routes (infer, its versioned form,
    # server and model metadata, health and readiness)
    assert "Tested: 15" in run.stdout
    assert "Traceback" not in server.log()
    assert requests.get(f"{server.url}/readyz", timeout=5).status_code == 200
