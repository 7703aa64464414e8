"""A directory of drift runs: one subdirectory per run, `LATEST` naming the newest.

A run is named by its UTC start time (`RUN_NAME_FORMAT`, e.g. `20261125T120000123456Z`).
`LATEST` holds one such bare name, never a path: a pointer that is not a run name, or
whose run does not resolve to a directory directly inside the base directory (a symlink
out of it, say), names no run.
"""

from __future__ import annotations

import logging
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger(__name__)

LATEST = "LATEST"
SUMMARY_FILE = "drift.json"
RUN_NAME_FORMAT = "%Y%m%dT%H%M%S%fZ"
RUN_NAME = re.compile(r"\d{8}T\d{12}Z")  # what RUN_NAME_FORMAT writes, and nothing else


def is_run_name(name: str) -> bool:
    return RUN_NAME.fullmatch(name) is not None


def new_run(base: Path) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    run = base / datetime.now(UTC).strftime(RUN_NAME_FORMAT)
    run.mkdir()
    return run


def mark_latest(base: Path, run: Path, keep: int) -> None:
    """Point LATEST at `run` (atomically), then delete all but the `keep` newest runs.

    `run` must be a run directory directly inside `base` (`new_run`); LATEST gets its
    bare name.
    """
    if not is_run_name(run.name) or _run_in(base, run.name) is None:
        raise ValueError(f"{run} is not a run directory in {base}")
    pending = base / f".{LATEST}"
    pending.write_text(run.name)
    pending.replace(base / LATEST)
    runs = sorted(p for p in base.iterdir() if is_run_name(p.name) and _is_real_dir(p))
    for old in runs[: max(0, len(runs) - keep)]:
        shutil.rmtree(old, ignore_errors=True)


def latest_run(base: Path) -> Path | None:
    """Directory of the newest finished run, if any.

    None too, with a warning, when LATEST does not name a run directory in `base`.
    """
    pointer = base / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text(errors="replace").strip()
    run = _run_in(base, name) if is_run_name(name) else None
    if run is None:
        logger.warning("%s does not name a run directory in %s: %.80r", pointer, base, name)
        return None
    return run if (run / SUMMARY_FILE).is_file() else None


def _run_in(base: Path, name: str) -> Path | None:
    """`base / name` when it resolves to a directory directly inside `base`."""
    run = base / name
    try:
        inside = run.resolve(strict=True).parent == base.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None
    return run if inside and run.is_dir() else None


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()
