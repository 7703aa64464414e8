"""The feature schema: what a model was trained on, stored with the model.

The schema is inferred from the training frame, saved in the model's metadata and
read back by the service (request validation) and by monitoring (drift columns).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

Task = Literal["classification", "regression"]
FeatureKind = Literal["numeric", "categorical"]

MAX_CATEGORIES_STORED = 1000


class Feature(BaseModel):
    name: str
    kind: FeatureKind
    categories: list[str] | None = Field(
        default=None, description="Categories seen in training (categorical only)."
    )
    min: float | None = Field(default=None, description="Training minimum (numeric only).")
    max: float | None = Field(default=None, description="Training maximum (numeric only).")


class FeatureSchema(BaseModel):
    features: list[Feature]
    target: str
    task: Task
    classes: list[str | int | float] | None = Field(
        default=None, description="Class labels in the model's order (classification only)."
    )

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    def to_metadata(self) -> dict:
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_metadata(cls, data: dict) -> FeatureSchema:
        return cls.model_validate(data)


def infer_task(target: pd.Series) -> Task:
    """Classification for non-numeric, boolean or low-cardinality integer targets."""
    if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
        return "classification"
    values = target.dropna()
    is_integral = bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
    if is_integral and values.nunique() <= 20:
        return "classification"
    return "regression"


def infer_kinds(
    frame: pd.DataFrame, categorical: list[str] | None = None
) -> dict[str, FeatureKind]:
    """Numeric dtypes are numeric features; everything else (and `categorical`) is categorical."""
    forced = set(categorical or [])
    unknown = forced - set(frame.columns)
    if unknown:
        raise ValueError(f"categorical columns not in the data: {sorted(unknown)}")
    kinds: dict[str, FeatureKind] = {}
    for name in frame.columns:
        dtype = frame[name].dtype
        numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        kinds[name] = "numeric" if numeric and name not in forced else "categorical"
    return kinds


def to_model_frame(frame: pd.DataFrame, kinds: dict[str, FeatureKind]) -> pd.DataFrame:
    """Cast columns to what the pipeline expects: floats, and strings (or None) for categories."""
    out = pd.DataFrame(index=frame.index)
    for name, kind in kinds.items():
        column = frame[name]
        if kind == "numeric":
            out[name] = pd.to_numeric(column, errors="raise").astype("float64")
        else:
            out[name] = (
                column.astype(object)
                .where(column.notna(), None)
                .map(lambda v: v if v is None else str(v))
            )
    return out


def build_schema(
    features: pd.DataFrame,
    target: pd.Series,
    task: Task,
    kinds: dict[str, FeatureKind],
    classes: list | None = None,
) -> FeatureSchema:
    described: list[Feature] = []
    for name, kind in kinds.items():
        column = features[name]
        if kind == "numeric":
            values = column.dropna()
            described.append(
                Feature(
                    name=name,
                    kind="numeric",
                    min=float(values.min()) if len(values) else None,
                    max=float(values.max()) if len(values) else None,
                )
            )
        else:
            seen = sorted({str(v) for v in column.dropna().unique()})
            described.append(
                Feature(name=name, kind="categorical", categories=seen[:MAX_CATEGORIES_STORED])
            )
    return FeatureSchema(
        features=described,
        target=str(target.name),
        task=task,
        classes=[_plain(c) for c in classes] if classes is not None else None,
    )


def _plain(value: object) -> str | int | float:
    """numpy scalars to JSON-able Python scalars."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float, str)):
        return value
    return str(value)
