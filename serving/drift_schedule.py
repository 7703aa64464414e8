"""The scheduled drift job inside the service.

APScheduler runs the job in a background thread every N minutes; the job itself runs the
drift CLI (`python -m monitoring drift`) as a child process, so its CPU, memory and
failures stay out of the process answering predictions. Each run keeps its report in
its own directory (monitoring.runs); `LATEST` names the newest finished one.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model.settings import Settings
from monitoring import runs

logger = logging.getLogger(__name__)

EXIT_DRIFT = 3


@dataclass(frozen=True)
class DriftJob:
    model_tag: str
    payload_dir: Path
    report_dir: Path
    window_minutes: int
    min_rows: int
    keep_reports: int
    timeout_seconds: float = 600.0

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "monitoring", "drift",
            "--model", self.model_tag,
            "--logs", str(self.payload_dir),
            "--window", f"{self.window_minutes}m",
            "--min-rows", str(self.min_rows),
            "--runs", str(self.report_dir),
            "--keep", str(self.keep_reports),
            "--notify",
        ]  # fmt: skip

    def run(self) -> dict[str, Any] | None:
        """One drift run over the latest window of payload logs; its drift.json, or None."""
        started = time.monotonic()
        before = runs.latest_run(self.report_dir)
        try:
            finished = subprocess.run(
                self.command(), capture_output=True, text=True,
                timeout=self.timeout_seconds, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            logger.error("drift run timed out after %.0f s", self.timeout_seconds)
            return None
        latest = runs.latest_run(self.report_dir)
        if finished.returncode not in (0, EXIT_DRIFT) or latest is None or latest == before:
            logger.warning(
                "drift run skipped or failed (exit %d): %s",
                finished.returncode, finished.stderr.strip()[-500:],
            )  # fmt: skip
            return None
        result = json.loads((latest / runs.SUMMARY_FILE).read_text())
        logger.info(
            "drift run %s: drift_detected=%s share_drifted=%.2f rows=%d (%.1f s)",
            latest.name, result["drift_detected"], result["share_drifted"],
            result["current_rows"], time.monotonic() - started,
        )  # fmt: skip
        return result


@dataclass
class ExternalRuns:
    """Runs written by someone else (the CronJob): each new LATEST is a result."""

    report_dir: Path
    _seen: str | None = None

    def run(self) -> dict[str, Any] | None:
        latest = runs.latest_run(self.report_dir)
        if latest is None or latest.name == self._seen:
            return None
        self._seen = latest.name
        return json.loads((latest / runs.SUMMARY_FILE).read_text())


class DriftSchedule:
    """Runs `job` every `interval_minutes`; hands each result to `on_result`."""

    def __init__(
        self,
        job: DriftJob | ExternalRuns,
        interval_minutes: float,
        on_result: Callable[[dict[str, Any], float], None],
    ) -> None:
        self.job = job
        self.interval_minutes = interval_minutes
        self.on_result = on_result
        # imported here: the service imports this module in processes that never schedule
        from apscheduler.schedulers.background import BackgroundScheduler

        self._scheduler = BackgroundScheduler(daemon=True, timezone=UTC)

    def run_once(self) -> dict[str, Any] | None:
        try:
            result = self.job.run()
            if result is not None:
                finished = datetime.fromisoformat(result["generated_at"]).timestamp()
                self.on_result(result, finished)
            return result
        except Exception:  # the job must never take the service down
            logger.exception("drift run failed")
            return None

    def start(self, poll_seconds: float | None = None) -> None:
        self.job.report_dir.mkdir(parents=True, exist_ok=True)
        self._scheduler.add_job(
            self.run_once,
            "interval",
            seconds=poll_seconds or self.interval_minutes * 60,
            id="drift",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=60,
        )
        self._scheduler.start()
        logger.info("drift job scheduled every %g min", self.interval_minutes)

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)


def start_drift_schedule(settings: Settings, model_tag: str) -> DriftSchedule | None:
    """Start the drift job the settings ask for, exporting each run's result as metrics."""
    if not settings.drift.interval_minutes:
        return None
    from .metrics import DriftMetrics

    metrics = DriftMetrics(model_tag, settings.drift.interval_minutes * 60)
    if settings.drift.runner == "external":
        watcher = DriftSchedule(
            ExternalRuns(settings.drift.report_dir),
            settings.drift.interval_minutes,
            on_result=metrics.record,
        )
        watcher.run_once()  # export the latest run right away, then look for new ones
        watcher.start(poll_seconds=min(60.0, settings.drift.interval_minutes * 60))
        return watcher
    job = DriftJob(
        model_tag=model_tag,
        payload_dir=settings.payload_log.directory,
        report_dir=settings.drift.report_dir,
        window_minutes=settings.drift.window_minutes,
        min_rows=settings.drift.min_rows,
        keep_reports=settings.drift.keep_reports,
    )
    schedule = DriftSchedule(job, settings.drift.interval_minutes, on_result=metrics.record)
    schedule.start()
    return schedule
