"""An Evidently metric that judges drift for many columns in one pass.

`ColumnsDrift` gives, for every column, the verdict Evidently's `ValueDrift` and
`DataDriftPreset` give: Evidently's stattest registry picks the method and its default
threshold from the column type and the data, with the same precedence of overrides
(`DataDriftOptions`), and Evidently's stattest computes the score. What it leaves out is
the per-column work that only feeds the preset's plots (correlation matrices, time-index
aggregation, Doane histograms, one plotly figure per column, and the second and third
pass over all columns the preset makes for its summary and its table). Its page is one
table with small histograms computed once per column (see `drift_widgets`).

Importing this module imports Evidently, which is slow: import it only when drift is
computed.
"""

import logging
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pandas as pd
from evidently import ColumnType
from evidently.core.datasets import Dataset
from evidently.core.metric_types import (
    DataframeCalculation,
    DataframeMetric,
    DataframeValue,
    SingleValue,
    SingleValueCalculation,
    SingleValueMetric,
)
from evidently.core.report import Context
from evidently.legacy.calculations.stattests import get_stattest
from evidently.legacy.calculations.stattests.registry import get_registered_stattest
from evidently.legacy.options.data_drift import DataDriftOptions

from monitoring.verdicts import (
    CATEGORICAL,
    EMPTY_IN_BOTH,
    EMPTY_IN_CURRENT,
    EMPTY_IN_REFERENCE,
    MISSING_IN_CURRENT,
    NUMERIC,
    RESULT_COLUMNS,
    ColumnVerdict,
    Histogram,
    dataset_verdict,
)

logger = logging.getLogger(__name__)

PROGRESS_MIN_CELLS = 1_000_000
PROGRESS_EVERY_SECONDS = 2.0


class ColumnsDrift(DataframeMetric):
    """Drift verdict (score, method, threshold, drifted) for each of `columns`.

    `prediction`, when set, is judged like the other columns but is left out of the
    share of drifted columns shown on the page. `workers` threads judge columns at once
    (the stattests spend their time in numpy sorts, which release the GIL).
    """

    class Config:
        type_alias = "monitoring:metric_v2:ColumnsDrift"

    columns: list[str]
    prediction: str | None = None
    drift_share: float = 0.5
    method: str | None = None
    num_method: str | None = None
    cat_method: str | None = None
    per_column_method: dict[str, str] | None = None
    threshold: float | None = None
    num_threshold: float | None = None
    cat_threshold: float | None = None
    per_column_threshold: dict[str, float] | None = None
    histogram_bins: int = 20
    top_categories: int = 20
    workers: int = 1

    def drift_options(self) -> DataDriftOptions:
        return DataDriftOptions(
            drift_share=self.drift_share,
            all_features_stattest=self.method,
            num_features_stattest=self.num_method,
            cat_features_stattest=self.cat_method,
            per_feature_stattest=self.per_column_method,
            all_features_threshold=self.threshold,
            num_features_threshold=self.num_threshold,
            cat_features_threshold=self.cat_threshold,
            per_feature_threshold=self.per_column_threshold,
        )


class ColumnsDriftCalculation(DataframeCalculation[ColumnsDrift]):
    def display_name(self) -> str:
        return "Column drift"

    def calculate(
        self, context: Context, current_data: Dataset, reference_data: Dataset | None
    ) -> DataframeValue:
        if reference_data is None:
            raise ValueError("column drift needs reference data")
        metric = self.metric
        verdicts = _judge_columns(
            current_data.as_dataframe(),
            reference_data.as_dataframe(),
            kinds={name: _kind(context, name) for name in _all_columns(metric)},
            options=metric.drift_options(),
            histogram_bins=metric.histogram_bins,
            top_categories=metric.top_categories,
            workers=metric.workers,
        )
        frame = pd.DataFrame([v.as_row() for v in verdicts], columns=RESULT_COLUMNS)
        result = self.result(frame)
        from monitoring.drift_widgets import render

        result.widget = render(
            verdicts,
            prediction=metric.prediction,
            drift_share=metric.drift_share,
            reference_rows=len(reference_data.as_dataframe()),
            current_rows=len(current_data.as_dataframe()),
        )
        return result


# What a RunValue reports: the dataset's share of drifted features and verdict (1 or 0),
# a feature's drift score and verdict, and the prediction's.
SHARE_DRIFTED = "share_drifted"
DRIFT_DETECTED = "drift_detected"
SCORE = "score"
DRIFTED = "drifted"
PREDICTION_SCORE = "prediction_score"
PREDICTION_DRIFTED = "prediction_drifted"


