"""Prometheus rules (deploy/prometheus): promtool checks and unit tests, and test coverage.

`promtool` (Debian package `prometheus`) is looked up on $PROMTOOL, then PATH. Without it
the promtool tests are skipped, except under CI (env CI set), where they fail. The
structural checks below need only PyYAML.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus"
ALERTS = RULES_DIR / "alerts.yml"
ALERTS_TEST = RULES_DIR / "alerts_test.yml"
MONITORING_DOC = ROOT / "docs" / "monitoring.md"
API_ROUTES_MATCHER = 'endpoint=~"/predict|/predict_batch"'
JUNK_PATH_TEST = "junk-path 404s neither dilute the 5xx share nor raise the 4xx share"
INSTALL_HINT = "apt-get install -y --no-install-recommends prometheus (or set $PROMTOOL)"
SEVERITIES = {"critical", "warning", "info"}


def find_promtool() -> Path | None:
    for candidate in (os.environ.get("PROMTOOL"), "promtool"):
        if candidate and (found := shutil.which(candidate)):
            return Path(found)
    return None


def require_promtool() -> Path:
    found = find_promtool()
    if found is None:
        message = f"promtool not found: {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def run_promtool(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path} is not a YAML mapping"
    return document


def alerting_rules() -> list[dict[str, Any]]:
    return [rule for group in load(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule]


def alert_cases() -> list[dict[str, Any]]:
    return [case for test in load(ALERTS_TEST)["tests"] for case in test.get("alert_rule_test", [])]


def test_promtool_check_rules() -> None:
    result = run_promtool(require_promtool(), "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_rules() -> None:
    result = run_promtool(require_promtool(), "test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_junk_path_case_fails_when_error_ratios_count_every_endpoint(tmp_path: Path) -> None:
    """The junk-path case tells the API-only ratios from ratios over every endpoint."""
    promtool = require_promtool()
    rules = ALERTS.read_text()
    assert rules.count(API_ROUTES_MATCHER) == 4  # both ratios, numerator and denominator
    unfiltered = re.sub(re.escape(API_ROUTES_MATCHER) + r",?\s*", "", rules)
    (tmp_path / ALERTS.name).write_text(unfiltered)
    (tmp_path / ALERTS_TEST.name).write_text(ALERTS_TEST.read_text())
    result = run_promtool(promtool, "test", "rules", str(tmp_path / ALERTS_TEST.name))
    assert result.returncode != 0, result.stdout
    failed_groups = set(re.findall(r"name: (.+?),\n", result.stdout + result.stderr))
    assert failed_groups == {JUNK_PATH_TEST}, result.stdout + result.stderr


def test_unit_tests_load_the_rules_file() -> None:
    rule_files = load(ALERTS_TEST)["rule_files"]
    assert [(RULES_DIR / name).resolve() for name in rule_files] == [ALERTS.resolve()]


def test_every_alert_has_routing_labels_and_annotations() -> None:
    rules = alerting_rules()
    assert rules
    for rule in rules:
        name = rule["alert"]
        labels = rule.get("labels", {})
        annotations = rule.get("annotations", {})
        assert labels.get("severity") in SEVERITIES, name
        assert labels.get("team"), name
        assert {"summary", "description", "runbook_url"} <= set(annotations), name
        assert annotations["runbook_url"].startswith("docs/monitoring.md#runbook-"), name


def test_every_alert_is_exercised_firing_and_not_firing() -> None:
    """Each alert name has a case where it fires and one where it must stay silent."""
    cases = alert_cases()
    names = {rule["alert"] for rule in alerting_rules()}
    tested = {case["alertname"] for case in cases}
    assert names <= tested, f"alerts without a test case: {sorted(names - tested)}"
    assert tested <= names, f"test cases for unknown alerts: {sorted(tested - names)}"
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert names <= firing, f"alerts never tested firing: {sorted(names - firing)}"
    assert names <= silent, f"alerts never tested silent: {sorted(names - silent)}"


def test_every_alerting_rule_is_tested_firing() -> None:
    """Rules sharing an alert name are told apart by their labels; each one fires in a test."""
    fired = [
        (case["alertname"], alert.get("exp_labels", {}))
        for case in alert_cases()
        for alert in case.get("exp_alerts") or []
    ]
    for rule in alerting_rules():
        labels = rule.get("labels", {})
        assert any(
            name == rule["alert"] and labels.items() <= exp_labels.items()
            for name, exp_labels in fired
        ), f"{rule['alert']} {labels} never fires in {ALERTS_TEST.name}"


def test_alerting_rules_differ_in_labels() -> None:
    keys = [
        (rule["alert"], tuple(sorted(rule.get("labels", {}).items()))) for rule in alerting_rules()
    ]
    assert len(keys) == len(set(keys))


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_runbook_urls_point_at_runbook_headings() -> None:
    headings = re.findall(r"^#+ (.+)$", MONITORING_DOC.read_text(), flags=re.MULTILINE)
    anchors = {github_anchor(heading) for heading in headings}
    for rule in alerting_rules():
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in anchors, f"{rule['alert']}: no heading for #{anchor} in {MONITORING_DOC}"
