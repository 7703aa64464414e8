"""Request bodies of the systems compared, built from the same rows, and their answers checked.

- `instances`: `{"instances": [[...], ...]}`, rows in schema order: ours, FastAPI, default
  BentoML and KServe's v1 protocol.
- `mlserver_pandas`: Open Inference Protocol v2, one tensor per column named by the feature,
  with the request's content type `pd`, so MLServer's pandas codec hands the model a frame
  with the column names the pipeline selects by.
- `open_inference`: Open Inference Protocol v2 in the input form a server's model metadata
  (`GET /v2/models/NAME`) advertises: one `[N, F]` tensor, or one tensor per feature.

Both v2 bodies ask for the outputs `predict` and `predict_proba`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import requests

OUTPUTS = ("predict", "predict_proba")
FLOAT_TYPES = ("FP64", "FP32")
# the same model, whatever runtime runs it: room for a compiled model's float rounding
PROBABILITY_TOLERANCE = 1e-4


class BodyError(RuntimeError):
    """A server's metadata or answer is not what the benchmark can send to or count."""


def _dumps(value: object) -> bytes:
    return json.dumps(value).encode()


def _requested_outputs() -> list[dict[str, str]]:
    return [{"name": name} for name in OUTPUTS]


def instances(rows: np.ndarray) -> bytes:
    return _dumps({"instances": rows.tolist()})


def mlserver_pandas(rows: np.ndarray, names: Sequence[str]) -> bytes:
    inputs = [
        {"name": name, "datatype": "FP64", "shape": [len(rows), 1], "data": rows[:, i].tolist()}
        for i, name in enumerate(names)
    ]
    return _dumps(
        {"parameters": {"content_type": "pd"}, "inputs": inputs, "outputs": _requested_outputs()}
    )


def _tensor_type(tensor: dict[str, Any]) -> str:
    datatype = tensor.get("datatype")
    if datatype not in FLOAT_TYPES:
        raise BodyError(f"input {tensor.get('name')!r} has datatype {datatype!r}, not FP64/FP32")
    return datatype


def open_inference(rows: np.ndarray, metadata: dict[str, Any], names: Sequence[str]) -> bytes:
    """A v2 infer body in the form the model metadata advertises, for all-numeric rows."""
    inputs = metadata.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BodyError(f"the model metadata lists no inputs: {metadata}")
    count, width = rows.shape
    if len(inputs) == 1:
        tensor = inputs[0]
        shape = tensor.get("shape")
        if not (isinstance(shape, list) and len(shape) == 2 and shape[1] in (width, -1)):
            raise BodyError(f"input {tensor.get('name')!r} has shape {shape}, not [-1, {width}]")
        body_inputs = [
            {
                "name": tensor["name"],
                "shape": [count, width],
                "datatype": _tensor_type(tensor),
                "data": rows.ravel().tolist(),
            }
        ]
    else:
        by_name = {tensor.get("name"): tensor for tensor in inputs}
        missing = [name for name in names if name not in by_name]
        if missing:
            raise BodyError(f"the model metadata has no input for the features {missing[:5]}")
        body_inputs = []
        for i, name in enumerate(names):
            shape = by_name[name].get("shape") or [-1]
            body_inputs.append(
                {
                    "name": name,
                    "shape": [count, *shape[1:]],
                    "datatype": _tensor_type(by_name[name]),
                    "data": rows[:, i].tolist(),
                }
            )
    return _dumps({"inputs": body_inputs, "outputs": _requested_outputs()})


def model_metadata(url: str, model: str, timeout: float = 10.0) -> dict[str, Any]:
    """`GET /v2/models/MODEL` of a running server; a clear error when it does not answer it."""
    address = f"{url}/v2/models/{model}"
    try:
        response = requests.get(address, timeout=timeout)
    except requests.RequestException as exc:
        raise BodyError(f"GET {address}: {exc}") from exc
    if response.status_code != 200:
        raise BodyError(
            f"GET {address} answered {response.status_code} ({response.text[:200]!r}): the "
            "server does not serve the Open Inference Protocol's model metadata for this model"
        )
    return response.json()


def _close(got: Sequence[float], expected: Sequence[float]) -> bool:
    return len(got) == len(expected) and all(
        math.isclose(a, b, rel_tol=0, abs_tol=PROBABILITY_TOLERANCE)
        for a, b in zip(got, expected, strict=True)
    )


def _v2_probabilities(answer: dict[str, Any]) -> list[float]:
    outputs = {output.get("name"): output for output in answer.get("outputs") or []}
    missing = [name for name in OUTPUTS if name not in outputs]
    if missing:
        raise BodyError(f"the answer has no output {missing}: {str(answer)[:300]}")
    return [float(x) for x in np.ravel(outputs["predict_proba"]["data"])]


def _flat_probabilities(answer: Any, kind: str) -> list[float]:
    if kind == "v2":
        return _v2_probabilities(answer)
    if kind == "kserve":
        return [float(x) for x in np.ravel(answer["probabilities"])]
    if isinstance(answer, list):  # default BentoML: the bare matrix
        return [float(x) for x in np.ravel(answer)]
    # ours and FastAPI: one mapping per row, label to probability, in the classes' order
    return [float(x) for row in answer["probabilities"] for x in row.values()]


def check_answer(kind: str, status: int, text: str, expected: np.ndarray) -> None:
    """A 2xx answer carrying `expected` (the in-process probabilities of the rows sent).

    `kind`: "v2" (Open Inference Protocol), "kserve" (our KServe model's v1 answer), or
    "instances" (ours, FastAPI, or default BentoML's bare matrix).
    """
    if not 200 <= status < 300:
        raise BodyError(f"answered {status}: {text[:300]!r}")
    try:
        answer = json.loads(text)
        got = _flat_probabilities(answer, kind)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise BodyError(f"cannot read the probabilities from {text[:300]!r}: {exc}") from exc
    if not _close(got, expected.ravel().tolist()):
        raise BodyError(
            f"probabilities {got[:6]} differ from the model's in process "
            f"{expected.ravel().tolist()[:6]}"
        )
