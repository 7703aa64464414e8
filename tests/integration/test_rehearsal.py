"""The rollout rehearsal (`make rehearse`): two versions behind a real nginx under wrk load.

A short rehearsal (3 s steps, 8 connections) runs once as a subprocess, the way
`python -m bench.rehearse` runs; the tests read its JSON. Needs nginx and wrk: skipped
without them, except under CI, where their absence fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import nginx_proxy, wrk_load
from bench.local import ROOT
from bench.nginx_proxy import Backend
from bench.rehearsal_report import LogRecord, StepPlan, parse_line, summarize_step

APT_INSTALL = "apt-get install -y --no-install-recommends nginx wrk"
STEPS = [0, 10, 50, 100]
TOLERANCE = 5.0
RUN_TIMEOUT = 240


def require_tools() -> None:
    found = {"nginx": nginx_proxy.find(), "wrk": shutil.which("wrk")}
    missing = [tool for tool, path in found.items() if path is None]
    if missing:
        reason = f"{', '.join(missing)} not installed (`{APT_INSTALL}`)"
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the rehearsal tools: {reason}")
        pytest.skip(reason)


@dataclass(frozen=True)
class Rehearsal:
    run: subprocess.CompletedProcess
    report: dict
    out: Path


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Rehearsal:
    require_tools()
    out = tmp_path_factory.mktemp("rehearsal") / "rehearsal"
    command = [
        sys.executable,
        "-m",
        "bench.rehearse",
        "--steps",
        ",".join(map(str, STEPS)),
        "--step-seconds",
        "3",
        "--settle-seconds",
        "0.5",
        "--connections",
        "8",
        "--min-requests",
        "50",
        "--tolerance",
        str(TOLERANCE),
        "--out",
        str(out),
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.terminate()  # on SIGTERM the rehearsal stops every process it started
        stdout, stderr = process.communicate(timeout=60)
        pytest.fail(f"rehearsal still running after {RUN_TIMEOUT}s:\n{stdout}\n{stderr}")
    run = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    report = out.with_suffix(".json")
    assert report.is_file(), f"no report; exit {run.returncode}\n{run.stdout}\n{run.stderr}"
    return Rehearsal(run, json.loads(report.read_text()), out)


@pytest.mark.integration
@pytest.mark.slow
def test_rehearsal_passes(rehearsal: Rehearsal) -> None:
    run = rehearsal.run
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-4000:]}"
    assert rehearsal.report["passed"], rehearsal.report["problems"]
    assert "PASSED" in run.stdout


@pytest.mark.integration
@pytest.mark.slow
def test_no_request_failed(rehearsal: Rehearsal) -> None:
    report = rehearsal.report
    assert [step["failed"] for step in report["steps"]] == [0] * len(report["steps"])
    assert report["load"]["socket_errors"] == 0, report["load"]
    assert report["load"]["non_2xx"] == 0, report["load"]
    # nginx logged what wrk received; wrk also counts answers after the last step ended
    logged, received = sum(step["requests"] for step in report["steps"]), report["load"]["requests"]
    assert 0 <= received - logged <= 8 + 0.05 * received


@pytest.mark.integration
@pytest.mark.slow
def test_observed_shares_match_the_weights(rehearsal: Rehearsal) -> None:
    report = rehearsal.report
    for step in report["steps"]:
        assert step["share_checked"], step
        assert step["measured"] >= 50, step
        miss = abs(step["observed_new_percent"] - step["configured_new_percent"])
        allowed = 0.0 if step["configured_new_percent"] in (0, 100) else TOLERANCE
        assert miss <= allowed, step


@pytest.mark.integration
@pytest.mark.slow
def test_rollback_sends_everything_back_to_the_old_version(rehearsal: Rehearsal) -> None:
    report = rehearsal.report
    full, rollback = report["steps"][-2], report["steps"][-1]
    assert full["configured_new_percent"] == 100 and full["to_old"] == 0
    assert rollback["label"] == "rollback 0 %"
    assert rollback["configured_new_percent"] == 0
    assert rollback["to_new"] == 0 and rollback["to_old"] > 0
    assert rollback["observed_new_percent"] == 0.0


@pytest.mark.integration
@pytest.mark.slow
def test_report_has_every_step(rehearsal: Rehearsal) -> None:
    report = rehearsal.report
    labels = [step["label"] for step in report["steps"]]
    assert labels == [f"{share} %" for share in STEPS] + ["rollback 0 %"]
    assert [step["configured_new_percent"] for step in report["steps"]] == [*STEPS, 0]
    assert report["versions"]["old"]["tag"] != report["versions"]["new"]["tag"]
    table = rehearsal.out.with_suffix(".md").read_text()
    assert table.count("\n| ") == len(STEPS) + 3  # header, one row per step, whole run
    assert "| whole run | - | - |" in table
    assert "| rollback 0 % | 0 | 0.0 |" in table
    if rehearsal.run.returncode == 0:
        assert report["logs"] is None  # the logs are kept only after a failure
    else:
        assert Path(report["logs"]).is_dir()


def test_weights_for_each_share() -> None:
    assert nginx_proxy.split_weights(0) == (1, 0)
    assert nginx_proxy.split_weights(10) == (9, 1)
    assert nginx_proxy.split_weights(50) == (1, 1)
    assert nginx_proxy.split_weights(25) == (3, 1)
    assert nginx_proxy.split_weights(100) == (0, 1)
    with pytest.raises(ValueError):
        nginx_proxy.split_weights(101)


def test_a_version_at_zero_is_marked_down_not_weight_zero() -> None:
    text = nginx_proxy.upstream_servers([Backend("127.0.0.1:1", 1), Backend("127.0.0.1:2", 0)])
    assert "server 127.0.0.1:1 weight=1;" in text
    assert "server 127.0.0.1:2 down;" in text
    assert "weight=0" not in text
    with pytest.raises(ValueError):
        nginx_proxy.upstream_servers([Backend("127.0.0.1:1", 0)])


@pytest.mark.integration
def test_rendered_configuration_is_accepted_by_nginx(tmp_path: Path) -> None:
    require_tools()
    proxy = nginx_proxy.Nginx(tmp_path / "nginx", 8080)
    proxy.configure(3, [Backend("127.0.0.1:1", 9), Backend("127.0.0.1:2", 1)])  # nginx -t
    text = proxy.conf.read_text()
    assert nginx_proxy.PLACEHOLDER.search(text) is None
    assert "log_format rehearsal '3 $msec" in text
    assert "server 127.0.0.1:1 weight=9;" in text
    assert "keepalive_timeout 0s;" in text


def record(generation: int, end: float, status: int = 200, upstream: str = "old") -> LogRecord:
    return LogRecord(generation, end, status, upstream, 1, 0.1, "POST", "/predict")


def test_requests_count_under_the_configuration_that_routed_them() -> None:
    records = [
        record(0, 10.05, upstream="old"),  # in flight at the reload: still step 0
        record(1, 10.2, upstream="new"),  # started in the settle window
        record(1, 11.5, upstream="new"),
        record(1, 11.6, upstream="old"),
        record(1, 11.7, status=503, upstream="new"),
        record(1, 30.0, status=499, upstream="old"),  # after the load stopped
    ]
    step = summarize_step(
        records,
        StepPlan(1, "50 %", 50, started_at=10.0),
        previous_generation=0,
        load_window=(0.0, 20.0),
        settle_seconds=0.5,
        old_address="old",
        new_address="new",
    )
    assert (step.requests, step.measured, step.to_new, step.to_old) == (4, 2, 1, 1)
    assert step.failed == 1 and step.failures == {"503": 1}
    assert step.carried_over == 1
    assert step.observed_new_percent == 50.0


def test_a_request_to_a_version_marked_down_fails_the_step() -> None:
    step = summarize_step(
        [record(2, 5.0, upstream="new")],
        StepPlan(2, "0 %", 0, started_at=1.0),
        previous_generation=1,
        load_window=(0.0, 20.0),
        settle_seconds=10.0,  # even inside the settle window
        old_address="old",
        new_address="new",
    )
    assert not step.share_ok


def test_access_log_line_and_wrk_summary_are_understood() -> None:
    line = '4 1795610514.601 200 "127.0.0.1:1, 127.0.0.1:2" "502, 200" 0.025 POST /predict\n'
    parsed = parse_line(line)
    assert parsed is not None
    assert (parsed.generation, parsed.status, parsed.upstream, parsed.tries) == (
        4,
        200,
        "127.0.0.1:2",
        2,
    )
    summary = wrk_load.parse_summary(
        "  2575 requests in 15.16s, 1.2MB read\n"
        "  Socket errors: connect 0, read 2, write 0, timeout 1\n"
        "  Non-2xx or 3xx responses: 4\nRequests/sec:    169.86\n"
    )
    assert (summary.requests, summary.read_errors, summary.timeouts) == (2575, 2, 1)
    assert (summary.non_2xx, summary.socket_errors) == (4, 3)
