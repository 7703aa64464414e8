from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.local import Server
from model import store
from train.data import load_default
from train.training import TrainConfig, train


@pytest.fixture(scope="session")
def breast_cancer_model(bentoml_home: Path) -> store.LoadedModel:
    features, target = load_default()
    result = train(features, target, TrainConfig(name="itest", promote=True))
    return store.load(result.tag)


@pytest.fixture(scope="session")
def server(
    bentoml_home: Path, breast_cancer_model: store.LoadedModel, tmp_path_factory
) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("server") / "serve.log"
    running = Server(bentoml_home, log, MODEL_NAME="itest")
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()
