"""The benchmark's request bodies (instances, MLServer's pandas form, the Open Inference
Protocol from model metadata) and its check of each system's answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from bench import bodies

ROWS = np.array([[1.5, 2.0, 3.25], [4.0, 5.5, 6.0]])
NAMES = ["mean radius", "mean texture", "worst area"]


def test_instances_are_rows_in_schema_order() -> None:
    assert json.loads(bodies.instances(ROWS)) == {"instances": ROWS.tolist()}


def test_mlserver_body_has_one_column_per_feature_and_the_pandas_content_type() -> None:
    body = json.loads(bodies.mlserver_pandas(ROWS, NAMES))
    assert body["parameters"] == {"content_type": "pd"}
    assert [i["name"] for i in body["inputs"]] == NAMES
    assert body["inputs"][1] == {
        "name": "mean texture",
        "datatype": "FP64",
        "shape": [2, 1],
        "data": [2.0, 5.5],
    }
    assert body["outputs"] == [{"name": "predict"}, {"name": "predict_proba"}]


def test_v2_body_follows_a_single_tensor_in_the_metadata() -> None:
    metadata = {"name": "m", "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 3]}]}
    body = json.loads(bodies.open_inference(ROWS[:1], metadata, NAMES))
    assert body == {
        "inputs": [
            {"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [1.5, 2.0, 3.25]}
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }


def test_v2_body_flattens_rows_in_row_major_order() -> None:
    metadata = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]}
    tensor = json.loads(bodies.open_inference(ROWS, metadata, NAMES))["inputs"][0]
    assert tensor["shape"] == [2, 3]
    assert tensor["datatype"] == "FP32"
    assert tensor["data"] == [1.5, 2.0, 3.25, 4.0, 5.5, 6.0]


def test_v2_body_follows_one_tensor_per_feature_in_the_metadata() -> None:
    metadata = {
        "inputs": [{"name": name, "datatype": "FP64", "shape": [-1, 1]} for name in reversed(NAMES)]
    }
    inputs = json.loads(bodies.open_inference(ROWS, metadata, NAMES))["inputs"]
    assert [i["name"] for i in inputs] == NAMES
    assert inputs[2] == {
        "name": "worst area",
        "shape": [2, 1],
        "datatype": "FP64",
        "data": [3.25, 6.0],
    }


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"inputs": []}, "no inputs"),
        ({"inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, 4]}]}, "shape"),
        ({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [-1, 3]}]}, "BYTES"),
        (
            {"inputs": [{"name": n, "datatype": "FP64", "shape": [-1]} for n in NAMES[:2]]},
            "worst area",
        ),
    ],
)
def test_v2_metadata_the_rows_cannot_be_sent_in_is_refused(
    metadata: dict[str, object], message: str
) -> None:
    with pytest.raises(bodies.BodyError, match=message):
        bodies.open_inference(ROWS, metadata, NAMES)


PROBABILITIES = np.array([[0.25, 0.75]])
V2_ANSWER = {
    "model_name": "m",
    "outputs": [
        {"name": "predict", "shape": [1], "datatype": "INT64", "data": [1]},
        {"name": "predict_proba", "shape": [1, 2], "datatype": "FP64", "data": [0.25, 0.75]},
    ],
}


@pytest.mark.parametrize(
    ("kind", "answer"),
    [
        ("v2", V2_ANSWER),
        ("kserve", {"predictions": [1], "probabilities": [[0.25, 0.75]]}),
        ("instances", {"predictions": [1], "probabilities": [{"0": 0.25, "1": 0.75}]}),
        ("instances", [[0.25, 0.75]]),  # default BentoML: the bare matrix
    ],
)
def test_answers_with_the_models_probabilities_pass(kind: str, answer: object) -> None:
    bodies.check_answer(kind, 200, json.dumps(answer), PROBABILITIES)


def test_an_answer_without_the_requested_outputs_fails() -> None:
    answer = {"outputs": [V2_ANSWER["outputs"][1]]}
    with pytest.raises(bodies.BodyError, match="predict"):
        bodies.check_answer("v2", 200, json.dumps(answer), PROBABILITIES)


def test_other_probabilities_fail() -> None:
    answer = {"predictions": [1], "probabilities": [[0.3, 0.7]]}
    with pytest.raises(bodies.BodyError, match="differ"):
        bodies.check_answer("kserve", 200, json.dumps(answer), PROBABILITIES)


def test_an_error_status_fails_with_the_answer() -> None:
    with pytest.raises(bodies.BodyError, match="answered 404"):
        bodies.check_answer("v2", 404, '{"error": "no such route"}', PROBABILITIES)


class _Metadata(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        found = self.path == "/v2/models/m"
        body = json.dumps({"name": "m"} if found else {"detail": "Not Found"}).encode()
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metadata_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_model_metadata_is_read_from_the_server(metadata_server: str) -> None:
    assert bodies.model_metadata(metadata_server, "m") == {"name": "m"}


def test_a_server_without_the_v2_metadata_route_fails_clearly(metadata_server: str) -> None:
    with pytest.raises(bodies.BodyError, match=r"/v2/models/other answered 404"):
        bodies.model_metadata(metadata_server, "other")
