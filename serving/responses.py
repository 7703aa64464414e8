"""The answers: the JSON envelope, one row per instance for the batcher, and Arrow streams."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import numpy as np
from bentoml.validators import ContentType
from pydantic import BaseModel, BeforeValidator, Field
from typing_extensions import TypedDict

from model.outputs import Outputs

from .arrow_bodies import write_table


class PredictResponse(BaseModel):
    model: str = Field(description="Tag of the model that answered, name:version.")
    predictions: list[int | float | str] = Field(description="One prediction per instance.")
    probabilities: list[dict[str, float]] | None = Field(
        default=None,
        description="Classifiers: per instance, the probability of each class label.",
    )


class Row(TypedDict):
    """One instance's answer; the batchable API returns one per input row."""

    model: str
    prediction: int | float | str
    probabilities: dict[str, float] | None


def envelope_from_rows(value: Any) -> Any:
    """Shape a request's rows (as the batcher hands them back) into the response envelope."""
    if not isinstance(value, list):
        return value
    classifier = bool(value) and value[0]["probabilities"] is not None
    return {
        "model": value[0]["model"] if value else "",
        "predictions": [row["prediction"] for row in value],
        "probabilities": [row["probabilities"] for row in value] if classifier else None,
    }


# The explicit content type spares BentoML from deriving it from the JSON schema, which
# it otherwise regenerates on every response.
RowsEnvelope = Annotated[
    PredictResponse, BeforeValidator(envelope_from_rows), ContentType("application/json")
]


FEW_ROWS = 32


def json_answer(outputs: Outputs, tag: str) -> bytes:
    """The `PredictResponse` of `outputs` as JSON bytes, without a Python object per row."""
    probabilities = (
        b"null"
        if outputs.probabilities is None
        else _probability_objects(outputs.probabilities, outputs.classes)
    )
    return b"".join(
        [
            b'{"model":',
            msgspec.json.encode(tag),
            b',"predictions":',
            msgspec.json.encode(outputs.predictions.tolist()),
            b',"probabilities":',
            probabilities,
            b"}",
        ]
    )


def _probability_objects(probabilities: np.ndarray, classes: list[str]) -> bytes:
    """`[{"<class>": p, ...}, ...]`, one object per row: the numbers are written once as a
    flat JSON list, and its pieces are joined between the keys."""
    rows, width = probabilities.shape
    if rows <= FEW_ROWS:  # the pieces cost more than they save
        return msgspec.json.encode(
            [dict(zip(classes, row, strict=True)) for row in probabilities.tolist()]
        )
    numbers = msgspec.json.encode(probabilities.ravel().tolist())[1:-1].split(b",")
    keys = [msgspec.json.encode(label) + b":" for label in classes]
    pieces = np.empty((rows, 2 * width + 1), dtype=object)
    pieces[:, 0] = b"{" + keys[0]
    for index in range(1, width):
        pieces[:, 2 * index] = b"," + keys[index]
    pieces[:, 1::2] = np.array(numbers, dtype=object).reshape(rows, width)
    pieces[:, -1] = b"},"
    objects = b"".join(pieces.ravel().tolist())
    return b"[" + objects[:-1] + b"]"


def arrow_answer(outputs: Outputs, tag: str) -> bytes:
    """The answer as an Arrow IPC stream of `Outputs.columns()`, the model's tag in its metadata."""
    import pyarrow as pa

    return write_table(pa.table(outputs.columns()), {"model": tag})
