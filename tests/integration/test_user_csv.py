"""A user's CSV with categorical columns: `python -m train` → `bentoml serve` → HTTP."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import requests

from bench.local import ROOT, Server
from model import store

pytestmark = pytest.mark.integration


def churn_csv(path) -> None:
    rng = np.random.default_rng(7)
    rows = 400
    plan = rng.choice(["basic", "pro", "team"], size=rows)
    region = rng.choice(["north", "south"], size=rows)
    monthly_spend = rng.gamma(2.0, 30.0, size=rows).round(2)
    tenure = rng.integers(1, 60, size=rows).astype(float)
    tenure[::13] = np.nan
    churned = np.where((plan == "basic") & (monthly_spend < 50), "yes", "no")
    pd.DataFrame(
        {
            "plan": plan,
            "region": region,
            "monthly_spend": monthly_spend,
            "tenure": tenure,
            "churned": churned,
        }
    ).to_csv(path, index=False)


def train_churn(work, name: str) -> str:
    """`python -m train` on a churn CSV written to `work`, as a user runs it; the new tag."""
    churn_csv(work / "churn.csv")
    trained = subprocess.run(
        [
            sys.executable,
            "-m",
            "train",
            "--data",
            str(work / "churn.csv"),
            "--target",
            "churned",
            "--name",
            name,
            "--estimator",
            "random_forest",
            "--min-score",
            "0.8",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert trained.returncode == 0, trained.stderr
    return json.loads(trained.stdout.strip().splitlines()[-1])["tag"]


@pytest.fixture(scope="module")
def churn_server(bentoml_home, tmp_path_factory):
    work = tmp_path_factory.mktemp("churn")
    tag = train_churn(work, "churn")
    server = Server(bentoml_home, work / "serve.log", MODEL_TAG=tag)
    try:
        server.wait_ready()
        yield server, tag
    finally:
        server.stop()


def test_categorical_model_serves_named_positional_missing_and_unseen_values(churn_server):
    server, tag = churn_server
    schema = store.load_schema(tag)
    assert schema.categorical == ["plan", "region"] and schema.classes == ["no", "yes"]
    instances = [
        {"plan": "basic", "region": "north", "monthly_spend": 10.0, "tenure": 3},
        {"plan": "team", "region": "south", "monthly_spend": 200.0, "tenure": None},
        ["enterprise", "west", 42.0, 12],  # categories never seen in training
        {"plan": None, "region": "north", "monthly_spend": "55.5", "tenure": 30},
    ]
    response = requests.post(f"{server.url}/predict", json={"instances": instances}, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == tag
    assert body["predictions"][:2] == ["yes", "no"]
    assert all(set(p) == {"no", "yes"} for p in body["probabilities"])
    assert all(sum(p.values()) == pytest.approx(1.0) for p in body["probabilities"])


def test_categorical_model_rejects_wrong_types_by_field(churn_server):
    server, _ = churn_server
    bad = {"plan": ["basic"], "region": "north", "monthly_spend": "lots", "tenure": 1}
    response = requests.post(f"{server.url}/predict", json={"instances": [bad]}, timeout=10)
    assert response.status_code == 400
    locations = {tuple(e["loc"]) for e in response.json()["detail"]}
    assert locations == {("instances", 0, "plan"), ("instances", 0, "monthly_spend")}
