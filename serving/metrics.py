"""Prometheus metrics of the model and its drift, exported on the service's /metrics.

They are created with `bentoml.metrics`, which registers them in BentoML's multiprocess
registry, so /metrics aggregates every worker: counters add up, and the drift gauges
(set by whichever worker ran the drift job) report the most recent value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import bentoml
import numpy as np

from model import store
from model.outputs import PREDICTION_COLUMN
from model.store import LoadedModel

if TYPE_CHECKING:
    from model.outputs import Outputs

SCORE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
# each observation is several writes to the multiprocess files: a sample is enough
SCORES_PER_CALL = 32  # the batcher merges up to BATCH_MAX_SIZE (32) rows: all are kept


def value_buckets(model: LoadedModel) -> tuple[float, ...]:
    """Regressors: buckets at the deciles of the model's predictions on its training sample.

    Classifiers (and models without a stored sample) use the probability buckets.
    """
    if model.schema.task != "regression":
        return ()
    try:
        predictions = store.load_reference(model.tag)[PREDICTION_COLUMN]
    except store.RegistryError:
        return ()
    deciles = np.quantile(predictions.to_numpy(dtype=float), np.linspace(0.1, 0.9, 9))
    return tuple(float(b) for b in np.unique(deciles))


class ModelMetrics:
    """Prediction counts, prediction scores and model information."""

    def __init__(self, model: str, labels: dict[str, str], value_buckets: Sequence[float] = ()):
        self.model = model
        self._random = np.random.default_rng()
        self.predictions = bentoml.metrics.Counter(
            name="model_predictions",
            documentation="Predictions answered, by endpoint and predicted class "
            "(classifiers; 'value' for regressors).",
            labelnames=["model", "endpoint", "predicted_class"],
        )
        buckets = tuple(value_buckets) or SCORE_BUCKETS
        self.scores = bentoml.metrics.Histogram(
            name="model_prediction_score",
            documentation="Classifiers: probability of the predicted class; regressors: "
            f"predicted value. Sampled: at most {SCORES_PER_CALL} rows per model call.",
            labelnames=["model", "endpoint"],
            buckets=buckets,
        )
        info = bentoml.metrics.Gauge(
            name="model_info",
            documentation="The served model: always 1, with its tag, stage and task as labels.",
            labelnames=["model", "name", "version", "stage", "task", "estimator"],
            multiprocess_mode="max",
        )
        name, _, version = model.partition(":")
        info.labels(
            model=model,
            name=name,
            version=version,
            stage=labels.get("stage", ""),
            task=labels.get("task", ""),
            estimator=labels.get("estimator", ""),
        ).set(1)

    def observe(self, endpoint: str, outputs: Outputs) -> None:
        top = outputs.top_probabilities
        if top is None:
            self.predictions.labels(self.model, endpoint, "value").inc(len(outputs.predictions))
            scores = outputs.predictions
        else:
            for label, count in outputs.label_counts().items():
                self.predictions.labels(self.model, endpoint, label).inc(count)
            scores = top
        if len(scores) > SCORES_PER_CALL:
            scores = self._random.choice(scores, SCORES_PER_CALL, replace=False)
        histogram = self.scores.labels(self.model, endpoint)
        for score in scores.tolist():
            histogram.observe(score)


class DriftMetrics:
    """The latest drift run, set by the worker that ran it."""

    def __init__(self, model: str, interval_seconds: float) -> None:
        self.model = model

        def gauge(name: str, documentation: str, labels: Sequence[str] = ()):
            return bentoml.metrics.Gauge(
                name=name,
                documentation=documentation,
                labelnames=["model", *labels],
                multiprocess_mode="mostrecent",
            )

        self.detected = gauge("model_drift_detected", "1 when the last drift run found drift.")
        self.share = gauge("model_drift_share_drifted", "Share of features drifted, 0 to 1.")
        self.column_score = gauge(
            "model_drift_column_score",
            "Drift score of each feature and of the prediction, by statistical test.",
            ("column", "method"),
        )
        self.column_drifted = gauge(
            "model_drift_column_drifted", "1 when the column drifted in the last run.", ("column",)
        )
        self.last_run = gauge(
            "model_drift_last_run_timestamp_seconds", "Unix time of the last drift run."
        )
        self.rows = gauge("model_drift_rows_compared", "Current rows in the last drift run.")
        self.interval = gauge(
            "model_drift_interval_seconds", "Interval of the scheduled drift job."
        )
        self.interval.labels(model).set(interval_seconds)

    def record(self, result: dict[str, Any], finished_at: float) -> None:
        """Export one drift.json (see monitoring.drift)."""
        model = self.model
        self.detected.labels(model).set(1 if result["drift_detected"] else 0)
        self.share.labels(model).set(result["share_drifted"])
        self.rows.labels(model).set(result["current_rows"])
        columns = dict(result["columns"])
        if result.get("prediction"):
            columns["prediction"] = result["prediction"]
        for column, verdict in columns.items():
            self.column_score.labels(model, column, verdict["method"]).set(verdict["score"])
            self.column_drifted.labels(model, column).set(1 if verdict["drifted"] else 0)
        self.last_run.labels(model).set(finished_at)
