"""KServe manifests (deploy/k8s/kserve): a ServingRuntime and an InferenceService.

Rendered with ``kubectl kustomize``, validated offline against the vendored schemas of
KServe's CRDs and kubernetes-validate, and run through deploy/k8s_checks.py, whose
workload checks see the predictor pod as KServe builds it. Negative tests mutate the
render to prove each check fires. No cluster and no network are needed.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import k8s_checks as kc

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KSERVE = K8S / "kserve"
KUBE_VERSIONS = ("1.30", "1.33")
PREDICTOR = "Deployment/tabular-model-predictor"

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def rendered(kubectl: Path) -> dict[str, list[Obj]]:
    return {target: kc.render(K8S / target, kubectl) for target in ("kserve", "base")}


@pytest.fixture
def objs(rendered: dict[str, list[Obj]]) -> list[Obj]:
    """A fresh copy of the KServe render, for mutation."""
    return copy.deepcopy(rendered["kserve"])


def get(objs: list[Obj], kind: str) -> Any:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def runtime_container(objs: list[Obj]) -> Any:
    return get(objs, "ServingRuntime")["spec"]["containers"][0]


def predictor(objs: list[Obj]) -> Any:
    return get(objs, "InferenceService")["spec"]["predictor"]


def predictor_deployment(objs: list[Obj]) -> Any:
    derived = kc.with_kserve_predictors(objs)[len(objs) :]
    assert len(derived) == 1
    return derived[0]


# --------------------------------------------------------------------------- the render


def test_render_holds_the_runtime_the_service_and_the_base_common_objects(
    objs: list[Obj],
) -> None:
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == [
        "ConfigMap",
        "InferenceService",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ServiceAccount",
        "ServingRuntime",
    ]
    # the base's Service is left out: KServe creates tabular-model-predictor
    assert not [o for o in objs if o["kind"] == "Service"]


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_schema_valid(objs: list[Obj], version: str) -> None:
    problems, skipped = kc.schema_problems(objs, [version], strict=True)
    assert problems == []
    assert skipped == []  # the KServe kinds are validated against their vendored schemas


def test_semantic_checks_pass(objs: list[Obj]) -> None:
    assert kc.check_all(objs) == []


def test_cli_renders_validates_and_checks() -> None:
    assert kc.main(["--kube-version", KUBE_VERSIONS[0], str(KSERVE)]) == 0


def test_make_manifests_checks_kserve() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nmanifests:", 1)[1].split("\n\n", 1)[0]
    assert "deploy/k8s/kserve" in recipe


def test_protocol_v2_on_both_and_no_storage(objs: list[Obj]) -> None:
    runtime = get(objs, "ServingRuntime")
    isvc = get(objs, "InferenceService")
    assert runtime["spec"]["protocolVersions"] == ["v2"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v2"
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in [
        f["name"] for f in runtime["spec"]["supportedModelFormats"]
    ]
    # the model is in the image: no storage initializer
    assert not {"storageUri", "storage"} & set(model)
    assert "storageUris" not in isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


def test_probes_on_the_v2_health_routes(objs: list[Obj]) -> None:
    container = runtime_container(objs)
    assert container["name"] == "kserve-container"
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_predictor_pod_runs_the_base_deployments_image_and_hardening(
    rendered: dict[str, list[Obj]], objs: list[Obj]
) -> None:
    """The predictor pod KServe builds is the base Deployment's pod, probes and labels aside."""
    base = get(copy.deepcopy(rendered["base"]), "Deployment")
    base_pod = base["spec"]["template"]["spec"]
    pod = predictor_deployment(objs)["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["kserve-container"]
    ours, theirs = pod["containers"][0], base_pod["containers"][0]
    for field in (
        "image",
        "imagePullPolicy",
        "ports",
        "envFrom",
        "env",
        "resources",
        "lifecycle",
        "securityContext",
        "volumeMounts",
    ):
        assert ours[field] == theirs[field], field
    for field in (
        "serviceAccountName",
        "automountServiceAccountToken",
        "enableServiceLinks",
        "terminationGracePeriodSeconds",
        "securityContext",
        "volumes",
        "topologySpreadConstraints",
    ):
        assert pod[field] == base_pod[field], field
    annotations = predictor_deployment(objs)["spec"]["template"]["metadata"]["annotations"]
    base_annotations = base["spec"]["template"]["metadata"]["annotations"]
    assert {k: annotations[k] for k in base_annotations} == base_annotations


def test_base_objects_select_the_predictor_pods(objs: list[Obj]) -> None:
    labels = predictor_deployment(objs)["spec"]["template"]["metadata"]["labels"]
    for kind in ("NetworkPolicy", "PodDisruptionBudget"):
        obj = get(objs, kind)
        selector = obj["spec"].get("podSelector") or obj["spec"]["selector"]
        assert kc.label_selector_matches(selector, labels), kind
    assert labels["serving.kserve.io/inferenceservice"] == "tabular-model"


def test_generated_names_reach_the_custom_resources(objs: list[Obj]) -> None:
    """kustomizeconfig.yaml: the hashed ConfigMap name is written into the runtime."""
    config_map = get(objs, "ConfigMap")["metadata"]["name"]
    assert config_map.startswith("tabular-model-settings-")
    assert runtime_container(objs)["envFrom"] == [{"configMapRef": {"name": config_map}}]


def test_images_field_retags_the_runtime(tmp_path: Path, kubectl: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    kustomization = {
        "resources": [os.path.relpath(KSERVE, overlay)],  # kustomize wants it relative
        "images": [{"name": "tabular-model", "newTag": "0.2.0"}],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    objs = kc.render(overlay, kubectl)
    assert runtime_container(objs)["image"] == "tabular-model:0.2.0"


# --------------------------------------------------------------------------- KServe's merge


def test_predictor_model_fields_are_merged_over_the_runtime_container(objs: list[Obj]) -> None:
    model = predictor(objs)["model"]
    model["env"] = [{"name": "BENTOML_HOME", "value": "/tmp/other"}, {"name": "X", "value": "1"}]
    model["args"] = ["--extra"]
    model["resources"] = {"limits": {"memory": "2Gi"}}
    runtime_container(objs)["args"] = ["--first"]
    container = predictor_deployment(objs)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["BENTOML_HOME"]["value"] == "/tmp/other"
    assert env["X"]["value"] == "1"
    assert "API_KEYS" in env
    assert container["args"] == ["--first", "--extra"]  # KServe appends the predictor's args
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "512Mi"}
    assert container["name"] == "kserve-container"
    assert not {"modelFormat", "runtime", "protocolVersion"} & set(container)


def test_predictor_pod_fields_are_merged_over_the_runtimes(objs: list[Obj]) -> None:
    get(objs, "ServingRuntime")["spec"]["nodeSelector"] = {"pool": "cpu"}
    predictor(objs)["volumes"] = [{"name": "extra", "emptyDir": {}}]
    pod = predictor_deployment(objs)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "cpu"}
    assert [v["name"] for v in pod["volumes"]] == ["tmp", "extra"]
    assert "minReplicas" not in pod
    assert "model" not in pod


# --------------------------------------------------------------------------- checks fire


def fires(objs: list[Obj], *words: str) -> list[str]:
    problems = kc.check_all(objs)
    assert any(all(w in p for w in words) for p in problems), problems
    return problems


def _runtime(objs: list[Obj]) -> Any:
    return get(objs, "ServingRuntime")["spec"]


def _remove(objs: list[Obj], kind: str) -> None:
    objs.remove(get(objs, kind))


def _set_path(obj: Any, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        obj = obj.setdefault(key, {}) if isinstance(obj, dict) else obj[int(key)]
    obj[last] = value


Mutation = Callable[[list[Obj]], None]
MUTATIONS: dict[str, tuple[Mutation, tuple[str, ...]]] = {
    "protocol v1": (
        lambda o: _set_path(predictor(o), "model.protocolVersion", "v1"),
        ("protocolVersion is 'v1'",),
    ),
    "runtime without v2": (
        lambda o: _set_path(_runtime(o), "protocolVersions", ["v1"]),
        ("do not include 'v2'",),
    ),
    "runtime missing": (lambda o: _remove(o, "ServingRuntime"), ("no ServingRuntime",)),
    "runtime not named": (
        lambda o: predictor(o)["model"].pop("runtime"),
        ("runtime is not set",),
    ),
    "runtime disabled": (lambda o: _set_path(_runtime(o), "disabled", True), ("disabled",)),
    "other model format": (
        lambda o: _set_path(predictor(o), "model.modelFormat", {"name": "sklearn"}),
        ("does not support modelFormat",),
    ),
    "format version the runtime lacks": (
        lambda o: _set_path(predictor(o), "model.modelFormat.version", "2"),
        ("does not support modelFormat",),
    ),
    "storageUri": (
        lambda o: _set_path(predictor(o), "model.storageUri", "s3://bucket/model"),
        ("storageUri is set", "packaged in the image"),
    ),
    "container renamed": (
        lambda o: _set_path(runtime_container(o), "name", "model"),
        ("no container named 'kserve-container'",),
    ),
    "liveness on /livez": (
        lambda o: _set_path(runtime_container(o), "livenessProbe.httpGet.path", "/livez"),
        ("livenessProbe calls '/livez'",),
    ),
    "no readiness probe": (
        lambda o: runtime_container(o).pop("readinessProbe"),
        ("no readinessProbe",),
    ),
    "probe on another port": (
        lambda o: _set_path(runtime_container(o), "readinessProbe.httpGet.port", 8080),
        ("readinessProbe port 8080 is not the serving port 3000",),
    ),
    "no port": (lambda o: runtime_container(o).pop("ports"), ("would route to 8080",)),
    "policy on another port": (
        lambda o: [
            rule["ports"][0].update(port=8080)
            for rule in get(o, "NetworkPolicy")["spec"]["ingress"]
        ],
        ("admits nothing on port 3000",),
    ),
    "no cpu limit": (
        lambda o: runtime_container(o)["resources"]["limits"].pop("cpu"),
        ("no cpu in resources.limits",),
    ),
    "writable root": (
        lambda o: _set_path(runtime_container(o), "securityContext.readOnlyRootFilesystem", False),
        ("readOnlyRootFilesystem is not true",),
    ),
    "privilege escalation": (
        lambda o: _set_path(runtime_container(o), "securityContext.allowPrivilegeEscalation", True),
        ("allowPrivilegeEscalation is not false",),
    ),
    "capabilities kept": (
        lambda o: _set_path(runtime_container(o), "securityContext.capabilities", {}),
        ("capabilities.drop does not include ALL",),
    ),
    "root allowed": (
        lambda o: _set_path(runtime_container(o), "securityContext.runAsNonRoot", False),
        ("runAsNonRoot is not true",),
    ),
    "unconfined": (
        lambda o: _set_path(
            runtime_container(o), "securityContext.seccompProfile", {"type": "Unconfined"}
        ),
        ("seccompProfile type 'Unconfined'",),
    ),
    "token mounted": (
        lambda o: _set_path(predictor(o), "automountServiceAccountToken", True),
        ("automountServiceAccountToken",),
    ),
    "host network": (lambda o: _set_path(predictor(o), "hostNetwork", True), ("hostNetwork",)),
    "predictor loosens the runtime": (
        lambda o: _set_path(
            predictor(o), "model.securityContext", {"readOnlyRootFilesystem": False}
        ),
        ("readOnlyRootFilesystem is not true",),
    ),
    "replica bounds": (
        lambda o: _set_path(predictor(o), "minReplicas", 20),
        ("minReplicas 20 > maxReplicas 10",),
    ),
    # the general workload checks, on the predictor pod
    "latest image": (
        lambda o: _set_path(predictor(o), "model.image", "tabular-model:latest"),
        (PREDICTOR, "mutable tag 'latest'"),
    ),
    "optional API keys": (
        lambda o: _set_path(
            runtime_container(o)["env"][1], "valueFrom.secretKeyRef.optional", True
        ),
        (PREDICTOR, "optional: true"),
    ),
    "memory limit below the budget": (
        lambda o: _set_path(runtime_container(o), "resources.limits.memory", "512Mi"),
        (PREDICTOR, "exceeds the memory limit"),
    ),
    "no NetworkPolicy": (
        lambda o: _remove(o, "NetworkPolicy"),
        (PREDICTOR, "no NetworkPolicy restricts ingress"),
    ),
    "probe port undeclared": (
        lambda o: _set_path(runtime_container(o), "livenessProbe.httpGet.port", "web"),
        (PREDICTOR, "livenessProbe.httpGet.port 'web' is not a declared container port"),
    ),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_check_fires(objs: list[Obj], name: str) -> None:
    mutate, words = MUTATIONS[name]
    mutate(objs)
    fires(objs, *words)


def test_prometheus_port_annotation_off_the_container_fires(objs: list[Obj]) -> None:
    predictor(objs)["annotations"]["prometheus.io/port"] = "8080"
    fires(objs, "prometheus.io/port '8080' is not a port of kserve-container")


def test_format_version_the_runtime_lists_passes(objs: list[Obj]) -> None:
    _runtime(objs)["supportedModelFormats"][0]["version"] = "1"
    predictor(objs)["model"]["modelFormat"]["version"] = "1"
    assert kc.check_all(objs) == []


def test_hardening_on_the_pod_alone_is_enough(objs: list[Obj]) -> None:
    """Container settings win over the pod's; absent there, the pod's apply."""
    context = runtime_container(objs)["securityContext"]
    del context["runAsNonRoot"], context["seccompProfile"]
    assert kc.check_all(objs) == []
    predictor(objs)["securityContext"]["runAsNonRoot"] = False
    fires(objs, "runAsNonRoot is not true")


def test_other_custom_resources_are_left_alone(objs: list[Obj]) -> None:
    isvc = get(objs, "InferenceService")
    isvc["apiVersion"] = "example.com/v1"
    problems = kc.check_inference_services(objs)
    assert problems == []


# --------------------------------------------------------------------------- vendored schemas


def test_vendored_schemas_are_kserves() -> None:
    docs = {
        path.name: json.loads(gzip.decompress(path.read_bytes()))
        for path in sorted((KSERVE / "schemas").glob("*.json.gz"))
    }
    assert set(docs) == {"inferenceservice-v1beta1.json.gz", "servingruntime-v1alpha1.json.gz"}
    readme = (KSERVE / "schemas" / "README.md").read_text()
    for name, doc in docs.items():
        assert doc["group"] == "serving.kserve.io"
        assert doc["source"].startswith("KServe v0.20.0 config/crd/full/")
        assert doc["source"].split()[-1] in readme
        assert name in readme
        spec = doc["openAPIV3Schema"]["properties"]["spec"]
        assert spec["type"] == "object"
    isvc = docs["inferenceservice-v1beta1.json.gz"]["openAPIV3Schema"]
    model = isvc["properties"]["spec"]["properties"]["predictor"]["properties"]["model"]
    assert {"modelFormat", "runtime", "protocolVersion", "storageUri"} <= set(model["properties"])


@pytest.mark.parametrize(
    ("kind", "path", "value", "words"),
    [
        (
            "InferenceService",
            "spec.predictor.model.livenessProbes",
            {},
            "'livenessProbes' was unexpected",
        ),
        ("InferenceService", "spec.predictor.minReplicas", "two", "is not of type 'integer'"),
        (
            "InferenceService",
            "spec.predictor.model.modelFormat",
            {},
            "'name' is a required property",
        ),
        (
            "ServingRuntime",
            "spec.supportedModelFormats.0.priority",
            0,
            "less than the minimum of 1",
        ),
        ("ServingRuntime", "spec.containers.0.image", 3, "is not of type 'string'"),
        ("ServingRuntime", "spec.protocol", ["v2"], "'protocol' was unexpected"),
    ],
)
def test_vendored_schema_rejects(
    objs: list[Obj], kind: str, path: str, value: Any, words: str
) -> None:
    _set_path(get(objs, kind), path, value)
    problems, _ = kc.schema_problems(objs, [KUBE_VERSIONS[0]])
    assert any(words in p and f"{kind}/tabular-model [KServe v0.20.0" in p for p in problems), (
        problems
    )


def test_vendored_schema_rejects_duplicate_list_map_keys(objs: list[Obj]) -> None:
    ports = runtime_container(objs)["ports"]
    ports.append({**ports[0], "name": "again"})  # same containerPort and protocol
    problems, _ = kc.schema_problems(objs, [KUBE_VERSIONS[0]])
    assert any('duplicate map entries [3000, "TCP"]' in p for p in problems), problems


def test_vendor_crd_schemas_is_deterministic(tmp_path: Path) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget"},
            "versions": [
                {"name": "v1", "served": True, "schema": {"openAPIV3Schema": {"type": "object"}}},
                {"name": "v0", "served": False, "schema": {"openAPIV3Schema": {}}},
            ],
        },
    }
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    [written] = kc.vendor_crd_schemas(yaml.safe_dump(crd), "test", first)
    kc.vendor_crd_schemas(yaml.safe_dump(crd), "test", second)
    assert written.name == "widget-v1.json.gz"
    assert written.read_bytes() == (second / written.name).read_bytes()
    doc = json.loads(gzip.decompress(written.read_bytes()))
    assert doc == {
        "source": "test",
        "group": "example.com",
        "version": "v1",
        "kind": "Widget",
        "openAPIV3Schema": {"type": "object"},
    }


def test_strict_schema_keeps_preserved_and_open_maps_open() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"a": {"type": "string"}}},
            "raw": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {},
            },
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            # a field that happens to be called "properties" is a field, not a keyword
            "properties": {"type": "object", "properties": {"x": {"type": "integer"}}},
        },
    }
    strict = kc._strict(schema)
    assert strict["additionalProperties"] is False
    assert strict["properties"]["spec"]["additionalProperties"] is False
    assert "additionalProperties" not in strict["properties"]["raw"]
    assert strict["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    assert strict["properties"]["properties"]["additionalProperties"] is False
    assert set(strict["properties"]) == {"spec", "raw", "labels", "properties"}
