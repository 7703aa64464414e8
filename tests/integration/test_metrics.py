"""Model metrics on /metrics, aggregated over several worker processes."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.local import Server
from monitoring import payloads
from train.data import load_default

pytestmark = pytest.mark.integration

FEATURES, _ = load_default()


def samples(url: str, name: str) -> list:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


@pytest.fixture(scope="module")
def two_workers(bentoml_home, breast_cancer_model, tmp_path_factory):
    work = tmp_path_factory.mktemp("metrics")
    server = Server(
        bentoml_home,
        work / "serve.log",
        MODEL_TAG=breast_cancer_model.tag,
        WORKERS="2",
        PAYLOAD_LOG_DIR=str(work / "payloads"),
    )
    try:
        server.wait_ready()
        yield server, work / "payloads"
    finally:
        server.stop()


def test_prediction_counts_add_up_over_workers(two_workers, breast_cancer_model):
    server, log_dir = two_workers
    rows = FEATURES.iloc[:300].to_numpy().tolist()
    per_round = Counter(map(str, breast_cancer_model.pipeline.predict(FEATURES.iloc[:300])))

    def send(row):
        body = {"instances": [row]}
        return requests.post(f"{server.url}/predict", json=body, timeout=30).status_code

    # The kernel hands connections to whichever worker accepts first; send until both
    # processes have answered (each writes its own payload log), so the counts below are
    # sums over workers.
    rounds = 0
    with ThreadPoolExecutor(16) as pool:
        while rounds < 10 and (rounds == 0 or len(payloads.log_files(log_dir)) < 2):
            assert set(pool.map(send, rows)) == {200}
            rounds += 1
            time.sleep(0.5)  # the payload log writes in the background
    assert len(payloads.log_files(log_dir)) == 2, "one worker answered every request"
    batch = requests.post(f"{server.url}/predict_batch", json={"instances": rows}, timeout=30)
    assert batch.status_code == 200

    counts = {
        (s.labels["endpoint"], s.labels["predicted_class"]): s.value
        for s in samples(server.url, "model_predictions_total")
    }
    for label, count in per_round.items():
        assert counts[("/predict", label)] == count * rounds
        assert counts[("/predict_batch", label)] == count
    scores = samples(server.url, "model_prediction_score_count")
    assert sum(s.value for s in scores if s.labels["endpoint"] == "/predict") == 300 * rounds


def test_model_info_metric_is_one_series_with_tag_and_stage(two_workers, breast_cancer_model):
    server, _ = two_workers
    (info,) = samples(server.url, "model_info")
    name, version = breast_cancer_model.tag.split(":")
    assert info.value == 1
    assert info.labels["model"] == breast_cancer_model.tag
    assert (info.labels["name"], info.labels["version"]) == (name, version)
    assert info.labels["stage"] == "production" and info.labels["task"] == "classification"
