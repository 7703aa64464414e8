"""MODEL_RUNTIME on a real server: ONNX and scikit-learn give the same answers on /predict and
/predict_batch (JSON and Arrow), with categorical features and gaps; /model says which runs."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import requests

from bench.local import Server
from model import store
from model.schema import to_model_frame
from serving.arrow_bodies import write_instances
from serving.media import ARROW_STREAM
from tests.train.test_onnx import mixed_table
from train.training import TrainConfig, train

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def mixed_model(bentoml_home) -> store.LoadedModel:
    features, target = mixed_table("multiclass_text", seed=3)
    result = train(features, target, TrainConfig(name="mixed", estimator="hist_gradient_boosting"))
    assert result.onnx_status == "passed"
    return store.load(result.tag)


@pytest.fixture(scope="module")
def servers(bentoml_home, mixed_model, tmp_path_factory) -> Iterator[dict[str, Server]]:
    work = tmp_path_factory.mktemp("runtimes")
    started: dict[str, Server] = {}
    try:
        for runtime in ("onnx", "sklearn"):
            started[runtime] = Server(
                bentoml_home,
                work / f"{runtime}.log",
                MODEL_TAG=mixed_model.tag,
                MODEL_RUNTIME=runtime,
                WORKERS="1",
                PAYLOAD_LOG_DIR=str(work / f"payloads-{runtime}"),
            )
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()


def instances() -> list[dict]:
    features, _ = mixed_table("multiclass_text", seed=4)
    rows = features.iloc[:40].astype(object).where(features.iloc[:40].notna(), None)
    listed = rows.to_dict(orient="records")
    listed.append({"age in years": None, "2nd spend": None, "city": None, "plan": None})
    listed.append({"age in years": 30, "2nd spend": 12.5, "city": "atlantis", "plan": "z"})
    return listed


def test_model_route_names_the_runtime_in_use(servers, mixed_model):
    for runtime, server in servers.items():
        info = requests.get(f"{server.url}/model", timeout=10).json()
        assert info["runtime"]["name"] == runtime
        assert info["runtime"]["onnx"]["status"] == "passed"
        assert info["runtime"]["onnx"]["parity"]["passed"] is True


def test_predict_and_predict_batch_answer_alike_on_both_runtimes(servers, mixed_model):
    body = {"instances": instances()}
    answers = {}
    for runtime, server in servers.items():
        single = [
            requests.post(f"{server.url}/predict", json={"instances": [row]}, timeout=10)
            for row in body["instances"][:5]
        ]
        assert all(r.status_code == 200 for r in single), [r.text for r in single]
        batch = requests.post(f"{server.url}/predict_batch", json=body, timeout=30)
        assert batch.status_code == 200, batch.text
        answers[runtime] = (batch.json(), [r.json() for r in single])
    onnx_batch, onnx_single = answers["onnx"]
    sklearn_batch, sklearn_single = answers["sklearn"]
    assert onnx_batch["predictions"] == sklearn_batch["predictions"]
    for ours, theirs in zip(
        onnx_batch["probabilities"], sklearn_batch["probabilities"], strict=True
    ):
        assert ours.keys() == theirs.keys()
        assert list(ours.values()) == pytest.approx(list(theirs.values()), abs=1e-4)
    assert [a["predictions"] for a in onnx_single] == [a["predictions"] for a in sklearn_single]
    assert onnx_batch["predictions"][:5] == [a["predictions"][0] for a in onnx_single]


def test_arrow_batches_answer_alike_on_both_runtimes(servers, mixed_model):
    kinds = {feature.name: feature.kind for feature in mixed_model.schema.features}
    body = write_instances(to_model_frame(pd.DataFrame(instances()), kinds))
    tables = {}
    for runtime, server in servers.items():
        response = requests.post(
            f"{server.url}/predict_batch",
            data=body,
            headers={"Content-Type": ARROW_STREAM, "Accept": ARROW_STREAM},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        tables[runtime] = pa.ipc.open_stream(response.content).read_all()
    onnx, sklearn = tables["onnx"], tables["sklearn"]
    assert onnx.column("prediction").to_pylist() == sklearn.column("prediction").to_pylist()
    for name in onnx.column_names[1:]:
        np.testing.assert_allclose(
            onnx.column(name).to_numpy(), sklearn.column(name).to_numpy(), atol=1e-4
        )


def test_onnx_required_on_a_version_without_one_keeps_the_server_unready(bentoml_home, tmp_path):
    features, target = mixed_table("binary")
    tag = train(features, target, TrainConfig(name="no-onnx", onnx=False)).tag
    server = Server(bentoml_home, tmp_path / "serve.log", MODEL_TAG=tag, MODEL_RUNTIME="onnx")
    server.ready_path = "/livez"  # alive, never ready
    try:
        server.wait_ready(120)
        assert requests.get(f"{server.url}/readyz", timeout=5).status_code == 503
        answer = requests.post(f"{server.url}/predict", json={"instances": [{}]}, timeout=5)
        assert answer.status_code == 503
        assert "ONNX runtime required (MODEL_RUNTIME=onnx)" in answer.json()["error"]
    finally:
        server.stop()
