"""The benchmark's peers, each from its own virtualenv (installed with pip into build/ on the
first run, reused after): MLServer and KServe start, listen on loopback only, and answer one
row with the model's own probabilities."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import psutil
import pytest

from bench import harness, peer_venvs, processes, systems
from model import store
from train.data import load_default
from train.training import TrainConfig, train

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def model(bentoml_home: Path) -> store.LoadedModel:
    return store.load(train(*load_default(), TrainConfig(name="peers")).tag)


@pytest.fixture(scope="module")
def context(
    model: store.LoadedModel, bentoml_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> systems.Context:
    return systems.Context(tag=model.tag, home=bentoml_home, work=tmp_path_factory.mktemp("peers"))


def _listening(pid: int) -> set[str]:
    """The addresses the server's processes listen on, IPv4-mapped IPv6 ones as IPv4."""
    addresses = set()
    for process in processes.tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            for connection in process.net_connections(kind="inet"):
                if connection.status == psutil.CONN_LISTEN:
                    address = ipaddress.ip_address(connection.laddr.ip)
                    mapped = getattr(address, "ipv4_mapped", None)
                    addresses.add(str(mapped or address))
    return addresses


@pytest.mark.timeout(1800)  # the first run installs the peer's virtualenv
@pytest.mark.parametrize("build", [systems.mlserver, systems.kserve], ids=systems.PEERS)
def test_peer_answers_one_row_with_the_models_probabilities(
    build: Callable[[systems.Context], systems.System],
    context: systems.Context,
    model: store.LoadedModel,
) -> None:
    system = build(context)
    peer_venvs.ensure(system.key)
    names = model.schema.names
    rows = harness.sample_rows(store.load_reference(model.tag), names, 1)
    expected = model.pipeline.predict_proba(pd.DataFrame(rows, columns=names))
    scripts = harness.Scripts(rows, names, context.model_name, context.work)
    with contextlib.ExitStack() as stack:
        server, _ = harness.start(system, context.work / f"{system.key}.log", stack)
        harness.check(system, server.url, scripts, expected)
        assert _listening(server.process.pid) == {"127.0.0.1"}
