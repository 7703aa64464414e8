"""Prometheus Operator objects (components/prometheus-operator and its overlay).

The PrometheusRule is generated from deploy/prometheus/alerts.yml and must agree with
it; the ServiceMonitor must select the model Service by its labels and scrape a port
the Service names. Overlays are rendered with the venv's `kubectl kustomize`; the
rendered rules go through `promtool check rules` and the alert unit tests.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import k8s_checks as kc
from deploy import prometheus_rule as pr
from tests.deploy.test_alert_rules import ALERTS_TEST, require_promtool, run_promtool

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAY = K8S / "overlays" / "prometheus-operator"
COMPONENT = K8S / "components" / "prometheus-operator"
MONITORING_GROUP = "monitoring.coreos.com"
MONITORING_KINDS = ("ServiceMonitor", "PrometheusRule")
# Overlays the component is also added to, one per way the Service selects its pods.
OTHER_OVERLAYS = ("blue-green", "canary", "argo-rollouts")
KUBE_VERSIONS = ("1.30", "1.33")
APP = "tabular-model"

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def rendered(kubectl: Path) -> list[Obj]:
    return kc.render(OVERLAY, kubectl)


def get(objs: list[Obj], kind: str) -> Obj:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def alerts_groups() -> list[Obj]:
    return yaml.safe_load(pr.ALERTS.read_text())["groups"]


def service_monitor_problems(objs: list[Obj]) -> list[str]:
    """Each ServiceMonitor must select a Service of its namespace and scrape its named ports."""
    problems: list[str] = []
    services = [o for o in objs if o["kind"] == "Service"]
    for monitor in (o for o in objs if o["kind"] == "ServiceMonitor"):
        namespace = monitor["metadata"].get("namespace")
        selected = [
            s
            for s in services
            if s["metadata"].get("namespace") == namespace
            and kc.label_selector_matches(
                monitor["spec"]["selector"], s["metadata"].get("labels") or {}
            )
        ]
        if not selected:
            problems.append(f"{kc.ref(monitor)}: selects no Service in its namespace")
        for endpoint in monitor["spec"]["endpoints"]:
            for service in selected:
                names = {p.get("name") for p in service["spec"]["ports"]}
                if endpoint.get("port") not in names:
                    problems.append(
                        f"{kc.ref(monitor)}: port {endpoint.get('port')!r} is not a port name "
                        f"of {kc.ref(service)} {sorted(n for n in names if n)}"
                    )
    return problems


def structure_problems(obj: Obj) -> list[str]:
    """The fields the Operator's CRDs require, and the shape of the rule groups."""
    problems: list[str] = []
    if obj.get("apiVersion") != f"{MONITORING_GROUP}/v1":
        problems.append(f"{kc.ref(obj)}: apiVersion {obj.get('apiVersion')!r}")
    if not obj.get("metadata", {}).get("name"):
        problems.append(f"{obj.get('kind')}: no metadata.name")
    spec = obj.get("spec") or {}
    if obj["kind"] == "ServiceMonitor":
        if not isinstance(spec.get("selector"), dict):
            problems.append(f"{kc.ref(obj)}: no spec.selector")
        endpoints = spec.get("endpoints") or []
        if not endpoints or not all(isinstance(e.get("port"), str) for e in endpoints):
            problems.append(f"{kc.ref(obj)}: every endpoint needs a port name")
    if obj["kind"] == "PrometheusRule":
        for group in spec.get("groups") or [{}]:
            if not group.get("name") or not group.get("rules"):
                problems.append(f"{kc.ref(obj)}: a group needs a name and rules")
            for rule in group.get("rules") or []:
                if "expr" not in rule or ("record" in rule) == ("alert" in rule):
                    problems.append(f"{kc.ref(obj)}: rule {rule} needs expr and record or alert")
    return problems


# --------------------------------------------------------------------------- generated rule


def test_committed_rule_is_generated_from_alerts() -> None:
    assert pr.OUTPUT.read_text() == pr.render(pr.ALERTS.read_text()), (
        "run python -m deploy.prometheus_rule"
    )
    assert pr.main(["--check"]) == 0


def test_committed_rule_groups_equal_alerts_groups() -> None:
    rule = yaml.safe_load(pr.OUTPUT.read_text())
    assert rule["spec"]["groups"] == alerts_groups()


def test_check_fails_when_alerts_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alerts = tmp_path / "alerts.yml"
    output = tmp_path / "prometheusrule.yaml"
    alerts.write_text(pr.ALERTS.read_text())
    assert pr.main(["--alerts", str(alerts), "--output", str(output)]) == 0
    assert pr.main(["--alerts", str(alerts), "--output", str(output), "--check"]) == 0
    changed = alerts_groups()
    changed[0]["rules"][0]["expr"] = "vector(1)"
    alerts.write_text(yaml.safe_dump({"groups": changed}))
    assert pr.main(["--alerts", str(alerts), "--output", str(output), "--check"]) == 1
    assert "out of date" in capsys.readouterr().out
    assert pr.main(["--alerts", str(alerts), "--output", str(output)]) == 0
    assert yaml.safe_load(output.read_text())["spec"]["groups"] == changed