class RunValue(SingleValueMetric):
    """One number of a drift run, read from the `ColumnsDrift` result of the same report.

    These are what an Evidently Workspace plots across runs: dashboard panels select a
    metric by type and labels (`value`, `column`), and only single values make series.
    They draw nothing on the page. The type alias must begin with Evidently's prefix:
    dashboard panels only select metrics whose type begins with it.
    """

    class Config:
        type_alias = "evidently:metric_v2:TabularModelDriftRunValue"

    value: str
    column: str | None = None

    _source: ColumnsDrift | None = None

    def of(self, source: ColumnsDrift) -> "RunValue":
        self._source = source
        return self


class RunValueCalculation(SingleValueCalculation[RunValue]):
    def display_name(self) -> str:
        metric = self.metric
        return f"{metric.value} of {metric.column}" if metric.column else metric.value

    def calculate(
        self, context: Context, current_data: Dataset, reference_data: Dataset | None
    ) -> SingleValue:
        metric = self.metric
        if metric._source is None:
            raise ValueError("RunValue needs the ColumnsDrift metric it reads (RunValue.of)")
        table = context.calculate_metric(metric._source.to_calculation()).value
        result = self.result(_run_value(table, metric._source, metric.value, metric.column))
        result.widget = []
        return result


def run_values(source: ColumnsDrift) -> list[RunValue]:
    """The run's share and verdict, and every column's score and verdict, read from `source`."""
    values = [RunValue(value=name) for name in (SHARE_DRIFTED, DRIFT_DETECTED)]
    values += [RunValue(value=name, column=c) for c in source.columns for name in (SCORE, DRIFTED)]
    if source.prediction:
        values += [
            RunValue(value=name, column=source.prediction)
            for name in (PREDICTION_SCORE, PREDICTION_DRIFTED)
        ]
    return [value.of(source) for value in values]


def _run_value(table: pd.DataFrame, source: ColumnsDrift, value: str, column: str | None) -> float:
    if column is not None:
        row = table.loc[table["column"] == column].iloc[0]
        scored = value in (SCORE, PREDICTION_SCORE)
        return float(row["score"]) if scored else float(bool(row["drifted"]))
    features = table.loc[table["column"].isin(source.columns)]
    share, detected = dataset_verdict(features["drifted"].astype(bool).tolist(), source.drift_share)
    return share if value == SHARE_DRIFTED else float(detected)


def check_method(name: str, kind: str) -> None:
    """Raise ValueError if Evidently has no stattest `name` for columns of this kind."""
    get_registered_stattest(name, _column_type(kind))


def _all_columns(metric: ColumnsDrift) -> list[str]:
    extra = (
        [metric.prediction] if metric.prediction and metric.prediction not in metric.columns else []
    )
    return [*metric.columns, *extra]


def _kind(context: Context, column: str) -> str:
    column_type = context.data_definition.get_column_type(column)
    if column_type == ColumnType.Numerical:
        return NUMERIC
    if column_type == ColumnType.Categorical:
        return CATEGORICAL
    raise ValueError(f"column {column!r} must be numerical or categorical, not {column_type}")


def _column_type(kind: str) -> ColumnType:
    return ColumnType.Numerical if kind == NUMERIC else ColumnType.Categorical


def _judge_columns(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    kinds: dict[str, str],
    options: DataDriftOptions,
    histogram_bins: int,
    top_categories: int,
    workers: int,
) -> list[ColumnVerdict]:
    """One verdict per column; columns are independent, so they run on `workers` threads."""

    def judge(column: str) -> ColumnVerdict:
        kind = kinds[column]
        if column not in current.columns:
            return _structural(column, kind, MISSING_IN_CURRENT, drifted=True)
        with np.errstate(all="ignore"):
            return _judge_column(
                column,
                kind,
                reference=_valid_values(reference[column], kind),
                current=_valid_values(current[column], kind),
                options=options,
                histogram_bins=histogram_bins,
                top_categories=top_categories,
            )

    progress = _Progress(total=len(kinds), cells=(len(current) + len(reference)) * len(kinds))
    verdicts = []
    with quiet_numerics(), ThreadPoolExecutor(max(1, workers), "drift") as pool:
        for verdict in pool.map(judge, kinds):
            verdicts.append(verdict)
            progress.step(verdict.column)
    return verdicts


