"""Auth, limits, overload, graceful shutdown and broken models on real servers."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from bench.local import Server
from model import store
from train.data import load_default
from train.training import TrainConfig, train

pytestmark = pytest.mark.integration

FEATURES, _ = load_default()
ROW = FEATURES.iloc[0].tolist()


def predict(server: Server, headers: dict | None = None, rows: int = 1) -> requests.Response:
    body = {"instances": FEATURES.iloc[:rows].to_numpy().tolist()}
    return requests.post(f"{server.url}/predict", json=body, headers=headers or {}, timeout=30)


@pytest.fixture
def start(bentoml_home, tmp_path):
    started: list[Server] = []

    def start_server(**env: str) -> Server:
        server = Server(bentoml_home, tmp_path / f"serve-{len(started)}.log", **env)
        started.append(server)
        return server

    yield start_server
    for server in started:
        server.stop()


def test_api_keys(start, breast_cancer_model):
    server = start(MODEL_TAG=breast_cancer_model.tag, API_KEYS="first-key,second-key")
    server.wait_ready()
    refused = predict(server)
    assert refused.status_code == 401 and "API key" in refused.json()["error"]
    assert predict(server, {"Authorization": "Bearer first-key"}).status_code == 200
    assert predict(server, {"X-API-Key": "second-key"}).status_code == 200
    assert predict(server, {"X-API-Key": "third-key"}).status_code == 401
    assert requests.get(f"{server.url}/model", timeout=5).status_code == 401
    for open_path in ("/livez", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"):
        assert requests.get(f"{server.url}{open_path}", timeout=5).status_code == 200
    # the Open Inference Protocol routes take the same keys; refusals in their error shape
    name, _, version = breast_cancer_model.tag.partition(":")
    infer = f"{server.url}/v2/models/{name}/versions/{version}/infer"
    v2_body = {
        "inputs": [{"name": "input", "shape": [1, len(ROW)], "datatype": "FP64", "data": ROW}]
    }
    for path in (f"/v2/models/{name}", "/v2"):
        assert requests.get(f"{server.url}{path}", timeout=5).status_code == 401
    refused = requests.post(infer, json=v2_body, timeout=30)
    assert refused.status_code == 401 and "API key" in refused.json()["error"]
    keyed = requests.post(infer, json=v2_body, headers={"X-API-Key": "first-key"}, timeout=30)
    assert keyed.status_code == 200 and keyed.json()["model_version"] == version
    server.stop()
    log = server.log()
    assert "first-key" not in log and "second-key" not in log
    access = [json.loads(line) for line in log.splitlines() if line.startswith('{"ts"')]
    statuses = Counter((a["path"], a["status"]) for a in access if a["logger"] == "access")
    assert statuses[("/predict", 401)] == 2 and statuses[("/predict", 200)] == 2
    assert statuses[(infer.removeprefix(server.url), 401)] == 1
    assert all(len(a["request_id"]) == 32 for a in access)


def test_body_size_limit(start, breast_cancer_model):
    server = start(MODEL_TAG=breast_cancer_model.tag, MAX_BODY_BYTES="5000")
    server.wait_ready()
    assert predict(server, rows=5).status_code == 200
    too_big = predict(server, rows=50)
    assert too_big.status_code == 413 and "MAX_BODY_BYTES" in too_big.json()["error"]


def test_overload_sheds_with_retry_after_and_recovers(start, breast_cancer_model):
    server = start(MODEL_TAG=breast_cancer_model.tag, MAX_IN_FLIGHT="16", PAYLOAD_LOG="off",
                   ACCESS_LOG="off")  # fmt: skip
    server.wait_ready()
    body = json.dumps({"instances": [ROW]})
    local = threading.local()
    stop_at = time.monotonic() + 4

    def hammer(_: int) -> Counter:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        seen: Counter = Counter()
        while time.monotonic() < stop_at:
            response = session.post(
                f"{server.url}/predict",
                data=body,
                timeout=30,
                headers={"Content-Type": "application/json"},
            )
            seen[response.status_code] += 1
            if response.status_code == 503:
                seen["retry-after"] += response.headers.get("retry-after") == "1"
        return seen

    with ThreadPoolExecutor(96) as pool:
        totals = sum(pool.map(hammer, range(96)), Counter())
    assert set(totals) <= {200, 503, "retry-after"}, totals
    assert totals[503] > 0 and totals["retry-after"] == totals[503]
    assert totals[200] > 0
    assert server.process.poll() is None
    after = [predict(server).status_code for _ in range(20)]
    assert after == [200] * 20


def test_sigterm_drains_requests_in_flight(start, breast_cancer_model):
    server = start(MODEL_TAG=breast_cancer_model.tag)
    server.wait_ready()
    rows = FEATURES.sample(n=20_000, replace=True, random_state=0).to_numpy().tolist()
    body = json.dumps({"instances": rows})

    def big_request(_: int) -> int:
        response = requests.post(
            f"{server.url}/predict_batch",
            data=body,
            timeout=60,
            headers={"Content-Type": "application/json"},
        )
        return response.status_code

    with ThreadPoolExecutor(6) as pool:
        pending = [pool.submit(big_request, i) for i in range(6)]
        time.sleep(0.5)  # all six sent and being answered
        server.process.send_signal(signal.SIGTERM)
        statuses = [future.result() for future in pending]
    assert statuses == [200] * 6
    assert server.process.wait(30) == 0


def store_copy(tag: str, name: str, bentoml_home: Path) -> str:
    """A second, independent copy of a stored model under another name, to break."""
    version = tag.split(":")[1]
    source = bentoml_home / "models" / tag.split(":")[0] / version
    target = bentoml_home / "models" / name / version
    shutil.copytree(source, target)
    info = yaml.safe_load((target / "model.yaml").read_text())
    info["name"] = name
    (target / "model.yaml").write_text(yaml.safe_dump(info))
    return f"{name}:{version}"


@pytest.mark.parametrize("breakage", ["missing", "corrupt", "schema_mismatch"])
def test_a_broken_model_never_serves(start, bentoml_home, breakage):
    features, target = load_default()
    tag = train(features, target, TrainConfig(name=f"broken-{breakage.replace('_', '-')}")).tag
    model_dir = bentoml_home / "models" / tag.replace(":", "/")
    if breakage == "missing":
        tag = f"{tag.split(':')[0]}:doesnotexist"
        expected = "doesnotexist"
    elif breakage == "corrupt":
        (model_dir / store.PIPELINE_FILE).write_bytes(b"not a pickle at all")
        expected = "cannot load pipeline.joblib"
    else:
        info = yaml.safe_load((model_dir / "model.yaml").read_text())
        info["metadata"]["schema"]["features"][0]["name"] = "renamed radius"
        (model_dir / "model.yaml").write_text(yaml.safe_dump(info))
        expected = "does not match its schema"
    server = start(MODEL_TAG=tag)
    deadline = time.monotonic() + 60
    while True:
        try:
            live = requests.get(f"{server.url}/livez", timeout=2)
            break
        except requests.RequestException:
            assert server.process.poll() is None, server.log()
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
    assert live.status_code == 200
    assert requests.get(f"{server.url}/readyz", timeout=5).status_code == 503
    refused = predict(server)
    assert refused.status_code == 503 and expected in refused.json()["error"]
    assert requests.get(f"{server.url}/model", timeout=5).status_code == 503
    time.sleep(1)
    assert server.process.poll() is None  # up, and saying why
    assert expected in server.log() and "/readyz answers 503" in server.log()
