"""A local Prometheus server (Debian's `prometheus`) scraping given targets.

Used by the integration tests to check that a real Prometheus reads the service's metrics.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import requests
import yaml

from bench.local import ServerCommand


class Prometheus(ServerCommand):
    """`labels` are added to every scraped series, as a Kubernetes scrape adds its own."""

    def __init__(
        self,
        work: Path,
        targets: list[str],
        scrape_interval: str = "1s",
        labels: dict[str, str] | None = None,
    ) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise FileNotFoundError("prometheus is not installed (Debian package `prometheus`)")
        work.mkdir(parents=True, exist_ok=True)
        static_labels = {"labels": labels} if labels else {}
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [
                {"job_name": "model", "static_configs": [{"targets": targets, **static_labels}]}
            ],
        }
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        argv = [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            "--web.listen-address=127.0.0.1:{port}",
        ]
        super().__init__(argv, work / "prometheus.log", {}, ready_path="/-/ready")

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = self.answer(promql)
        if answer.get("status") != "success":
            raise RuntimeError(f"{promql}: {answer}")
        return answer["data"]["result"]

    def answer(self, promql: str) -> dict[str, Any]:
        """The API's whole answer: a query that does not parse answers status `error`."""
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        return answer.json()

    def label_values(self, selector: str, label: str) -> list[str]:
        params = {"match[]": selector}
        answer = requests.get(f"{self.url}/api/v1/label/{label}/values", params=params, timeout=10)
        answer.raise_for_status()
        return answer.json()["data"]
