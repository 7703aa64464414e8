"""deploy/edge/predict.py on exported models: the compiled model's answers, gaps as the server
reads them, and invalid input refused by instance index and feature."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.local import ROOT
from deploy.edge import predict as edge
from model import store, values
from model.schema import to_model_frame
from tests.train.test_onnx import mixed_table, scored_rows
from train.__main__ import main as train_cli
from train.training import TrainConfig, train

EXAMPLE = Path(edge.__file__)
DEVICE_PACKAGES = ("onnxruntime", "numpy")


def locked_version(package: str) -> str:
    lock = (ROOT / "requirements.lock").read_text()
    found = re.search(rf"^{package}==(\S+)", lock, re.MULTILINE)
    assert found, f"{package} is not pinned in requirements.lock"
    return found.group(1)


def exported(task: str, out: Path) -> tuple[str, Path]:
    features, target = mixed_table(task)
    tag = train(features, target, TrainConfig(name=f"edge-{task}".replace("_", "-"))).tag
    onnx = out / "model.onnx"
    assert train_cli(["export", "--model", tag, "--out", str(onnx)]) == 0
    return tag, onnx


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> tuple[str, Path]:
    return exported("multiclass_text", tmp_path_factory.mktemp("edge-classifier"))


def instances_of(frame) -> list[dict]:
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def test_classifier_answers_equal_the_served_runtime(classifier):
    tag, onnx = classifier
    features, _ = mixed_table("multiclass_text")
    rows = scored_rows(features)  # held-out-like rows, all-gap rows, unseen categories
    expected = store.load(tag).outputs(rows)
    answers = edge.EdgeModel(onnx).predict(instances_of(rows))
    assert [a["prediction"] for a in answers] == expected.predictions.tolist()
    assert [a["probabilities"] for a in answers] == expected.probability_dicts()


def test_regressor_answers_equal_the_served_runtime(tmp_path):
    tag, onnx = exported("regression", tmp_path)
    features, _ = mixed_table("regression")
    rows = scored_rows(features)
    expected = store.load(tag).outputs(rows)
    answers = edge.EdgeModel(onnx).predict(instances_of(rows))
    assert all(a["probabilities"] is None for a in answers)
    np.testing.assert_allclose([a["prediction"] for a in answers], expected.predictions, rtol=1e-12)


def test_a_missing_key_null_and_missing_text_are_the_same_gap(classifier):
    tag, onnx = classifier
    model = edge.EdgeModel(onnx)
    known = {"age in years": 51.0, "2nd spend": 80.0, "city": "nice", "plan": "b"}
    gaps = [
        {"age in years": 51.0, "2nd spend": 80.0, "plan": "b"},
        {**known, "city": None},
        {**known, "city": "NA"},
        {**known, "city": ""},
    ]
    answers = model.predict(gaps)
    assert all(a == answers[0] for a in answers)
    kinds = {"age in years": "numeric", "2nd spend": "numeric"}
    frame = to_model_frame(
        pd.DataFrame([{**known, "city": None}]),
        {**kinds, "city": "categorical", "plan": "categorical"},
    )
    assert answers[0]["probabilities"] == store.load(tag).outputs(frame).probability_dicts()[0]
    assert model.predict([{**known, "city": "nice"}]) != answers[:1]


def test_categories_given_as_numbers_or_booleans_read_as_training_reads_them(classifier):
    model = edge.EdgeModel(classifier[1])
    as_text = [{"city": "3", "plan": "True"}, {"city": "1.5", "plan": "False"}]
    as_text.append({"city": "0.0", "plan": "0"})
    as_json = [{"city": 3, "plan": True}, {"city": 1.5, "plan": False}, {"city": 0.0, "plan": 0}]
    assert model.predict(as_json) == model.predict(as_text)


def test_the_gap_texts_and_number_limit_are_the_servers():
    assert frozenset(values.MISSING_TEXTS) == edge.MISSING_TEXTS
    assert values.MAX_ABS_NUMBER == edge.MAX_ABS_NUMBER


def test_the_docs_install_the_locked_versions():
    pins = re.findall(r"(onnxruntime|numpy)==(\S+)", (ROOT / "docs" / "edge.md").read_text())
    assert dict(pins) == {p: locked_version(p) for p in DEVICE_PACKAGES}


def test_invalid_instances_are_refused_by_index_and_feature(classifier):
    model = edge.EdgeModel(classifier[1])
    instances = [
        {"age in years": 40, "city": "lyon"},
        {"age_in_years": 40, "colour": "red"},
        {"age in years": "40", "2nd spend": True, "city": ["lyon"], "plan": {"a": 1}},
        {"age in years": math.nan, "2nd spend": 1e999, "city": math.inf},
        {"age in years": 2e15, "2nd spend": -(10**400)},
        ["lyon"],
    ]
    with pytest.raises(edge.InvalidInput) as refused:
        model.predict(instances)
    assert sorted(refused.value.problems) == sorted(
        [
            "instance 1, feature 'age_in_years': not a feature (did you mean 'age in years'?)",
            "instance 1, feature 'colour': not a feature",
            "instance 2, feature 'age in years': expected a number, got text: \"40\"",
            "instance 2, feature '2nd spend': expected a number, got a boolean: true",
            "instance 2, feature 'city': expected text or a number, got an array: [\"lyon\"]",
            "instance 2, feature 'plan': expected text or a number, got an object: {\"a\": 1}",
            "instance 3, feature 'age in years': not a finite number: NaN",
            "instance 3, feature '2nd spend': not a finite number: Infinity",
            "instance 3, feature 'city': not a finite number: Infinity",
            "instance 4, feature 'age in years': 2000000000000000.0 is beyond ±1e+15",
            f"instance 4, feature '2nd spend': not a finite number: -1{'0' * 35}...",
            "instance 5: not a JSON object",
        ]
    )


def run_example(onnx: Path, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), str(onnx)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_program_reads_an_array_or_json_lines_and_prints_a_line_per_instance(classifier):
    _, onnx = classifier
    rows = [{"age in years": 30, "city": "paris"}, {"plan": "a"}, {}]
    from_array = run_example(onnx, json.dumps(rows))
    from_lines = run_example(onnx, "\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert from_array.returncode == 0, from_array.stderr
    assert from_array.stdout == from_lines.stdout
    answers = [json.loads(line) for line in from_array.stdout.splitlines()]
    assert len(answers) == 3
    assert all(set(a) == {"prediction", "probabilities"} for a in answers)
    assert all(list(a["probabilities"]) == ["high", "low", "mid"] for a in answers)


def test_the_program_exits_2_with_the_problems_on_stderr_and_answers_nothing(classifier):
    _, onnx = classifier
    refused = run_example(onnx, '{"city": "paris"}\n{"plan": NaN}\n{"city": \n')
    assert refused.returncode == edge.EXIT_INVALID
    assert refused.stdout == ""
    assert refused.stderr.splitlines() == ["line 3: not JSON: Expecting value"]
    refused = run_example(onnx, '[{"city": "paris"}, {"plan": NaN}]')
    assert refused.returncode == edge.EXIT_INVALID and refused.stdout == ""
    assert refused.stderr.splitlines() == ["instance 1, feature 'plan': not a finite number: NaN"]


def test_a_description_of_another_model_is_refused(classifier, tmp_path):
    _, onnx = classifier
    (tmp_path / "model.onnx").write_bytes(onnx.read_bytes())
    described = json.loads(onnx.with_suffix(".json").read_text())
    described["features"][0]["input"] = "age"
    (tmp_path / "model.json").write_text(json.dumps(described))
    with pytest.raises(ValueError, match="describe different inputs"):
        edge.EdgeModel(tmp_path / "model.onnx")
