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
    def __init__(self, work: Path, targets: list[str], scrape_interval: str = "1s") -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise FileNotFoundError("prometheus is not installed (Debian package `prometheus`)")
        work.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [{"job_name": "model", "static_configs": [{"targets": targets}]}],
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
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        answer.raise_for_status()
        return answer.json()["data"]["result"]