def _judge_column(
    column: str,
    kind: str,
    *,
    reference: pd.Series,
    current: pd.Series,
    options: DataDriftOptions,
    histogram_bins: int,
    top_categories: int,
) -> ColumnVerdict:
    if reference.empty or current.empty:
        return _empty_verdict(
            column, kind, reference_empty=reference.empty, current_empty=current.empty
        )
    column_type = _column_type(kind)
    requested = options.get_feature_stattest_func(column, column_type.value)
    threshold = options.get_threshold(column, column_type.value)
    stattest = get_stattest(reference, current, column_type, requested)
    outcome = stattest(reference, current, column_type, threshold)
    histogram = (
        _numeric_histogram(reference, current, histogram_bins)
        if kind == NUMERIC
        else _category_histogram(reference, current, top_categories)
    )
    return ColumnVerdict(
        column=column,
        kind=kind,
        method=stattest.name,
        method_label=stattest.display_name,
        threshold=float(outcome.actual_threshold),
        score=float(outcome.drift_score),
        drifted=bool(outcome.drifted),
        histogram=histogram,
    )


def _empty_verdict(
    column: str, kind: str, *, reference_empty: bool, current_empty: bool
) -> ColumnVerdict:
    """A column with no values on one side drifted; with no values on either side it did not."""
    if reference_empty and current_empty:
        return _structural(column, kind, EMPTY_IN_BOTH, drifted=False)
    method = EMPTY_IN_REFERENCE if reference_empty else EMPTY_IN_CURRENT
    return _structural(column, kind, method, drifted=True)


def _structural(column: str, kind: str, method: str, *, drifted: bool) -> ColumnVerdict:
    return ColumnVerdict(
        column=column,
        kind=kind,
        method=method,
        method_label=method.replace("_", " "),
        threshold=0.0,
        score=1.0 if drifted else 0.0,
        drifted=drifted,
        histogram=None,
    )


def _valid_values(series: pd.Series, kind: str) -> pd.Series:
    """Non-null values, as Evidently cleans a column before testing it (infinities are null)."""
    if kind == CATEGORICAL:
        return series[series.notna()]
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        series = pd.to_numeric(series, errors="coerce")
    values = series.to_numpy(dtype="float64", na_value=np.nan)
    finite = np.isfinite(values)
    return pd.Series(values if finite.all() else values[finite], name=series.name, copy=False)


def _numeric_histogram(reference: pd.Series, current: pd.Series, bins: int) -> Histogram:
    ref, cur = reference.to_numpy(), current.to_numpy()
    low = float(min(ref.min(), cur.min()))
    high = float(max(ref.max(), cur.max()))
    if high <= low:
        high = low + 1.0
    ref_counts, edges = np.histogram(ref, bins=bins, range=(low, high))
    cur_counts, _ = np.histogram(cur, bins=bins, range=(low, high))
    centers = ((edges[:-1] + edges[1:]) / 2).tolist()
    return Histogram(labels=centers, reference=ref_counts.tolist(), current=cur_counts.tolist())


def _category_histogram(reference: pd.Series, current: pd.Series, top: int) -> Histogram:
    ref_counts = reference.astype(str).value_counts()
    cur_counts = current.astype(str).value_counts()
    both = ref_counts.add(cur_counts, fill_value=0).sort_values(ascending=False, kind="stable")
    shown = [str(label) for label in both.index[:top]]
    ref_shown = [int(ref_counts.get(label, 0)) for label in shown]
    cur_shown = [int(cur_counts.get(label, 0)) for label in shown]
    if len(both) > top:
        shown.append("(other)")
        ref_shown.append(int(ref_counts.sum()) - sum(ref_shown))
        cur_shown.append(int(cur_counts.sum()) - sum(cur_shown))
    return Histogram(labels=list(shown), reference=ref_shown, current=cur_shown)


@contextmanager
def quiet_numerics() -> Iterator[None]:
    """Constant, tiny or all-null columns make numpy divide by zero; results stay defined."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


class _Progress:
    """Logs how far a long drift computation is, at most every few seconds."""

    def __init__(self, total: int, cells: int) -> None:
        self._total = total
        self._enabled = cells >= PROGRESS_MIN_CELLS
        self._done = 0
        self._started = time.perf_counter()
        self._last = self._started

    def step(self, column: str) -> None:
        self._done += 1
        now = time.perf_counter()
        if not self._enabled:
            return
        if now - self._last < PROGRESS_EVERY_SECONDS and self._done < self._total:
            return
        self._last = now
        logger.info(
            "drift: %d/%d columns (%.0f%%, last %r) in %.1fs",
            self._done,
            self._total,
            100 * self._done / max(self._total, 1),
            column,
            now - self._started,
        )
