"""The same value gets the same verdict on every path a value takes to the model.

Each tricky value goes through a JSON body, an Arrow body, a CSV file and a Parquet file
(offline scoring's reader and checks), and through the payload log and its reader (the
drift job). Every path must accept it with the same value, or refuse it; the drift
reader never fails, and whatever the API accepted reaches the drift computation.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from model.schema import Feature, FeatureSchema
from monitoring import payloads
from monitoring.drift import compute_drift
from serving.arrow_bodies import read_instances, write_table
from serving.inputs import instances_input
from serving.instances import to_frame
from serving.payload_log import Exchange, to_line
from train.score import _checked_chunks

SCHEMA = FeatureSchema(
    features=[
        Feature(name="x", kind="numeric", min=0, max=10),
        Feature(name="c", kind="categorical", categories=["a", "b"]),
    ],
    target="y",
    task="classification",
    classes=[0, 1],
)
REFUSED = "refused"
MISSING = None

# (value for x, value for c, what the model must get for x, for c)
NUMERIC_CASES = [
    ("1.5", 1.5),
    (" 2 ", 2.0),
    ("1e5", 1e5),
    ("+.5", 0.5),
    (3, 3.0),
    (-0.0, -0.0),
    (1e15, 1e15),
    (None, MISSING),
    ("", MISSING),
    ("nan", MISSING),
    ("NA", MISSING),
    (True, REFUSED),
    ("1_000", REFUSED),
    ("\u00a01.5", REFUSED),
    ("inf", REFUSED),
    ("0x10", REFUSED),
    ("1,5", REFUSED),
    (1e16, REFUSED),
    (-1e16, REFUSED),
]
CATEGORY_CASES = [
    ("a", "a"),
    (" a", " a"),
    (3, "3"),
    (1.5, "1.5"),
    (True, "True"),
    (None, MISSING),
    ("", MISSING),
    ("nan", MISSING),
]
CASES = [(value, "a", expected, "a") for value, expected in NUMERIC_CASES] + [
    (1.0, value, 1.0, expected) for value, expected in CATEGORY_CASES
]


def verdict(x: Any, c: Any) -> tuple[Any, Any] | str:
    """What the model got for (x, c), NaN read as missing."""
    x = None if isinstance(x, float) and math.isnan(x) else float(x)
    return x, c


def via_json(x: Any, c: Any) -> tuple[Any, Any] | str:
    """As the APIs read a body: the plain pass, else the full rule (both orders of keys)."""
    spec = instances_input(SCHEMA, 10)
    answers = set()
    for instance in ({"x": x, "c": c}, [x, c]):
        try:
            instances = spec.from_json(json.dumps({"instances": [instance]}).encode()).instances
        except ValidationError:
            answers.add(REFUSED)
            continue
        frame = to_frame(instances, SCHEMA)
        answers.add(verdict(frame["x"][0], frame["c"][0]))
    (answer,) = answers
    return answer


def arrow_array(value: Any) -> pa.Array:
    if value is None:
        return pa.array([None])
    return pa.array([value])  # str: string, bool: bool, int: int64, float: double


def table_of(x: Any, c: Any) -> pa.Table:
    return pa.table({"x": arrow_array(x), "c": arrow_array(c)})


def via_arrow(x: Any, c: Any) -> tuple[Any, Any] | str:
    try:
        frame = read_instances(write_table(table_of(x, c)), SCHEMA, 10)
    except ValidationError:
        return REFUSED
    return verdict(frame["x"][0], frame["c"][0])


def scored(path: Path) -> tuple[Any, Any] | str:
    (chunk,) = list(_checked_chunks(path, SCHEMA, (), 100))
    if not chunk.good[0]:
        return REFUSED
    return verdict(chunk.features["x"][0], chunk.features["c"][0])


def csv_text(value: Any) -> str:
    """How a CSV file holds the value: its text, and nothing for null."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def via_csv(x: Any, c: Any, tmp_path: Path) -> tuple[Any, Any] | str:
    path = tmp_path / "in.csv"
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerows([["x", "c"], [csv_text(x), csv_text(c)]])
    return scored(path)


def via_parquet(x: Any, c: Any, tmp_path: Path) -> tuple[Any, Any] | str:
    path = tmp_path / "in.parquet"
    pq.write_table(table_of(x, c), path)
    return scored(path)


def logged_line(x: Any, c: Any, request_id: str, prediction: int) -> bytes | None:
    """The payload log line of a /predict of (x, c): the instances the API validated."""
    spec = instances_input(SCHEMA, 10)
    try:
        instances = spec.from_json(json.dumps({"instances": [{"x": x, "c": c}]}).encode())
    except ValidationError:
        return None
    response = json.dumps({"model": "m:1", "predictions": [prediction]}).encode()
    exchange = Exchange(1.7e9, request_id, "/predict", instances.instances, response)
    return to_line(exchange, SCHEMA.names)


def via_payload_log(x: Any, c: Any, tmp_path: Path) -> tuple[Any, Any] | str:
    """A request logged as the service logs it, read back as the drift job reads it."""
    line = logged_line(x, c, "r1", 1)
    if line is None:
        return REFUSED
    (tmp_path / "payloads-1.jsonl").write_bytes(line)
    frame = payloads.to_frame(payloads.read_records(tmp_path), SCHEMA)
    if frame.empty:
        return REFUSED
    return verdict(frame["x"][0], frame["c"][0])


def expected_verdict(x: Any, c: Any) -> tuple[Any, Any] | str:
    return REFUSED if REFUSED in (x, c) else (x, c)


@pytest.mark.parametrize(("x", "c", "x_seen", "c_seen"), CASES, ids=repr)
def test_every_path_gives_the_same_verdict(x, c, x_seen, c_seen, tmp_path):
    expected = expected_verdict(x_seen, c_seen)
    assert via_json(x, c) == expected, "JSON"
    assert via_arrow(x, c) == expected, "Arrow"
    assert via_csv(x, c, tmp_path) == expected, "CSV"
    assert via_parquet(x, c, tmp_path) == expected, "Parquet"
    assert via_payload_log(x, c, tmp_path) == expected, "payload log reader"


def test_the_drift_job_compares_every_value_the_api_accepted(tmp_path):
    accepted = [case for case in CASES if via_json(case[0], case[1]) != REFUSED]
    lines = [
        logged_line(x, c, f"r{index}", index % 2)
        for index, (x, c, _, _) in enumerate(accepted * 20)
    ]
    (tmp_path / "payloads-1.jsonl").write_bytes(b"".join(line for line in lines if line))
    current = payloads.to_frame(payloads.read_records(tmp_path), SCHEMA)
    assert len(current) == len(accepted) * 20
    reference = pd.DataFrame(
        {"x": np.linspace(0, 10, 200), "c": ["a", "b"] * 100, "prediction": [0, 1] * 100}
    )
    result = compute_drift(reference, current, SCHEMA, workers=1)
    assert set(result.columns) == {"x", "c"}
