"""Drift of a model's inputs and predictions against the model's reference sample.

`compute_drift(reference, current, schema)` compares two frames column by column with
Evidently (a `Report` over `Dataset`s with an explicit `DataDefinition` built from the
schema) and returns a `DriftResult`: a verdict per feature, one for the prediction, and
the dataset verdict. `DriftResult.to_json()` is the machine-readable summary and
`DriftResult.save_html(path)` writes Evidently's page.

Per-column verdicts are Evidently's: the stattest Evidently picks for the column's type
and size (Wasserstein distance for numeric columns and Jensen-Shannon distance for
categorical ones when the reference has more than 1000 rows, K-S / chi-square / Z-test
p-values below that), its default threshold, and its rule (p-value below threshold, or
distance at or above it). `DriftSettings` overrides methods and thresholds by name, as
`DataDriftPreset` does. The dataset drifted when the share of drifted features is at
least `drift_share` (Evidently's rule, default 0.5). The prediction has its own verdict
and does not count in that share.

Columns Evidently cannot test get a verdict that says why (score 1.0 or 0.0, threshold
0.0): `missing_in_current` (the feature is absent from the current data: drifted),
`empty_in_current` / `empty_in_reference` (no non-null value on that side: drifted),
`empty_in_both` (not drifted). A constant column is tested as usual. Categories seen
only in the current data are part of the comparison. Empty current or reference data,
a reference without the schema's features, or current data with none of them raise
`DriftInputError`.

Importing this module is cheap; Evidently is imported when drift is computed.
"""

from __future__ import annotations

import json
import logging
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from model import values
from model.outputs import PREDICTION_COLUMN
from model.schema import FeatureSchema
from monitoring.verdicts import CATEGORICAL, NUMERIC

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

    from monitoring.drift_metric import ColumnsDrift

logger = logging.getLogger(__name__)

MAX_DEFAULT_WORKERS = 4


class DriftInputError(ValueError):
    """The data cannot be compared; the message says why."""


class DriftSettings(BaseModel):
    """Overrides of Evidently's choice of stattest and threshold.

    The most specific setting wins: per column, then per kind (numeric / categorical),
    then for all columns; unset means Evidently's default for the column.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    drift_share: float = Field(0.5, gt=0.0, le=1.0, description="Dataset drift share threshold.")
    method: str | None = Field(None, description="Stattest name for every column, e.g. 'psi'.")
    num_method: str | None = Field(None, description="Stattest name for numeric columns.")
    cat_method: str | None = Field(None, description="Stattest name for categorical columns.")
    per_column_method: dict[str, str] = Field(default_factory=dict)
    threshold: float | None = Field(None, ge=0.0, description="Threshold for every column.")
    num_threshold: float | None = Field(None, ge=0.0)
    cat_threshold: float | None = Field(None, ge=0.0)
    per_column_threshold: dict[str, float] = Field(default_factory=dict)


class ColumnDrift(BaseModel):
    score: float
    method: str
    threshold: float
    drifted: bool


class DriftResult(BaseModel):
    drift_detected: bool
    share_drifted: float
    model: str
    reference_rows: int
    current_rows: int
    columns: dict[str, ColumnDrift]
    prediction: ColumnDrift | None
    generated_at: datetime

    _snapshot: Any = PrivateAttr(default=None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary as Python data; a score that is not finite becomes None."""
        return {
            "drift_detected": self.drift_detected,
            "share_drifted": self.share_drifted,
            "model": self.model,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "columns": {name: _column_dict(c) for name, c in self.columns.items()},
            "prediction": _column_dict(self.prediction) if self.prediction else None,
            "generated_at": self.generated_at.astimezone(UTC).isoformat(),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def evidently_snapshot(self) -> Snapshot:
        """Evidently's snapshot of this result (only for a result of `compute_drift`)."""
        if self._snapshot is None:
            raise ValueError("this result has no Evidently report")
        return self._snapshot

    def save_html(self, path: str | Path) -> Path:
        """Write Evidently's page for this result (only for a result of `compute_drift`)."""
        snapshot = self.evidently_snapshot()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Snapshot.save_html writes only when given a str path.
        snapshot.save_html(str(target))
        return target


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    schema: FeatureSchema,
    *,
    model: str = "",
    settings: DriftSettings | None = None,
    include_prediction: bool = True,
    prediction_column: str = PREDICTION_COLUMN,
    workers: int | None = None,
) -> DriftResult:
    """Per-feature and prediction drift of `current` against `reference` (see module doc).

    `workers` threads judge columns in parallel (default: the CPU count, at most 4); the
    verdicts do not depend on it.
    """
    settings = settings or DriftSettings()
    features = _features_to_compare(reference, current, schema)
    prediction = _prediction_to_compare(
        reference, current, prediction_column if include_prediction else None
    )
    kinds = {f.name: f.kind for f in schema.features if f.name in features}
    if prediction is not None:
        kinds[prediction] = NUMERIC if schema.task == "regression" else CATEGORICAL
    _check_settings(settings, kinds)
    logger.info(
        "judging %d columns: %d reference rows, %d current rows",
        len(kinds),
        len(reference),
        len(current),
    )
    reference_frame = model_frame(reference, kinds)
    current_frame = model_frame(current, kinds)
    metric = _drift_metric(features, prediction, settings, workers or default_workers())
    snapshot, table = _run_report(reference_frame, current_frame, kinds, metric, model)
    result = _result(table, features, prediction, settings, model, len(reference), len(current))
    result._snapshot = snapshot
    logger.info(
        "drift %s: %d of %d features drifted (share %.3f)",
        "detected" if result.drift_detected else "not detected",
        sum(c.drifted for c in result.columns.values()),
        len(result.columns),
        result.share_drifted,
    )
    return result


