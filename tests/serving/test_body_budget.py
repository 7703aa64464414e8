"""Body limits fitted to the container's memory limit."""

from __future__ import annotations

from pathlib import Path

from model.settings import Settings
from serving.body_budget import (
    DECODE_OVERHEAD,
    DRIFT_RUN_BYTES,
    RESTING_BYTES,
    SMALLEST_BUDGET,
    BodyLimits,
    fit,
    fitted,
    memory_limit,
)

MiB = 2**20


def test_limits_that_fit_are_kept():
    wanted = BodyLimits(32 * MiB, 48 * MiB)
    assert fit(wanted, 1, 1536 * MiB) == (wanted, [])
    assert fit(wanted, 4, None) == (wanted, [])


def test_bytes_in_flight_are_clamped_to_the_memory_limit():
    limits, notes = fit(BodyLimits(16 * MiB, 128 * MiB), 1, 2**30)
    fits = (2**30 - RESTING_BYTES) // DECODE_OVERHEAD
    assert limits == BodyLimits(16 * MiB, fits)
    assert len(notes) == 1 and "MAX_BODY_BYTES_IN_FLIGHT" in notes[0]
    assert limits.max_body_bytes_in_flight * DECODE_OVERHEAD + RESTING_BYTES <= 2**30


def test_workers_share_the_container():
    one, _ = fit(BodyLimits(8 * MiB, 512 * MiB), 1, 2**31)
    two, _ = fit(BodyLimits(8 * MiB, 512 * MiB), 2, 2**31)
    assert two.max_body_bytes_in_flight < one.max_body_bytes_in_flight
    assert 2 * (two.max_body_bytes_in_flight * DECODE_OVERHEAD + RESTING_BYTES) <= 2**31


def test_a_body_larger_than_the_bytes_in_flight_is_clamped_too():
    limits, notes = fit(BodyLimits(128 * MiB, 128 * MiB), 1, 512 * MiB)
    assert limits.max_body_bytes == limits.max_body_bytes_in_flight
    assert [note.split("=")[0] for note in notes] == ["MAX_BODY_BYTES_IN_FLIGHT", "MAX_BODY_BYTES"]


def test_a_container_too_small_still_accepts_small_bodies():
    limits, notes = fit(BodyLimits(64 * MiB, 128 * MiB), 1, 300 * MiB)
    assert limits == BodyLimits(SMALLEST_BUDGET, SMALLEST_BUDGET) and len(notes) == 2


def test_memory_limit_reads_cgroup_v2_and_v1(tmp_path: Path):
    assert memory_limit(tmp_path) is None
    (tmp_path / "memory.max").write_text("max\n")
    assert memory_limit(tmp_path) is None
    (tmp_path / "memory.max").write_text("1073741824\n")
    assert memory_limit(tmp_path) == 2**30
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert memory_limit(v1) is None
    (v1 / "memory" / "memory.limit_in_bytes").write_text("536870912\n")
    assert memory_limit(v1) == 512 * MiB


def test_fitted_settings_keep_everything_else(monkeypatch):
    settings = Settings.from_env({"MAX_BODY_BYTES": str(MiB), "MAX_BODY_BYTES_IN_FLIGHT": "1"})
    result = fitted(settings)
    assert result.serving.max_body_bytes_in_flight == MiB  # never below one largest body
    assert result.serving.max_in_flight == settings.serving.max_in_flight
    assert result.payload_log == settings.payload_log


def test_an_in_process_drift_job_is_set_aside():
    without, _ = fit(BodyLimits(8 * MiB, 512 * MiB), 1, 2**31)
    with_drift, _ = fit(BodyLimits(8 * MiB, 512 * MiB), 1, 2**31, DRIFT_RUN_BYTES)
    assert (
        with_drift.max_body_bytes_in_flight * DECODE_OVERHEAD + RESTING_BYTES + (DRIFT_RUN_BYTES)
        <= 2**31
        < without.max_body_bytes_in_flight * DECODE_OVERHEAD + RESTING_BYTES + (DRIFT_RUN_BYTES)
    )
