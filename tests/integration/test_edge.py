"""An exported model on a "device": a fresh venv with onnxruntime and numpy only runs
deploy/edge/predict.py and answers as `bentoml serve` answers /predict, gaps and unseen
categories included (docs/edge.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bench.local import ROOT, Server
from tests.deploy.test_edge_example import DEVICE_PACKAGES, locked_version
from tests.train.test_onnx import mixed_table
from train.data import load_default
from train.training import TrainConfig, train

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = ROOT / "deploy" / "edge" / "predict.py"
ABSENT = ("sklearn", "bentoml", "pandas")
# the environment of a process on the device: no path into this checkout
DEVICE_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def device_python(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("device") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    pins = [f"{p}=={locked_version(p)}" for p in DEVICE_PACKAGES]
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *pins],
        env=DEVICE_ENV,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    return python


def export(tag: str, folder: Path) -> Path:
    """`python -m train export`, then the two files and the example copied to `folder`."""
    exported = subprocess.run(
        [sys.executable, "-m", "train", "export", "--model", tag, "--out", str(folder / "x.onnx")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["model"] == tag
    device = folder / "device"
    device.mkdir()
    shutil.copy(folder / "x.onnx", device / "model.onnx")
    shutil.copy(folder / "x.json", device / "model.json")
    shutil.copy(EXAMPLE, device / "predict.py")
    return device


def on_device(python: Path, device: Path, instances: list[dict]) -> list[dict]:
    (device / "rows.jsonl").write_text("".join(json.dumps(i) + "\n" for i in instances))
    answered = subprocess.run(
        [str(python), "predict.py", "model.onnx", "rows.jsonl"],
        cwd=device,
        env=DEVICE_ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert answered.returncode == 0, answered.stderr
    return [json.loads(line) for line in answered.stdout.splitlines()]


def served(server: Server, instances: list[dict]) -> list[dict]:
    response = requests.post(f"{server.url}/predict", json={"instances": instances}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    return [
        {"prediction": p, "probabilities": q}
        for p, q in zip(body["predictions"], body["probabilities"], strict=True)
    ]


def assert_same_answers(device: list[dict], server: list[dict]) -> None:
    assert len(device) == len(server)
    assert [a["prediction"] for a in device] == [a["prediction"] for a in server]
    for index, (ours, theirs) in enumerate(zip(device, server, strict=True)):
        assert list(ours["probabilities"]) == list(theirs["probabilities"]), index
        differences = [
            abs(ours["probabilities"][c] - p) for c, p in theirs["probabilities"].items()
        ]
        assert max(differences) <= 1e-6, (index, ours, theirs)


def without_gaps(instance: dict) -> dict:
    """The instance with its gaps left out: on the device a missing key is a gap too."""
    return {name: value for name, value in instance.items() if value is not None}


@pytest.fixture(scope="module")
def mixed_server(bentoml_home, tmp_path_factory) -> Iterator[tuple[Server, str]]:
    features, target = mixed_table("multiclass_text", seed=5)
    result = train(features, target, TrainConfig(name="edge-mixed", estimator="random_forest"))
    assert result.onnx_status == "passed"
    work = tmp_path_factory.mktemp("edge-mixed")
    server = Server(bentoml_home, work / "serve.log", MODEL_TAG=result.tag, WORKERS="1")
    try:
        server.wait_ready()
        yield server, result.tag
    finally:
        server.stop()


def test_the_device_has_onnxruntime_and_numpy_at_the_locked_versions_and_nothing_else(
    device_python,
):
    probe = (
        "import importlib.util, json, numpy, onnxruntime; print(json.dumps({"
        "'numpy': numpy.__version__, 'onnxruntime': onnxruntime.__version__, "
        f"'absent': [m for m in {list(ABSENT)!r} if importlib.util.find_spec(m) is None]}}))"
    )
    answered = subprocess.run(
        [str(device_python), "-c", probe],
        cwd=device_python.parent,
        env=DEVICE_ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(answered.stdout)
    assert found["absent"] == list(ABSENT)
    assert {p: found[p] for p in DEVICE_PACKAGES} == {p: locked_version(p) for p in DEVICE_PACKAGES}


def test_categorical_model_with_gaps_and_unseen_categories_answers_as_served(
    device_python, mixed_server, tmp_path
):
    server, tag = mixed_server
    features, _ = mixed_table("multiclass_text", seed=6)
    rows = features.iloc[:40].astype(object).where(features.iloc[:40].notna(), None)
    instances = rows.to_dict(orient="records")
    instances += [
        {"age in years": None, "2nd spend": None, "city": None, "plan": None},
        {"age in years": 30, "2nd spend": 12.5, "city": "atlantis", "plan": "z"},
        {"age in years": 61, "2nd spend": None, "city": "NA", "plan": "b"},
    ]
    assert sum(None in i.values() for i in instances) >= 5  # gaps in both kinds of feature
    device = export(tag, tmp_path)
    described = json.loads((device / "model.json").read_text())
    assert described["parity"]["passed"] is True
    # half the gaps as null, half as a missing key
    sent = [without_gaps(i) if n % 2 else i for n, i in enumerate(instances)]
    assert_same_answers(on_device(device_python, device, sent), served(server, instances))


def test_breast_cancer_model_answers_as_served(
    device_python, server, breast_cancer_model, tmp_path
):
    features, _ = load_default()
    instances = features.iloc[100:130].to_dict(orient="records")
    instances[3]["mean radius"] = None
    instances[4] |= {"worst area": None, "mean texture": None}
    device = export(breast_cancer_model.tag, tmp_path)
    sent = [without_gaps(i) if n % 2 else i for n, i in enumerate(instances)]
    assert_same_answers(on_device(device_python, device, sent), served(server, instances))