def model_frame(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """The compared columns of `frame`, cast once: float64, or str / None for categories."""
    columns = {
        name: as_numbers(frame[name]) if kind == NUMERIC else as_categories(frame[name])
        for name, kind in kinds.items()
        if name in frame.columns
    }
    return pd.DataFrame(columns, index=frame.index)


def as_numbers(series: pd.Series) -> pd.Series:
    if series.dtype == np.float64:
        return series
    if pd.api.types.is_numeric_dtype(series):
        return series.astype("float64")
    floats, refused = values.number_list(series.tolist())  # the API's rule for each value
    numbers = pd.Series(floats, index=series.index, name=series.name)
    unreadable = int(refused.sum())
    if unreadable:
        logger.warning(
            "column %r: %d values are not numbers; compared as missing", series.name, unreadable
        )
    return numbers


def as_categories(series: pd.Series) -> pd.Series:
    """Categories as the model sees them (`model.schema.to_model_frame`): str, or None."""
    if series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in (
        "string",
        "empty",
    ):
        return series.where(series.notna(), None)
    return series.astype(object).map(lambda v: None if pd.isna(v) else str(v)).astype(object)


def _features_to_compare(
    reference: pd.DataFrame, current: pd.DataFrame, schema: FeatureSchema
) -> list[str]:
    names = schema.names
    if not names:
        raise DriftInputError("the schema has no features")
    if len(reference) == 0:
        raise DriftInputError("the reference data has no rows")
    if len(current) == 0:
        raise DriftInputError("the current data has no rows")
    lacking = [n for n in names if n not in reference.columns]
    if lacking:
        raise DriftInputError(f"the reference data lacks feature columns {lacking}")
    if not any(n in current.columns for n in names):
        raise DriftInputError(
            f"the current data has none of the feature columns {names}; "
            f"it has {list(current.columns)}"
        )
    absent = [n for n in names if n not in current.columns]
    if absent:
        logger.warning("current data lacks feature columns %s; they count as drifted", absent)
    return names


def _prediction_to_compare(
    reference: pd.DataFrame, current: pd.DataFrame, column: str | None
) -> str | None:
    if column is None:
        return None
    lacking = [
        name
        for name, frame in (("reference", reference), ("current", current))
        if column not in frame.columns
    ]
    if len(lacking) == 1:
        logger.warning(
            "no %r column in the %s data; prediction drift is not computed", column, lacking[0]
        )
    elif lacking:
        logger.info("no %r column; prediction drift is not computed", column)
    return None if lacking else column


def _check_settings(settings: DriftSettings, kinds: dict[str, str]) -> None:
    """Fail early, with Evidently's message, on a stattest unknown for a column's kind."""
    from monitoring.drift_metric import check_method

    present = set(kinds.values())
    wanted: list[tuple[str, str]] = []
    if settings.method:
        wanted += [(settings.method, kind) for kind in present]
    if settings.num_method and NUMERIC in present:
        wanted.append((settings.num_method, NUMERIC))
    if settings.cat_method and CATEGORICAL in present:
        wanted.append((settings.cat_method, CATEGORICAL))
    for column, method in settings.per_column_method.items():
        if column not in kinds:
            raise DriftInputError(f"a method is set for {column!r}, which is not compared")
        wanted.append((method, kinds[column]))
    for column in settings.per_column_threshold:
        if column not in kinds:
            raise DriftInputError(f"a threshold is set for {column!r}, which is not compared")
    for method, kind in wanted:
        try:
            check_method(method, kind)
        except ValueError as exc:
            raise DriftInputError(str(exc)) from exc


def default_workers() -> int:
    return max(1, min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1))


