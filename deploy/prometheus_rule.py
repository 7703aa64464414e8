"""The Prometheus Operator's PrometheusRule, generated from deploy/prometheus/alerts.yml.

alerts.yml is the one source of truth: its rule groups are copied as they are into
``spec.groups`` of components/prometheus-operator/prometheusrule.yaml.

    python -m deploy.prometheus_rule            # regenerate the committed file
    python -m deploy.prometheus_rule --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
OUTPUT = ROOT / "deploy" / "k8s" / "components" / "prometheus-operator" / "prometheusrule.yaml"
RULE_NAME = "tabular-model"
LABELS = {
    "app.kubernetes.io/name": "tabular-model",
    "app.kubernetes.io/part-of": "tabular-model",
}
HEADER = (
    "# Generated from deploy/prometheus/alerts.yml by `python -m deploy.prometheus_rule`.\n"
    "# Do not edit: change alerts.yml and regenerate (a test fails when they differ).\n"
)


class _BlockStyleDumper(yaml.SafeDumper):
    """Writes multi-line strings (PromQL, descriptions) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockStyleDumper.add_representer(str, _represent_str)


def rule_groups(alerts_text: str) -> list[dict[str, Any]]:
    """The ``groups`` of a Prometheus rules file."""
    groups = yaml.safe_load(alerts_text)["groups"]
    if not isinstance(groups, list) or not groups:
        raise ValueError("the rules file has no rule groups")
    return groups


def prometheus_rule(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """A PrometheusRule object holding ``groups`` unchanged."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": RULE_NAME, "labels": dict(LABELS)},
        "spec": {"groups": groups},
    }


def render(alerts_text: str) -> str:
    """The PrometheusRule manifest, as written to OUTPUT."""
    body = yaml.dump(
        prometheus_rule(rule_groups(alerts_text)),
        Dumper=_BlockStyleDumper,
        sort_keys=False,
        width=10_000,
        allow_unicode=True,
    )
    return HEADER + body


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.prometheus_rule",
        description="Write the PrometheusRule manifest generated from the Prometheus rules file.",
    )
    parser.add_argument("--alerts", type=Path, default=ALERTS, help="Prometheus rules file")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="manifest to write")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the output is out of date"
    )
    args = parser.parse_args(argv)
    manifest = render(args.alerts.read_text(encoding="utf-8"))
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != manifest:
            print(f"{args.output} is out of date: run python -m deploy.prometheus_rule")
            return 1
        return 0
    args.output.write_text(manifest, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
