"""Every query of the Grafana dashboard, evaluated by a real Prometheus scraping a real service.

The service answers traffic of both classes and runs its drift job; Prometheus scrapes it
with the `namespace` and `pod` labels a Kubernetes scrape adds. Each template variable is
resolved the way Grafana resolves `label_values`, and each panel query must parse and
return series, with the variables at "All" and at the values found.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from bench.local import ROOT, Server
from tests.integration.prometheus import Prometheus
from train.data import load_default

pytestmark = pytest.mark.integration

DASHBOARD = ROOT / "deploy" / "grafana" / "tabular-model.json"
NAMESPACE = "models-canary"
POD = "tabular-model-canary-0"
# Grafana's own variables, at values that fit a 1 s scrape interval
BUILTINS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.*),\s*(?P<label>\w+)\)$")
REGEX_SPECIAL = re.compile(r"([\\^$.|?*+()\[\]{}])")


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panel_queries() -> dict[str, list[str]]:
    """Each panel's title and its query expressions."""
    return {
        panel["title"]: [target["expr"] for target in panel["targets"]]
        for panel in dashboard()["panels"]
        if panel["type"] != "row"
    }


def query_variables() -> list[tuple[str, str, str]]:
    """(name, selector, label) of each `label_values` variable, in dashboard order."""
    found = []
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.match(variable["query"]["query"])
            assert match, f"variable {variable['name']}: not a label_values query"
            found.append((variable["name"], match["selector"], match["label"]))
    return found


def as_regex(values: list[str]) -> str:
    """Values as Grafana puts a multi-value variable in a PromQL regex: escaped, joined by |."""
    joined = "|".join(REGEX_SPECIAL.sub(r"\\\\\1", value) for value in values)
    return joined if len(values) == 1 else f"({joined})"


def substitute(expr: str, values: dict[str, str]) -> str:
    for name, value in {**BUILTINS, **values}.items():
        expr = expr.replace(name if name.startswith("$__") else f"${name}", value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def resolve_variables(prometheus: Prometheus) -> dict[str, list[str]]:
    """Each variable's values, as Grafana lists them, the earlier ones set to all values."""
    resolved: dict[str, list[str]] = {}
    for name, selector, label in query_variables():
        regexes = {other: as_regex(values) for other, values in resolved.items()}
        resolved[name] = prometheus.label_values(substitute(selector, regexes), label)
    return resolved


def wait_for(check, what: str, prometheus: Prometheus, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}:\n{prometheus.log()[-2000:]}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def scraped(
    bentoml_home, breast_cancer_model, tmp_path_factory
) -> Iterator[tuple[Prometheus, str]]:
    if shutil.which("prometheus") is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus (Debian package) is required in CI")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    work = tmp_path_factory.mktemp("grafana")
    server = Server(
        bentoml_home, work / "serve.log", MODEL_TAG=breast_cancer_model.tag,
        PAYLOAD_LOG_DIR=str(work / "payloads"), DRIFT_REPORT_DIR=str(work / "reports"),
        DRIFT_INTERVAL_MINUTES="0.05", DRIFT_WINDOW_MINUTES="30", DRIFT_MIN_ROWS="50",
    )  # fmt: skip
    prometheus = None
    try:
        server.wait_ready()
        labels = {"namespace": NAMESPACE, "pod": POD}
        prometheus = Prometheus(
            work / "prometheus", [server.url.removeprefix("http://")], labels=labels
        )
        prometheus.wait_ready()
        send_traffic(server)
        drift_run = "model_drift_last_run_timestamp_seconds"
        wait_for(lambda: prometheus.query(drift_run), "no drift run", prometheus)
        time.sleep(3)  # a few more scrapes after the traffic, for the rates
        yield prometheus, breast_cancer_model.tag
    finally:
        if prometheus is not None:
            prometheus.stop()
        server.stop()


def send_traffic(server: Server) -> None:
    """Rows of both classes on both endpoints, a 400 and a 404."""
    features, _ = load_default()
    rows = features.iloc[:200].to_numpy().tolist()

    def predict(row: list[float]) -> int:
        body = {"instances": [row]}
        return requests.post(f"{server.url}/predict", json=body, timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(predict, rows)) == {200}
    batch = requests.post(f"{server.url}/predict_batch", json={"instances": rows}, timeout=30)
    assert batch.status_code == 200
    invalid = requests.post(f"{server.url}/predict", json={"instances": [[1.0]]}, timeout=30)
    assert invalid.status_code == 400
    assert requests.get(f"{server.url}/no-such-route", timeout=30).status_code == 404


def test_variables_list_the_scraped_namespace_pod_and_model(scraped):
    prometheus, tag = scraped
    assert resolve_variables(prometheus) == {
        "namespace": [NAMESPACE],
        "pod": [POD],
        "model": [tag],
    }


@pytest.mark.parametrize("selection", ["all", "found"])
def test_every_panel_query_parses_and_returns_series(scraped, selection):
    prometheus, _ = scraped
    if selection == "all":
        values = {name: ".*" for name, _, _ in query_variables()}
    else:
        found = resolve_variables(prometheus)
        values = {name: as_regex(names) for name, names in found.items()}
    empty = []
    for title, exprs in panel_queries().items():
        for expr in exprs:
            answer = prometheus.answer(substitute(expr, values))
            assert answer["status"] == "success", f"{title}: {answer}\n{expr}"
            if not answer["data"]["result"]:
                empty.append(f"{title}: {expr}")
    assert not empty, "queries without series:\n" + "\n".join(empty)


def panel_result(prometheus: Prometheus, title: str) -> list[dict[str, Any]]:
    (expr, *_) = panel_queries()[title]
    values = {name: ".*" for name, _, _ in query_variables()}
    return prometheus.query(substitute(expr, values))


def test_panels_show_both_classes_and_the_served_model(scraped):
    prometheus, tag = scraped
    by_class = panel_result(prometheus, "Predictions by class")
    assert {series["metric"]["predicted_class"] for series in by_class} == {"0", "1"}
    (info,) = panel_result(prometheus, "Served model")
    name, version = tag.split(":")
    assert (info["metric"]["namespace"], info["metric"]["pod"]) == (NAMESPACE, POD)
    assert (info["metric"]["name"], info["metric"]["version"]) == (name, version)
    routes = panel_result(prometheus, "Request rate by route and code")
    assert {(s["metric"]["endpoint"], s["metric"]["http_response_code"]) for s in routes} >= {
        ("/predict", "200"),
        ("/predict", "400"),
        ("/predict_batch", "200"),
        ("other", "404"),
    }
    assert all(series["metric"]["model"] == tag for series in routes)