def _drift_metric(
    features: list[str], prediction: str | None, settings: DriftSettings, workers: int
) -> ColumnsDrift:
    from monitoring.drift_metric import ColumnsDrift

    return ColumnsDrift(
        columns=features,
        prediction=prediction,
        drift_share=settings.drift_share,
        method=settings.method,
        num_method=settings.num_method,
        cat_method=settings.cat_method,
        per_column_method=settings.per_column_method or None,
        threshold=settings.threshold,
        num_threshold=settings.num_threshold,
        cat_threshold=settings.cat_threshold,
        per_column_threshold=settings.per_column_threshold or None,
        workers=workers,
    )


def _run_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: dict[str, str],
    metric: ColumnsDrift,
    model: str,
) -> tuple[Snapshot, pd.DataFrame]:
    from evidently import DataDefinition, Dataset, Report

    from monitoring.drift_metric import quiet_numerics, run_values

    definition = DataDefinition(
        numerical_columns=[n for n, k in kinds.items() if k == NUMERIC],
        categorical_columns=[n for n, k in kinds.items() if k == CATEGORICAL],
        text_columns=[],
        datetime_columns=[],
        unknown_columns=[],
        list_columns=[],
    )
    report = Report([metric, *run_values(metric)], model_id=model or None)
    with quiet_numerics():
        snapshot = report.run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
    table = snapshot.context.get_metric_result(metric).value
    return snapshot, table


def _result(
    table: pd.DataFrame,
    features: list[str],
    prediction: str | None,
    settings: DriftSettings,
    model: str,
    reference_rows: int,
    current_rows: int,
) -> DriftResult:
    from monitoring.verdicts import dataset_verdict

    verdicts = {
        row.column: ColumnDrift(
            score=float(row.score),
            method=str(row.method),
            threshold=float(row.threshold),
            drifted=bool(row.drifted),
        )
        for row in table.itertuples(index=False)
    }
    columns = {name: verdicts[name] for name in features}
    share, detected = dataset_verdict([c.drifted for c in columns.values()], settings.drift_share)
    return DriftResult(
        drift_detected=detected,
        share_drifted=share,
        model=model,
        reference_rows=reference_rows,
        current_rows=current_rows,
        columns=columns,
        prediction=verdicts.get(prediction) if prediction else None,
        generated_at=datetime.now(UTC),
    )


def _column_dict(column: ColumnDrift) -> dict[str, Any]:
    return {
        "score": column.score if math.isfinite(column.score) else None,
        "method": column.method,
        "threshold": column.threshold,
        "drifted": column.drifted,
    }
