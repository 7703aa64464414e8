"""The answers: the JSON envelope, one row per instance for the batcher, and Arrow streams."""

from __future__ import annotations

from typing import Annotated, Any

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


def arrow_answer(outputs: Outputs, tag: str) -> bytes:
    """The answer as an Arrow IPC stream of `Outputs.columns()`, the model's tag in its metadata."""
    import pyarrow as pa

    return write_table(pa.table(outputs.columns()), {"model": tag})
