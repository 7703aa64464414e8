"""Shared fixtures: every test session gets its own, empty BentoML home."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_SESSION_HOME: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    # Must be set before bentoml first resolves its model store (a process-wide singleton).
    global _SESSION_HOME
    _SESSION_HOME = Path(tempfile.mkdtemp(prefix="bentoml-home-"))
    os.environ["BENTOML_HOME"] = str(_SESSION_HOME)
    # servers started by tests run no scheduled drift job unless a test asks for one
    os.environ["DRIFT_INTERVAL_MINUTES"] = "0"


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SESSION_HOME is not None:
        shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def bentoml_home() -> Path:
    assert _SESSION_HOME is not None
    return _SESSION_HOME
