"""A real `bentoml serve` with a freshly trained model, called over HTTP."""

from __future__ import annotations

import math
import re
from collections import Counter

import bentoml
import numpy as np
import pandas as pd
import pytest
import requests

from serving.arrow_bodies import read_stream, write_instances
from serving.media import ARROW_STREAM
from tests.integration.batching import batch_stats, in_bursts
from train.data import load_default

pytestmark = pytest.mark.integration

FEATURES, _ = load_default()


def rows(start: int, count: int) -> list[dict[str, float]]:
    return FEATURES.iloc[start : start + count].to_dict(orient="records")


def expected(model, instances: list[dict[str, float]]) -> tuple[list, list[list[float]]]:
    import pandas as pd

    frame = pd.DataFrame(instances, columns=model.schema.names, dtype="float64")
    answer = model.outputs(frame)  # the runtime the server runs (MODEL_RUNTIME=auto)
    return answer.predictions.tolist(), answer.probabilities.tolist()


def post(server, route: str, body) -> requests.Response:
    return requests.post(f"{server.url}/{route}", json=body, timeout=30)


def test_health_endpoints(server):
    assert requests.get(f"{server.url}/livez", timeout=5).status_code == 200
    assert requests.get(f"{server.url}/readyz", timeout=5).status_code == 200


def test_predict_named_instances_match_the_model(server, breast_cancer_model):
    instances = rows(0, 5)
    response = post(server, "predict", {"instances": instances})
    assert response.status_code == 200, response.text
    body = response.json()
    predictions, probabilities = expected(breast_cancer_model, instances)
    assert body["model"] == breast_cancer_model.tag
    assert body["predictions"] == predictions
    served = [[p["0"], p["1"]] for p in body["probabilities"]]
    assert np.ravel(served) == pytest.approx(np.ravel(probabilities))


def test_predict_positional_instances_match_named_ones(server):
    instances = rows(10, 3)
    positional = [list(instance.values()) for instance in instances]
    named = post(server, "predict", {"instances": instances}).json()
    by_position = post(server, "predict", {"instances": positional}).json()
    assert by_position == named


def test_predict_batch_answers_thousands_of_rows_in_order(server, breast_cancer_model):
    instances = (rows(0, 569) * 9)[:5_000]
    response = post(server, "predict_batch", {"instances": instances})
    assert response.status_code == 200, response.text
    predictions, _ = expected(breast_cancer_model, instances)
    assert response.json()["predictions"] == predictions


def test_row_caps_differ_between_predict_and_predict_batch(server):
    too_many = (rows(0, 569) * 2)[:1_001]
    capped = post(server, "predict", {"instances": too_many})
    assert capped.status_code == 422
    assert capped.json()["error"] == "too many instances in one request"
    assert capped.json()["detail"][0]["type"] == "too_long"
    assert post(server, "predict_batch", {"instances": too_many}).status_code == 200


def post_arrow(server, route: str, frame, accept: str = "application/json"):
    return requests.post(
        f"{server.url}/{route}",
        data=write_instances(frame),
        headers={"Content-Type": ARROW_STREAM, "Accept": accept},
        timeout=30,
    )


def test_arrow_bodies_get_the_answer_json_bodies_get(server, breast_cancer_model):
    frame = FEATURES.iloc[:2_000]
    from_json = post(server, "predict_batch", {"instances": frame.to_numpy().tolist()}).json()
    response = post_arrow(server, "predict_batch", frame)
    assert response.status_code == 200, response.text
    from_arrow = response.json()
    assert from_arrow["model"] == breast_cancer_model.tag
    assert from_arrow["predictions"] == from_json["predictions"]
    served = [[p["0"], p["1"]] for p in from_arrow["probabilities"]]
    expected_probabilities = [[p["0"], p["1"]] for p in from_json["probabilities"]]
    np.testing.assert_allclose(served, expected_probabilities, rtol=1e-9, atol=1e-12)


def test_arrow_answers_are_columns_with_the_model_tag(server, breast_cancer_model):
    frame = FEATURES.iloc[100:400]
    response = post_arrow(server, "predict_batch", frame, accept=ARROW_STREAM)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == ARROW_STREAM
    answer = read_stream(response.content)
    assert answer.schema.metadata[b"model"] == breast_cancer_model.tag.encode()
    predictions, probabilities = expected(breast_cancer_model, frame.to_dict(orient="records"))
    assert answer.column("prediction").to_pylist() == predictions
    np.testing.assert_allclose(
        answer.column("probability_1").to_numpy(), np.array(probabilities)[:, 1], rtol=1e-9
    )


def test_bad_arrow_bodies_are_400s_naming_row_and_feature(server):
    frame = FEATURES.iloc[:5].copy()
    frame.iloc[3, 2] = np.inf
    response = post_arrow(server, "predict_batch", frame)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert detail == [
        {
            "type": "finite_number",
            "loc": ["instances", 3, str(FEATURES.columns[2])],
            "msg": "Input should be a finite number",
            "url": detail[0]["url"],
        }
    ]
    missing = post_arrow(server, "predict_batch", FEATURES.iloc[:5, 1:])
    assert missing.status_code == 400
    assert missing.json()["detail"][0]["loc"] == ["instances", str(FEATURES.columns[0])]


