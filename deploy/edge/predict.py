"""Answer instances with an exported model on a device: Python, numpy and onnxruntime only.

    python predict.py model.onnx instances.json     # or: python predict.py model.onnx < rows

`model.onnx` and `model.json` (beside it) come from
`python -m train export --format onnx --out model.onnx`. Instances are JSON objects keyed by
feature name, as a JSON array or one object per line; a missing key or null is a gap,
imputed as in training. Prints one JSON line per instance, in order, shaped like a
`/predict` answer's row: `{"prediction": ..., "probabilities": {"<class>": p, ...}}`
(regressors: `"probabilities": null`). Invalid input: every problem on stderr, by instance
index and feature, nothing answered, exit status 2. docs/edge.md explains the rest.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

EXIT_INVALID = 2
MAX_ABS_NUMBER = 1e15  # the server refuses numbers beyond this
# Texts the server reads as a gap, not as a category (pandas' missing-value texts).
MISSING_TEXTS = frozenset(
    ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
     "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
)  # fmt: skip


class InvalidInput(ValueError):
    """Input the model cannot answer; `problems` says what and where, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class EdgeModel:
    """The exported graph and its description (model.json), answering like `/predict`."""

    def __init__(self, onnx_path: Path) -> None:
        self.description: dict[str, Any] = json.loads(onnx_path.with_suffix(".json").read_text())
        self.features: list[dict[str, Any]] = self.description["features"]
        self.classes: list[Any] | None = self.description["classes"]
        self.session = onnxruntime.InferenceSession(
            str(onnx_path), providers=["CPUExecutionProvider"]
        )
        graph_inputs = {i.name for i in self.session.get_inputs()}
        if graph_inputs != {f["input"] for f in self.features}:
            raise ValueError(f"{onnx_path} and its .json describe different inputs")

    def validate(self, instances: list[Any]) -> list[dict[str, float | str]]:
        """Each instance as the graph's values (gaps filled as model.json says); else raises."""
        known = {f["name"]: f for f in self.features}
        rows, problems = [], []
        for index, instance in enumerate(instances):
            if not isinstance(instance, dict):
                problems.append(f"instance {index}: not a JSON object")
                continue
            for name in [name for name in instance if name not in known]:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"instance {index}, feature {name!r}: not a feature{hint}")
            row = {}
            for name, feature in known.items():
                try:
                    row[name] = graph_value(feature, instance.get(name))
                except ValueError as exc:
                    problems.append(f"instance {index}, feature {name!r}: {exc}")
            rows.append(row)
        if problems:
            raise InvalidInput(problems)
        return rows

    def predict(self, instances: list[Any]) -> list[dict[str, Any]]:
        rows = self.validate(instances)
        if not rows:
            return []
        feed = {
            f["input"]: np.array(
                [row[f["name"]] for row in rows],
                dtype=np.float64 if f["kind"] == "numeric" else object,
            ).reshape(-1, 1)
            for f in self.features
        }
        if self.classes is None:
            (predictions,) = self.session.run(["prediction"], feed)
            return [{"prediction": float(p), "probabilities": None} for p in predictions.ravel()]
        # the most probable class, as the server picks it (the graph's `label` output is unused)
        (probabilities,) = self.session.run(["probabilities"], feed)
        return [
            {
                "prediction": self.classes[int(row.argmax())],
                "probabilities": {str(c): float(p) for c, p in zip(self.classes, row, strict=True)},
            }
            for row in probabilities.astype(np.float64)
        ]


def graph_value(feature: dict[str, Any], value: Any) -> float | str:
    """One JSON value as the graph takes it; raises ValueError saying what is wrong."""
    if feature["kind"] == "numeric":
        if value is None:
            return math.nan
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {json_type(value)}")
        number = finite(value)
        if abs(number) > MAX_ABS_NUMBER:
            raise ValueError(f"{shown(value)} is beyond ±{MAX_ABS_NUMBER:g}")
        return number
    if value is None or (isinstance(value, str) and value in MISSING_TEXTS):
        return feature["missing"]
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        finite(value)
        return str(value)  # "3", "1.5", "True": how training read such categories
    raise ValueError(f"expected text or a number, got {json_type(value)}")


def finite(value: int | float) -> float:
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {shown(value)}")
    return number


def json_type(value: Any) -> str:
    names = {bool: "a boolean", str: "text", list: "an array", dict: "an object"}
    return f"{names.get(type(value), type(value).__name__)}: {shown(value)}"


def shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def read_instances(text: str) -> list[Any]:
    """A JSON array of instances, or one instance per line (JSON Lines)."""
    if text.lstrip().startswith("["):
        try:
            instances = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput([f"not JSON: {exc}"]) from None
        return instances
    instances, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                instances.append(json.loads(line))
            except json.JSONDecodeError as exc:
                problems.append(f"line {number}: not JSON: {exc.msg}")
    if problems:
        raise InvalidInput(problems)
    return instances


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="model.onnx; model.json must be beside it")
    parser.add_argument("instances", nargs="?", default="-", help="a file, or - for stdin")
    args = parser.parse_args(argv)
    model = EdgeModel(args.model)
    text = sys.stdin.read() if args.instances == "-" else Path(args.instances).read_text()
    try:
        answers = model.predict(read_instances(text))
    except InvalidInput as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return EXIT_INVALID
    for answer in answers:
        print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
