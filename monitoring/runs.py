"""A directory of drift runs: one subdirectory per run, `LATEST` naming the newest."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

LATEST = "LATEST"
SUMMARY_FILE = "drift.json"


def new_run(base: Path) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    run = base / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    run.mkdir()
    return run


def mark_latest(base: Path, run: Path, keep: int) -> None:
    """Point LATEST at `run` (atomically), then delete all but the `keep` newest runs."""
    pending = base / f".{LATEST}"
    pending.write_text(run.name)
    pending.replace(base / LATEST)
    runs = sorted(p for p in base.iterdir() if p.is_dir())
    for old in runs[: max(0, len(runs) - keep)]:
        shutil.rmtree(old, ignore_errors=True)


def latest_run(base: Path) -> Path | None:
    """Directory of the newest finished run, if any."""
    pointer = base / LATEST
    if not pointer.is_file():
        return None
    run = base / pointer.read_text().strip()
    return run if (run / SUMMARY_FILE).is_file() else None
