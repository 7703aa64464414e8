"""Abusive requests against one real server with one worker (`bench.abuse`, smaller sizes).

Each test runs one attack and checks what the worker paid for it, measured from outside:
the answer and its time, the worker's resident memory (/proc), /livez during the attack,
and /metrics or the payload log afterwards.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import abuse
from bench.abuse import MIB, Result, Target
from model import store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENT_ERRORS = {"400", "413", "422"}
MAX_DETAILS = 101
BODY_TIMEOUT_SECONDS = 5
ATTACK_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def target(
    bentoml_home: Path, breast_cancer_model: store.LoadedModel, tmp_path_factory
) -> Iterator[Target]:
    work = tmp_path_factory.mktemp("abuse")
    server, running = abuse.start(
        bentoml_home,
        work,
        breast_cancer_model.tag,
        timeout=ATTACK_TIMEOUT_S,
        BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT_SECONDS),
    )
    try:
        yield running
    finally:
        abuse.stop(server)


def attack(target: Target, name: str, **options: Any) -> Result:
    log_before = abuse.dir_bytes(target.payload_log_dir)
    result = abuse.attack_target(target, name, **options)
    assert not result.timed_out, f"{name}: no answer within {ATTACK_TIMEOUT_S} s"
    assert not result.worker_lost, f"{name}: the worker died"
    assert_worker_unharmed(result, result.payload_log_bytes - log_before)
    return result


def assert_worker_unharmed(result: Result, log_growth: int) -> None:
    """What every attack must leave as it was: /livez answering throughout, the worker's
    memory, and the size of /metrics and of the payload log (which grows only by the
    records of the valid requests an attack sends: at most 1 MiB here)."""
    assert result.livez_timeouts == 0 and result.livez_failures == 0, result
    assert result.livez_worst_ms is not None and result.livez_worst_ms < 1000, result
    assert result.rss_growth_mib is not None and result.rss_growth_mib < 150, result
    assert result.metrics_bytes is not None and result.metrics_bytes < 64_000, result
    assert log_growth < MIB, (log_growth, result)


def assert_refused_cheaply(result: Result) -> None:
    """A 4xx JSON error with a bounded error list, answered at once, costing the worker
    little memory (kept or at its peak, sampled every 50 ms) and never stalling /livez."""
    assert set(result.statuses) <= CLIENT_ERRORS, result.details
    for response in result.details["responses"]:
        assert response["content_type"].startswith("application/json"), response
        assert response.get("error"), response
        assert response.get("detail_count", 0) <= MAX_DETAILS, response
        if "error_count" in response:
            assert response["error_count"] >= response.get("detail_count", 0), response
    assert result.seconds is not None and result.seconds < 5, result.seconds
    assert result.rss_growth_mib is not None and result.rss_growth_mib < 150, result
    assert result.peak_growth_mib is not None and result.peak_growth_mib < 150, result
    assert result.livez_worst_ms is not None and result.livez_worst_ms < 1000, result


@pytest.mark.parametrize(
    "name, options",
    [
        # 4 columns x 10 M rows: 12 KiB on the wire, 305 MiB decoded
        ("compressed_arrow", {"rows": 10_000_000, "batch_rows": 2_000_000}),
        # one row, 30 M dictionary entries: 11 KiB on the wire, 229 MiB decoded
        ("compressed_dictionary", {"entries": 30_000_000}),
        # 100 MiB of valid rows: 4 times PREDICT_BATCH_MAX_ROWS
        ("big_body", {"size_bytes": 100 * MIB}),
        ("wide_schema", {"columns": 20_000}),
        # a uint64 of 2**64-1, then random bytes
        ("client_5xx", {}),
    ],
)
def test_bodies_are_refused_before_their_cost_is_paid(
    target: Target, name: str, options: dict[str, Any]
) -> None:
    assert_refused_cheaply(attack(target, name, **options))


def test_invalid_values_list_at_most_101_errors_and_count_them_all(target: Target) -> None:
    result = attack(target, "error_amplification", size_bytes=MIB)
    assert_refused_cheaply(result)
    (response,) = result.details["responses"]
    assert response["error_count"] == result.details["invalid_values"] > MAX_DETAILS


def test_unknown_paths_leave_metrics_the_same_size(target: Target) -> None:
    result = attack(target, "metrics_cardinality", paths=3_000)
    before, after = result.details["metrics_before_bytes"], result.details["metrics_after_bytes"]
    assert before is not None and after is not None
    assert after - before <= 20_000, (before, after)


def test_a_header_flood_is_refused_early(target: Target) -> None:
    result = attack(target, "header_flood", size_bytes=64 * MIB)
    refused = set(result.statuses) <= {"431", "400"}
    assert refused or result.statuses == {"closed": 1}, result.details
    assert result.details["header_bytes_sent"] <= 16 * MIB, result.details
    assert result.peak_growth_mib is not None and result.peak_growth_mib < 50, result
    assert result.rss_growth_mib is not None and result.rss_growth_mib < 50, result


@pytest.mark.parametrize("rows", [150, 300, 400, 1_000])
def test_the_header_limit_never_counts_a_body(target: Target, rows: int) -> None:
    """Valid batches of 34 to 226 KB, headers and body sent at once: whether a request
    arrives in one read of the server's depends on timing, so each is sent 20 times."""
    body = abuse.instances_json([target.model.row] * rows)
    statuses = Counter(
        abuse.send_request(target, "POST", "/predict_batch", body=body)[0] for _ in range(20)
    )
    assert statuses == {"200": 20}, statuses


def test_slow_uploads_neither_block_predictions_nor_stay_open(target: Target) -> None:
    result = attack(target, "slow_uploads", connections=300, seconds=BODY_TIMEOUT_SECONDS + 7)
    assert result.statuses == {"200": sum(result.statuses.values())}, result.details
    assert sum(result.statuses.values()) >= 30, result.statuses
    assert result.details["slow_outcomes"] == {"408": 300}, result.details


def test_padding_costs_the_payload_log_nothing_and_keeps_its_history(target: Target) -> None:
    result = attack(target, "payload_log_padding", size_bytes=8 * MIB, requests_count=20)
    assert result.statuses == {"200": 20}, result.details
    assert result.details["log_growth_bytes"] < 20 * 10_000, result.details
    assert result.details["earlier_kept_after"] == result.details["earlier_logged_before"] == 5


def test_the_drift_job_reads_every_row_the_api_accepted(target: Target) -> None:
    result = attack(target, "drift_poisoning", text_requests=20, plain_requests=20)
    assert result.details["accepted"] == 40, result.details
    assert result.details["job_exit"] == 0, result.details["job_stderr"]
    assert result.details["current_rows"] == 40, result.details


def test_latest_must_name_a_run_directory(target: Target) -> None:
    result = attack(target, "latest_pointer", pointer="../../x")
    assert result.statuses == {"404": 2}, result.details
    assert not any(result.details["served_outside_file"].values())


def test_unsafe_request_ids_are_replaced(target: Target) -> None:
    ids = attack(target, "request_id").details["ids"]
    safe = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    for label, answer in ids.items():
        assert answer["status"] == "200", (label, answer)
        assert safe.match(answer["answered"]), (label, answer)
        assert answer["answered_length"] <= 128, (label, answer)
        assert answer["logged_as_answered"], (label, answer)
        if label == "safe":
            assert answer["echoed"], answer
        else:
            assert not answer["echoed"] and not answer["logged_as_sent"], (label, answer)