def test_arrow_bodies_are_for_predict_batch_only(server):
    response = post_arrow(server, "predict", FEATURES.iloc[:1])
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]


def test_arrow_row_cap_is_a_422(server):
    too_many = pd.concat([FEATURES] * 176).iloc[:100_001]  # PREDICT_BATCH_MAX_ROWS + 1
    response = post_arrow(server, "predict_batch", too_many)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "too many instances in one request"


def _with(field: str, value) -> dict:
    return {"instances": [rows(0, 1)[0], {**rows(1, 1)[0], field: value}]}


@pytest.mark.parametrize(
    ("body", "loc", "error_type"),
    [
        (_with("mean radius", "abc"), ["instances", 1, "mean radius"], "float_parsing"),
        (
            _with("mean radius", None) | {"instances": [{"mean texture": 1.0}]},
            ["instances", 0, "mean radius"],
            "missing",
        ),
        (_with("colour", "red"), ["instances", 1, "colour"], "extra_forbidden"),
        (_with("mean area", [1, 2]), ["instances", 1, "mean area"], "float_type"),
        ({"instances": [[1.0, 2.0]]}, ["instances", 0], "value_error"),
        (
            {"instances": [[1.0] * 29 + ["abc"]]},
            ["instances", 0, str(FEATURES.columns[-1])],
            "float_parsing",
        ),
        ({"instances": []}, ["instances"], "too_short"),
        ({"rows": []}, ["instances"], "missing"),
    ],
)
@pytest.mark.parametrize("route", ["predict", "predict_batch"])
def test_bad_input_is_a_400_naming_instance_and_field(server, route, body, loc, error_type):
    response = post(server, route, body)
    assert response.status_code == 400, response.text
    errors = response.json()["detail"]
    assert {"loc": loc, "type": error_type} in [
        {"loc": e["loc"], "type": e["type"]} for e in errors
    ]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_rejected(server, literal):
    values = ", ".join(["1.0"] * 29)
    response = requests.post(
        f"{server.url}/predict",
        data=f'{{"instances": [[{literal}, {values}]]}}',
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["instances", 0, "mean radius"]


def test_malformed_json_is_a_400(server):
    response = requests.post(
        f"{server.url}/predict",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_model_information_over_http(server, breast_cancer_model):
    info = requests.get(f"{server.url}/model", timeout=5).json()
    assert info["tag"] == breast_cancer_model.tag
    assert info["labels"]["stage"] == "production"
    assert info["metrics"] == breast_cancer_model.metadata["metrics"]
    assert [f["name"] for f in info["schema"]["features"]] == breast_cancer_model.schema.names
    assert info["created_at"].startswith(breast_cancer_model.created_at.date().isoformat())


def test_openapi_document_lists_the_model_features(server):
    spec = requests.get(f"{server.url}/docs.json", timeout=5).json()
    assert "mean radius" in str(spec["components"]["schemas"])


def test_python_client(server, breast_cancer_model):
    instances = rows(20, 2)
    with bentoml.SyncHTTPClient(server.url) as client:
        answer = client.predict(instances=instances)
        batch = client.predict_batch(instances=instances)
    assert (
        answer["predictions"] == batch["predictions"] == expected(breast_cancer_model, instances)[0]
    )


def test_concurrent_single_row_requests_are_batched_without_errors(server, breast_cancer_model):
    clients, bursts = 64, 12
    all_rows = rows(0, 569)
    wanted, _ = expected(breast_cancer_model, all_rows)
    sum_before, count_before = batch_stats(server, "predict")

    def one(session: requests.Session, i: int) -> tuple[int, bool]:
        index = i % len(all_rows)
        response = session.post(
            f"{server.url}/predict", json={"instances": [all_rows[index]]}, timeout=30
        )
        correct = response.ok and response.json()["predictions"] == [wanted[index]]
        return response.status_code, correct

    results = in_bursts(clients, bursts, one)
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: clients * bursts}
    assert all(correct for _, correct in results)

    sum_after, count_after = batch_stats(server, "predict")
    requests_batched = sum_after - sum_before
    batches = count_after - count_before
    assert requests_batched == clients * bursts
    mean_batch = requests_batched / batches
    assert mean_batch > 2.0, f"mean adaptive batch size {mean_batch:.2f}"


def test_metrics_endpoint_exposes_request_counters(server):
    post(server, "predict", {"instances": rows(0, 1)})
    text = requests.get(f"{server.url}/metrics", timeout=5).text
    assert re.search(r'bentoml_service_request_total\{[^}]*endpoint="/predict"', text)
    assert not math.isnan(batch_stats(server, "predict")[1])
