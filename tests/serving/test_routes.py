"""`/drift/latest*`: only a finished run named by LATEST, inside the report directory."""

from __future__ import annotations

import json
import logging

import pytest
from starlette.applications import Starlette

from monitoring.runs import LATEST, SUMMARY_FILE, mark_latest, new_run
from serving.routes import REPORT_FILE, drift_routes
from tests.serving.test_guards import call


def drift_app(report_dir) -> Starlette:
    return Starlette(routes=drift_routes(report_dir))


def finished_run(base, verdict: bool = False):
    run = new_run(base)
    (run / SUMMARY_FILE).write_text(json.dumps({"drift_detected": verdict}))
    (run / REPORT_FILE).write_text("<html>report</html>")
    return run


def test_the_latest_run_is_served(tmp_path):
    run = finished_run(tmp_path)
    mark_latest(tmp_path, run, keep=3)
    app = drift_app(tmp_path)
    summary = call(app, "GET", "/drift/latest.json")
    assert summary.status_code == 200 and summary.json() == {"drift_detected": False}
    assert summary.headers["x-drift-run"] == run.name
    page = call(app, "GET", "/drift/latest")
    assert page.status_code == 200 and page.text == "<html>report</html>"


def test_before_any_run_both_routes_answer_404_json(tmp_path):
    app = drift_app(tmp_path / "empty")
    for path in ("/drift/latest", "/drift/latest.json"):
        response = call(app, "GET", path)
        assert response.status_code == 404
        assert "no drift report" in response.json()["error"]


def secrets_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / SUMMARY_FILE).write_text('{"secret": true}')
    (outside / REPORT_FILE).write_text("secret page")
    return outside


@pytest.mark.parametrize("pointer", ["../outside", "../../outside", "/etc", "outside"])
def test_a_pointer_out_of_the_report_dir_serves_nothing_and_warns(tmp_path, caplog, pointer):
    outside = secrets_outside(tmp_path)
    reports = tmp_path / "reports"
    finished_run(reports)
    (reports / LATEST).write_text(pointer if pointer != "/etc" else str(outside))
    app = drift_app(reports)
    with caplog.at_level(logging.WARNING):
        for path in ("/drift/latest", "/drift/latest.json"):
            response = call(app, "GET", path)
            assert response.status_code == 404, path
            assert "LATEST" in response.json()["error"]
    assert "does not name a run directory" in caplog.text


def test_a_run_name_linked_out_of_the_report_dir_serves_nothing(tmp_path, caplog):
    outside = secrets_outside(tmp_path)
    reports = tmp_path / "reports"
    finished_run(reports)
    (reports / "20990101T000000000000Z").symlink_to(outside, target_is_directory=True)
    (reports / LATEST).write_text("20990101T000000000000Z")
    with caplog.at_level(logging.WARNING):
        response = call(drift_app(reports), "GET", "/drift/latest.json")
    assert response.status_code == 404 and "secret" not in response.text
    assert "does not name a run directory" in caplog.text


def test_a_report_file_linked_out_of_its_run_is_not_served(tmp_path, caplog):
    outside = secrets_outside(tmp_path)
    run = finished_run(tmp_path / "reports")
    mark_latest(tmp_path / "reports", run, keep=3)
    (run / REPORT_FILE).unlink()
    (run / REPORT_FILE).symlink_to(outside / REPORT_FILE)
    app = drift_app(tmp_path / "reports")
    with caplog.at_level(logging.WARNING):
        page = call(app, "GET", "/drift/latest")
    assert page.status_code == 404 and "secret" not in page.text
    assert "is not a file of its drift run" in caplog.text
    assert call(app, "GET", "/drift/latest.json").status_code == 200
