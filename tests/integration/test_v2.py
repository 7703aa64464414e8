"""The Open Inference Protocol (v2) on a real `bentoml serve`, driven by the official clients.

tritonclient's HTTP client runs here; KServe's InferenceRESTClient runs in its own venv
(.venv-kserve, `make kserve-client`: its psutil pin conflicts with BentoML's) as a
subprocess (tests/clients/kserve_v2_client.py). Answers are compared with /predict's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from bench.local import ROOT, Server
from model import store
from monitoring.payloads import read_records, to_frame
from tests.integration.batching import batch_stats, in_bursts
from tests.integration.test_user_csv import train_churn
from train.data import load_default

pytestmark = pytest.mark.integration

FEATURES, _ = load_default()
KSERVE_PYTHON = ROOT / ".venv-kserve" / "bin" / "python"
KSERVE_CLIENT = ROOT / "tests" / "clients" / "kserve_v2_client.py"


def client(server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=60)


def matrix_input(rows: np.ndarray, binary: bool, datatype: str = "FP64") -> triton.InferInput:
    tensor = triton.InferInput("input", list(rows.shape), datatype)
    tensor.set_data_from_numpy(
        rows.astype(np.float32 if datatype == "FP32" else np.float64), binary
    )
    return tensor


def predicted(server, instances: list) -> dict:
    response = requests.post(f"{server.url}/predict", json={"instances": instances}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def probabilities(answer: dict, classes: list[str]) -> np.ndarray:
    return np.array([[row[c] for c in classes] for row in answer["probabilities"]])


def test_health_and_metadata(server, breast_cancer_model):
    triton_client = client(server)
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    assert triton_client.is_model_ready("itest")
    name, version = breast_cancer_model.tag.split(":")
    assert triton_client.is_model_ready("itest", version)
    assert not triton_client.is_model_ready("itest", "other")
    assert not triton_client.is_model_ready("no-such-model")
    assert triton_client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    metadata = triton_client.get_model_metadata("itest")
    assert metadata == triton_client.get_model_metadata("itest", version)
    assert metadata["name"] == name and metadata["versions"] == [version]
    # all numeric: one [-1, F] tensor in schema order
    features = breast_cancer_model.schema.names
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 30]}]
    assert metadata["parameters"]["features"] == features
    assert metadata["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
    ]
    assert metadata["parameters"]["classes"] == [0, 1]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_infer_matches_predict(server, binary, datatype):
    rows = FEATURES.iloc[40:47].to_numpy()
    if datatype == "FP32":
        rows = rows.astype(np.float32).astype(np.float64)  # what the model sees either way
    outputs = [triton.InferRequestedOutput(n, binary) for n in ("predict", "predict_proba")]
    result = client(server).infer(
        "itest", [matrix_input(rows, binary, datatype)], outputs=outputs, request_id="req-9"
    )
    expected = predicted(server, rows.tolist())
    assert result.get_response()["id"] == "req-9"
    assert result.as_numpy("predict").tolist() == expected["predictions"]
    assert result.as_numpy("predict").dtype == np.int64
    proba = result.as_numpy("predict_proba")
    assert proba.shape == (7, 2)
    np.testing.assert_allclose(proba, probabilities(expected, ["0", "1"]), rtol=1e-12)


def test_default_outputs_are_every_output_in_binary(server):
    rows = FEATURES.iloc[:3].to_numpy()
    response = requests.post(
        f"{server.url}/v2/models/itest/infer",
        json={
            "inputs": [{"name": "x", "shape": [3, 30], "datatype": "FP64", "data": rows.tolist()}]
        },
        timeout=30,
    )
    assert response.status_code == 200
    body = response.json()
    assert "id" not in body and "parameters" not in body  # optional fields left out
    assert [o["name"] for o in body["outputs"]] == ["predict", "predict_proba"]
    # tritonclient asks for binary outputs when it names none
    result = client(server).infer("itest", [matrix_input(rows, binary=True)])
    assert result.get_response()["outputs"][0]["parameters"]["binary_data_size"] == 3 * 8
    assert result.as_numpy("predict").tolist() == body["outputs"][0]["data"]


def test_request_without_content_type_and_curl_form_type(server):
    rows = FEATURES.iloc[:2].to_numpy()
    body = json.dumps(
        {"inputs": [{"name": "input", "shape": [2, 30], "datatype": "FP64", "data": rows.tolist()}]}
    ).encode()
    plain = requests.Request("POST", f"{server.url}/v2/models/itest/infer", data=body).prepare()
    assert "Content-Type" not in plain.headers  # as tritonclient sends it
    with requests.Session() as session:
        assert session.send(plain, timeout=30).status_code == 200
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # curl -d's default
    response = requests.post(
        f"{server.url}/v2/models/itest/infer", data=body, headers=form, timeout=30
    )
    assert response.status_code == 200, response.text


def test_versions_and_unknown_models(server, breast_cancer_model):
    version = breast_cancer_model.tag.split(":")[1]
    rows = FEATURES.iloc[:2].to_numpy()
    triton_client = client(server)
    answer = triton_client.infer("itest", [matrix_input(rows, True)], model_version=version)
    assert answer.get_response()["model_version"] == version
    for model, model_version, named in [
        ("no-such-model", "", "unknown model 'no-such-model'"),
        ("itest", "1", "unknown version '1'"),
    ]:
        with pytest.raises(InferenceServerException) as refused:
            triton_client.infer(model, [matrix_input(rows, True)], model_version=model_version)
        assert refused.value.status() == "404" and named in refused.value.message()
    with pytest.raises(InferenceServerException) as refused:
        triton_client.get_model_metadata("no-such-model")
    assert refused.value.status() == "404"
    response = requests.get(f"{server.url}/v2/no/such/route", timeout=5)
    assert response.status_code == 404 and "error" in response.json()


def test_wrong_shapes_and_values_are_400_naming_tensor_and_index(server):
    triton_client = client(server)
    rows = FEATURES.iloc[:4].to_numpy()
    cases = [
        (matrix_input(rows[:, :29], True), "tensor 'input': shape [4, 29]"),
        (matrix_input(np.where(np.eye(4, 30) > 0, np.inf, rows), True), "index [0, 0]"),
        (matrix_input(np.full((4, 30), 1e16), False), "index [0, 0] (feature 'mean radius')"),
    ]
    for tensor, named in cases:
        with pytest.raises(InferenceServerException) as refused:
            triton_client.infer("itest", [tensor])
        assert refused.value.status() == "400"
        assert named in refused.value.message()
    url = f"{server.url}/v2/models/itest/infer"
    short = {"inputs": [{"name": "input", "shape": [2, 30], "datatype": "FP64", "data": [1.0]}]}
    response = requests.post(url, json=short, timeout=10)
    assert response.status_code == 400
    assert response.json() == {"error": "tensor 'input': data has 1 elements, its shape holds 60"}
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 30],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 240},
                }
            ]
        }
    ).encode()
    for length, body in [
        (str(len(header) + 1000), header + bytes(240)),  # header longer than the body
        (str(len(header)), header + bytes(100)),  # binary section shorter than declared
        (str(len(header)), header + bytes(300)),  # bytes left over
        ("-5", header + bytes(240)),
    ]:
        response = requests.post(
            url, data=body, headers={"Inference-Header-Content-Length": length}, timeout=10
        )
        assert response.status_code == 400, (length, response.text)
        assert set(response.json()) == {"error"}


def test_concurrent_single_row_infers_are_batched(server, breast_cancer_model):
    clients, bursts = 32, 12
    rows = FEATURES.to_numpy()
    wanted = breast_cancer_model.pipeline.predict(FEATURES).tolist()
    before = batch_stats(server, "v2_infer")

    def one(session: requests.Session, i: int) -> tuple[int, bool]:
        index = i % len(rows)
        tensor = {
            "name": "input",
            "shape": [1, 30],
            "datatype": "FP64",
            "data": rows[index].tolist(),
        }
        response = session.post(
            f"{server.url}/v2/models/itest/infer",
            json={"inputs": [tensor], "outputs": [{"name": "predict"}]},
            timeout=30,
        )
        correct = response.ok and response.json()["outputs"][0]["data"] == [wanted[index]]
        return response.status_code, correct

    results = in_bursts(clients, bursts, one)
    assert Counter(status for status, _ in results) == {200: clients * bursts}
    assert all(correct for _, correct in results)
    after = batch_stats(server, "v2_infer")
    requests_batched, batches = after[0] - before[0], after[1] - before[1]
    assert requests_batched == clients * bursts  # every row went through the batcher
    assert requests_batched / batches > 2.0, f"mean batch {requests_batched / batches:.2f}"


def test_large_infers_take_one_vectorised_model_call(server, breast_cancer_model):
    rows = FEATURES.sample(5000, replace=True, random_state=3).to_numpy()
    before = batch_stats(server, "v2_infer")
    result = client(server).infer("itest", [matrix_input(rows, True)])
    assert batch_stats(server, "v2_infer") == before  # not through the batcher
    frame = FEATURES.iloc[:0].reindex(range(len(rows)))
    frame[:] = rows
    assert (
        result.as_numpy("predict").tolist() == breast_cancer_model.pipeline.predict(frame).tolist()
    )


def test_metrics_label_v2_requests_by_route(server):
    for name in ("random-a", "random-b"):
        requests.get(f"{server.url}/v2/models/{name}", timeout=5)
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    labels = set(re.findall(r'bentoml_service_request_total\{endpoint="([^"]*)"', text))
    assert "/v2/models/{model_name}" in labels
    assert not any("random-" in label for label in labels)


def test_docs_list_the_v2_routes(server, breast_cancer_model):
    paths = requests.get(f"{server.url}/docs.json", timeout=5).json()["paths"]
    version = breast_cancer_model.tag.split(":")[1]
    assert {
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{model_name}",
        "/v2/models/{model_name}/ready",
        "/v2/models/itest/infer",
        f"/v2/models/itest/versions/{version}/infer",
    } <= set(paths)
    assert not any(path.endswith("/vectorised") for path in paths)
    schema = paths["/v2/models/itest/infer"]["post"]["requestBody"]["content"]
    assert "inputs" in json.dumps(schema)


def _kserve(server, model: str, request: dict, tmp_path: Path) -> dict:
    if not KSERVE_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{KSERVE_PYTHON} is missing; CI must run `make kserve-client`")
        pytest.skip(f"KServe's client is not installed ({KSERVE_PYTHON}): make kserve-client")
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    run = subprocess.run(
        [str(KSERVE_PYTHON), str(KSERVE_CLIENT), server.url, model, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_kserve_client_matches_predict(server, binary, tmp_path):
    rows = FEATURES.iloc[100:105].to_numpy()
    tensor = {"name": "input", "shape": [5, 30], "datatype": "FP64", "data": rows.ravel().tolist()}
    answer = _kserve(server, "itest", {"inputs": [tensor], "binary": binary}, tmp_path)
    expected = predicted(server, rows.tolist())
    assert answer["live"] and answer["ready"] and answer["model_ready"]
    assert answer["id"] == "k1"
    assert answer["outputs"]["predict"] == {"shape": [5], "data": expected["predictions"]}
    proba = answer["outputs"]["predict_proba"]
    assert proba["shape"] == [5, 2]
    np.testing.assert_allclose(
        np.reshape(proba["data"], (5, 2)), probabilities(expected, ["0", "1"]), rtol=1e-12
    )
    assert answer["unknown_model"]["status"] == 404
    assert "unknown model 'no-such-model'" in answer["unknown_model"]["message"]


# ------------------------------------------------------------- a model with categories


@pytest.fixture(scope="module")
def churn_v2(bentoml_home, tmp_path_factory):
    work = tmp_path_factory.mktemp("churn-v2")
    tag = train_churn(work, "churnv2")
    log_dir = work / "payloads"
    server = Server(
        bentoml_home,
        work / "serve.log",
        MODEL_TAG=tag,
        PAYLOAD_LOG_DIR=str(log_dir),
        BATCH_MAX_SIZE="8",
    )
    try:
        server.wait_ready()
        yield server, tag, log_dir
    finally:
        server.stop()


CHURN_NAMES = ["plan", "region", "monthly_spend", "tenure"]
CHURN_TYPES = ["BYTES", "BYTES", "FP64", "FP64"]
CHURN_ROWS = [
    ["basic", "north", 10.0, 3.0],
    ["team", "south", 200.0, 24.0],
    ["enterprise", "west", 42.0, 12.0],  # categories never seen in training
    ["", "north", 55.5, 30.0],  # "" is a missing value
]


def churn_inputs(rows: list[list], binary: bool) -> list[triton.InferInput]:
    inputs = []
    for name, values, datatype in zip(
        CHURN_NAMES, zip(*rows, strict=True), CHURN_TYPES, strict=True
    ):
        if datatype == "BYTES":
            array = np.array([value.encode() for value in values], dtype=object)
        else:
            array = np.array(values, dtype=np.float64)
        tensor = triton.InferInput(name, [len(rows)], datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_categorical_model_metadata_is_per_feature(churn_v2):
    server, tag, _ = churn_v2
    metadata = client(server).get_model_metadata(tag.split(":")[0])
    assert metadata["inputs"] == [
        {"name": "plan", "datatype": "BYTES", "shape": [-1]},
        {"name": "region", "datatype": "BYTES", "shape": [-1]},
        {"name": "monthly_spend", "datatype": "FP64", "shape": [-1]},
        {"name": "tenure", "datatype": "FP64", "shape": [-1]},
    ]
    assert metadata["outputs"][0] == {"name": "predict", "datatype": "BYTES", "shape": [-1]}
    assert metadata["parameters"]["classes"] == ["no", "yes"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_categorical_infer_matches_predict(churn_v2, binary):
    server, tag, _ = churn_v2
    result = client(server).infer(tag.split(":")[0], churn_inputs(CHURN_ROWS, binary))
    expected = predicted(server, CHURN_ROWS)
    assert [p.decode() for p in result.as_numpy("predict").tolist()] == expected["predictions"]
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), probabilities(expected, ["no", "yes"]), rtol=1e-12
    )


def test_null_is_a_missing_value_as_in_predict(churn_v2):
    server, tag, _ = churn_v2
    rows = [[None, "north", 55.5, None], ["team", None, None, 3.0]]
    inputs = [
        {"name": name, "shape": [2], "datatype": datatype, "data": list(values)}
        for name, values, datatype in zip(
            CHURN_NAMES, zip(*rows, strict=True), CHURN_TYPES, strict=True
        )
    ]
    response = requests.post(
        f"{server.url}/v2/models/{tag.split(':')[0]}/infer", json={"inputs": inputs}, timeout=30
    )
    assert response.status_code == 200, response.text
    answer = {output["name"]: output["data"] for output in response.json()["outputs"]}
    expected = predicted(server, rows)
    assert answer["predict"] == expected["predictions"]
    np.testing.assert_allclose(
        np.reshape(answer["predict_proba"], (2, 2)),
        probabilities(expected, ["no", "yes"]),
        rtol=1e-12,
    )


def test_categorical_refusals_name_the_tensor_and_index(churn_v2):
    server, tag, _ = churn_v2
    inputs = churn_inputs(CHURN_ROWS[:2], binary=True)
    inputs[2].set_data_from_numpy(np.array([1.0, np.nan]), binary_data=True)
    with pytest.raises(InferenceServerException) as refused:
        client(server).infer(tag.split(":")[0], inputs)
    assert refused.value.status() == "400"
    assert "tensor 'monthly_spend' index 1: not finite" in refused.value.message()
    with pytest.raises(InferenceServerException) as refused:
        matrix = triton.InferInput("input", [2, 4], "FP64")
        matrix.set_data_from_numpy(np.zeros((2, 4)), binary_data=True)
        client(server).infer(tag.split(":")[0], [matrix])
    assert "categorical features (plan, region)" in refused.value.message()


def test_kserve_client_with_bytes_tensors(churn_v2, tmp_path):
    server, tag, _ = churn_v2
    inputs = [
        {"name": name, "shape": [len(CHURN_ROWS)], "datatype": datatype, "data": list(values)}
        for name, values, datatype in zip(
            CHURN_NAMES, zip(*CHURN_ROWS, strict=True), CHURN_TYPES, strict=True
        )
    ]
    answer = _kserve(server, tag.split(":")[0], {"inputs": inputs, "binary": True}, tmp_path)
    expected = predicted(server, CHURN_ROWS)
    assert answer["outputs"]["predict"]["data"] == expected["predictions"]


def test_payload_log_holds_v2_rows_for_drift(churn_v2):
    server, tag, log_dir = churn_v2
    name = tag.split(":")[0]
    ids = {"v2-log-small": CHURN_ROWS[:2], "v2-log-large": [CHURN_ROWS[0]] * 20}
    for request_id, rows in ids.items():  # 20 rows: more than BATCH_MAX_SIZE, vectorised
        client(server).infer(name, churn_inputs(rows, False), headers={"X-Request-ID": request_id})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        records = [r for r in read_records(log_dir) if r["request_id"] in ids]
        if len(records) >= 2:
            break
        time.sleep(0.2)
    by_rows = sorted(records, key=lambda record: len(record["instances"]))
    assert [len(record["instances"]) for record in by_rows] == [2, 20]
    small, large = by_rows
    assert small["instances"] == [
        dict(zip(CHURN_NAMES, row, strict=True)) for row in CHURN_ROWS[:2]
    ]
    assert small["predictions"] == predicted(server, CHURN_ROWS[:2])["predictions"]
    assert large["rows"] == 20 and large["predictions"] == large["predictions"][:1] * 20
    frame = to_frame(records, store.load_schema(tag))  # what the drift job reads
    assert len(frame) == 22