def test_rules_file_without_groups_is_refused() -> None:
    with pytest.raises(ValueError, match="no rule groups"):
        pr.render("groups: []\n")


# --------------------------------------------------------------------------- rendered overlay


def test_overlay_is_rolling_plus_component(rendered: list[Obj], kubectl: Path) -> None:
    rolling = kc.render(K8S / "overlays" / "rolling", kubectl)
    added = [o for o in rendered if o not in rolling]
    assert sorted(o["kind"] for o in added) == sorted(MONITORING_KINDS)
    assert get(rendered, "PrometheusRule")["spec"]["groups"] == alerts_groups()


def test_service_monitor_scrapes_the_service(rendered: list[Obj]) -> None:
    monitor = get(rendered, "ServiceMonitor")
    service = get(rendered, "Service")
    assert kc.label_selector_matches(monitor["spec"]["selector"], service["metadata"]["labels"])
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    namespace = service["metadata"].get("namespace")
    for kind in MONITORING_KINDS:
        assert get(rendered, kind)["metadata"].get("namespace") == namespace
    assert service_monitor_problems(rendered) == []


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda m, s: m["spec"]["endpoints"][0].update(port="metrics"), "port 'metrics'"),
        (lambda m, s: m["spec"]["selector"]["matchLabels"].update(app="x"), "selects no Service"),
        (lambda m, s: s["metadata"].update(namespace="other"), "selects no Service"),
        (lambda m, s: s["spec"]["ports"][0].update(name="web"), "not a port name"),
    ],
)
def test_service_monitor_mismatch_is_found(rendered: list[Obj], mutate: Any, words: str) -> None:
    objs = copy.deepcopy(rendered)
    mutate(get(objs, "ServiceMonitor"), get(objs, "Service"))
    problems = service_monitor_problems(objs)
    assert len(problems) == 1 and words in problems[0], problems


def test_semantic_checks_pass(rendered: list[Obj]) -> None:
    assert kc.check_all(rendered) == []


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_schema_valid(rendered: list[Obj], version: str) -> None:
    # kubernetes-validate has built-in schemas only: the Operator's custom resources
    # are skipped like Argo's Rollout (kc.CRD_SKIP_REASONS) and checked by
    # structure_problems instead.
    assert all((MONITORING_GROUP, kind) in kc.CRD_SKIP_REASONS for kind in MONITORING_KINDS)
    problems, skipped = kc.schema_problems(rendered, [version], strict=True)
    assert problems == []
    assert {line.split("/", 1)[0] for line in skipped} == set(MONITORING_KINDS)


def test_custom_resources_structure(rendered: list[Obj]) -> None:
    for kind in MONITORING_KINDS:
        assert structure_problems(get(rendered, kind)) == []


def test_structure_problems_are_found(rendered: list[Obj]) -> None:
    monitor = dict(get(rendered, "ServiceMonitor"), apiVersion="monitoring.coreos.com/v1alpha1")
    monitor["spec"] = {"selector": monitor["spec"]["selector"], "endpoints": [{"path": "/m"}]}
    assert len(structure_problems(monitor)) == 2
    rule = get(rendered, "PrometheusRule")
    rule = dict(rule, spec={"groups": [{"name": "g", "rules": [{"record": "r", "alert": "a"}]}]})
    assert len(structure_problems(rule)) == 1


# --------------------------------------------------------------------------- promtool


def extract_rules(rendered: list[Obj], directory: Path) -> Path:
    """The rendered PrometheusRule's spec as a Prometheus rules file named like alerts.yml."""
    rules = directory / pr.ALERTS.name
    rules.write_text(yaml.safe_dump(get(rendered, "PrometheusRule")["spec"], sort_keys=False))
    return rules


def test_rendered_rules_pass_promtool(rendered: list[Obj], tmp_path: Path) -> None:
    promtool = require_promtool()
    rules = extract_rules(rendered, tmp_path)
    result = run_promtool(promtool, "check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rendered_rules_pass_the_alert_unit_tests(rendered: list[Obj], tmp_path: Path) -> None:
    promtool = require_promtool()
    extract_rules(rendered, tmp_path)
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    result = run_promtool(promtool, "test", "rules", str(tmp_path / ALERTS_TEST.name))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# --------------------------------------------------------------------------- other overlays


@pytest.mark.parametrize("overlay", OTHER_OVERLAYS)
def test_component_composes_with(tmp_path: Path, kubectl: Path, overlay: str) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize takes relative paths only
                "resources": [os.path.relpath(K8S / "overlays" / overlay, tmp_path)],
                "components": [os.path.relpath(COMPONENT, tmp_path)],
            }
        )
    )
    objs = kc.render(tmp_path, kubectl)
    assert service_monitor_problems(objs) == []
    assert kc.check_all(objs) == []
    assert get(objs, "PrometheusRule")["metadata"]["name"] == APP
