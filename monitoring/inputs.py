"""Reading the frames to compare and, without a stored model, inferring their schema.

pandas is imported when a file is read, so that importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from model import tables

if TYPE_CHECKING:
    import pandas as pd

    from model.schema import FeatureSchema, Task


class InputError(ValueError):
    """An input file or option cannot be used; the message says why, in one line."""


def read_table(path: Path, text_columns: Iterable[str] = ()) -> pd.DataFrame:
    """A CSV or Parquet file as a frame (`model.tables`), failing with InputError."""
    try:
        return tables.read_table(path, text_columns)
    except tables.TableError as exc:
        raise InputError(str(exc)) from exc


def infer_schema(
    reference: pd.DataFrame,
    *,
    target: str | None,
    prediction: str | None,
    categorical: list[str],
    exclude: list[str],
    task: Task | None,
) -> FeatureSchema:
    """Every column of `reference` but target, prediction and `exclude` is a feature."""
    from model.schema import build_schema, infer_kinds

    named = {"--target": [target] if target else [], "--exclude": exclude}
    for option, columns in named.items():
        missing = [c for c in columns if c not in reference.columns]
        if missing:
            raise InputError(f"{option} names columns the reference data lacks: {missing}")
    left_out = {c for c in (target, prediction, *exclude) if c}
    features = reference.drop(columns=[c for c in reference.columns if c in left_out])
    if features.columns.empty:
        raise InputError("the reference data has no feature columns")
    try:
        kinds = infer_kinds(features, categorical)
    except ValueError as exc:
        raise InputError(f"--categorical: {exc}") from exc
    labels = _labels(reference, target, prediction)
    return build_schema(features, labels, task or _task(labels), kinds)


def _labels(reference: pd.DataFrame, target: str | None, prediction: str | None) -> pd.Series:
    import pandas as pd

    if target:
        return reference[target]
    if prediction and prediction in reference.columns:
        return reference[prediction].rename("")
    return pd.Series(dtype="float64", name="")


def _task(labels: pd.Series) -> Task:
    from model.schema import infer_task

    return infer_task(labels) if not labels.empty else "regression"
