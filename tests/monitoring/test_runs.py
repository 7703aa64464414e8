"""The drift runs directory: LATEST holds a bare run name, and names nothing else."""

from __future__ import annotations

import json
import logging
import os

import pytest

from monitoring import runs
from monitoring.runs import LATEST, SUMMARY_FILE, latest_run, mark_latest, new_run


def finished_run(base):
    run = new_run(base)
    (run / SUMMARY_FILE).write_text(json.dumps({"drift_detected": False}))
    return run


def test_latest_names_the_newest_run_by_its_bare_name(tmp_path):
    first = finished_run(tmp_path)
    mark_latest(tmp_path, first, keep=5)
    second = finished_run(tmp_path)
    mark_latest(tmp_path, second, keep=5)
    assert (tmp_path / LATEST).read_text() == second.name
    assert runs.is_run_name(second.name) and latest_run(tmp_path) == second


def test_pruning_keeps_the_newest_runs_and_touches_nothing_else(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    base = tmp_path / "reports"
    made = [finished_run(base) for _ in range(4)]
    (base / "notes").mkdir()
    (base / "zzz-linked").symlink_to(outside, target_is_directory=True)
    mark_latest(base, made[-1], keep=2)
    left = sorted(path.name for path in base.iterdir() if path.is_dir())
    assert left == sorted([made[2].name, made[3].name, "notes", "zzz-linked"])
    assert outside.is_dir()


@pytest.mark.parametrize("name", ["../elsewhere", "notes", "LATEST", "20261125T120000Z"])
def test_the_writer_refuses_anything_but_a_run_directory_of_the_base(tmp_path, name):
    base = tmp_path / "reports"
    base.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (base / "notes").mkdir()
    with pytest.raises(ValueError, match="is not a run directory"):
        mark_latest(base, base / name, keep=5)
    assert not (base / LATEST).exists()


def test_the_writer_refuses_a_run_of_another_directory(tmp_path):
    other = finished_run(tmp_path / "other")
    with pytest.raises(ValueError, match="is not a run directory"):
        mark_latest(tmp_path / "reports", other, keep=5)


def point_latest_at(base, text: str) -> None:
    base.mkdir(parents=True, exist_ok=True)
    (base / LATEST).write_text(text)


@pytest.mark.parametrize(
    "pointer",
    [
        "../../x",
        "../outside",
        "/etc",
        "20261125T120000000000Z/../../outside",
        "sub/20261125T120000000000Z",
        "..",
        "",
        "20261125T120000000000Z\n../outside",
        "x" * 10_000,
    ],
)
def test_a_pointer_that_is_not_a_bare_run_name_names_no_run(tmp_path, caplog, pointer):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / SUMMARY_FILE).write_text("{}")
    base = tmp_path / "reports"
    point_latest_at(base, pointer)
    with caplog.at_level(logging.WARNING, logger="monitoring.runs"):
        assert latest_run(base) is None
    assert "does not name a run directory" in caplog.text
    assert len(caplog.text) < 1_000


def test_a_run_name_linked_out_of_the_base_names_no_run(tmp_path, caplog):
    outside = finished_run(tmp_path / "outside")
    base = tmp_path / "reports"
    base.mkdir()
    (base / outside.name).symlink_to(outside, target_is_directory=True)
    point_latest_at(base, outside.name)
    with caplog.at_level(logging.WARNING, logger="monitoring.runs"):
        assert latest_run(base) is None
    assert "does not name a run directory" in caplog.text


def test_a_run_linked_to_another_run_of_the_base_is_followed(tmp_path):
    run = finished_run(tmp_path)
    alias = tmp_path / "20000101T000000000000Z"
    alias.symlink_to(run, target_is_directory=True)
    point_latest_at(tmp_path, alias.name)
    assert latest_run(tmp_path) == alias


def test_a_pointer_to_a_missing_run_or_a_loop_names_no_run(tmp_path):
    point_latest_at(tmp_path, "20261125T120000000000Z")
    assert latest_run(tmp_path) is None
    loop = tmp_path / "20261125T120000000000Z"
    os.symlink(loop, loop)
    assert latest_run(tmp_path) is None


def test_an_unfinished_run_is_not_the_latest(tmp_path):
    run = new_run(tmp_path)
    point_latest_at(tmp_path, run.name)
    assert latest_run(tmp_path) is None
    assert latest_run(tmp_path / "nothing-yet") is None
