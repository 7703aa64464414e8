"""Request and response types built from a model's feature schema.

Validation happens while the request body is parsed, per request and before the
adaptive batcher merges requests, so one client's bad row never fails another's batch.
Errors name the instance index and the field: `loc: ["instances", 3, "mean radius"]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Annotated, Any

import numpy as np
import pandas as pd
from bentoml.validators import ContentType
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from typing_extensions import TypedDict

from .schema import FeatureSchema

# Far beyond any real measurement, and far below where scaling overflows float64.
MAX_ABS_NUMBER = 1e15


def _positional_to_mapping(names: Sequence[str], value: Any) -> Any:
    """A list of values in schema order becomes a mapping; mappings pass through."""
    if isinstance(value, list | tuple):
        if len(value) != len(names):
            raise ValueError(f"expected {len(names)} values in schema order, got {len(value)}")
        return dict(zip(names, value, strict=True))
    return value


def instance_type(schema: FeatureSchema) -> Any:
    """One instance: an object keyed by feature name, or a list of values in schema order.

    Numeric features take numbers (or numeric strings) within ±1e15, never NaN or
    infinity; categorical features take strings (numbers are read as their text). `null`
    is a missing value, imputed as in training. Every feature must be present and no
    other key is allowed.
    """
    fields: dict[str, Any] = {}
    for feature in schema.features:
        if feature.kind == "numeric":
            fields[feature.name] = Annotated[
                float | None,
                Field(allow_inf_nan=False, ge=-MAX_ABS_NUMBER, le=MAX_ABS_NUMBER),
            ]
        else:
            fields[feature.name] = str | None
    instance = TypedDict("Instance", fields)  # type: ignore[misc]
    instance.__pydantic_config__ = ConfigDict(  # type: ignore[attr-defined]
        extra="forbid", coerce_numbers_to_str=True, title="Instance"
    )
    return Annotated[instance, BeforeValidator(partial(_positional_to_mapping, schema.names))]


def instances_field(schema: FeatureSchema | None, max_rows: int) -> Any:
    """The `instances` list; without a schema (no model could be read) any objects or lists."""
    if schema is None:
        return Annotated[list[dict[str, Any] | list[Any]], Field(min_length=1, max_length=max_rows)]
    return Annotated[
        list[instance_type(schema)],  # type: ignore[misc]
        Field(
            min_length=1,
            max_length=max_rows,
            description=f"1 to {max_rows} instances: objects keyed by feature name, "
            f"or lists of {len(schema.features)} values in schema order.",
        ),
    ]


def to_frame(instances: Sequence[dict[str, Any]], schema: FeatureSchema) -> pd.DataFrame:
    """Validated instances as the frame the pipeline was fitted on (None is a missing value)."""
    names = schema.names
    values = [[instance[name] for name in names] for instance in instances]
    if not schema.categorical:
        return pd.DataFrame(np.array(values, dtype="float64"), columns=names)
    columns = zip(*values, strict=True) if values else ([] for _ in names)
    kinds = [feature.kind for feature in schema.features]
    return pd.DataFrame(
        {
            name: np.array(column, dtype="float64" if kind == "numeric" else object)
            for name, kind, column in zip(names, kinds, columns, strict=True)
        },
        columns=names,
    )


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
