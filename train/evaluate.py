"""Held-out evaluation and the quality gate."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.pipeline import Pipeline

from model.schema import Task

from .options import QualityGateError

PRIMARY_METRIC: dict[Task, str] = {"classification": "roc_auc", "regression": "r2"}
LOWER_IS_BETTER = frozenset({"mae", "rmse"})


def evaluate(pipeline: Pipeline, features: pd.DataFrame, target: pd.Series, task: Task) -> dict:
    predicted = pipeline.predict(features)
    if task == "regression":
        return {
            "mae": float(mean_absolute_error(target, predicted)),
            "rmse": float(root_mean_squared_error(target, predicted)),
            "r2": float(r2_score(target, predicted)),
        }
    classes = pipeline.classes_
    binary = len(classes) == 2
    metrics = {
        "accuracy": float(accuracy_score(target, predicted)),
        "f1": float(
            f1_score(
                target,
                predicted,
                average="binary" if binary else "macro",
                pos_label=classes[-1] if binary else 1,
            )
        ),
    }
    probabilities = pipeline.predict_proba(features)
    present = np.unique(target)
    if len(present) < 2:
        metrics["roc_auc"] = float("nan")
    elif binary:
        metrics["roc_auc"] = float(roc_auc_score(target, probabilities[:, 1]))
    else:
        metrics["roc_auc"] = float(
            roc_auc_score(target, probabilities, multi_class="ovr", labels=classes)
        )
    return metrics


def check_gate(metrics: dict, metric: str, min_score: float | None) -> None:
    """Raise QualityGateError when `metric` misses `min_score` (a maximum for error metrics)."""
    if min_score is None:
        return
    if metric not in metrics:
        raise ValueError(f"gate metric {metric!r} not among {sorted(metrics)}")
    score = metrics[metric]
    if metric in LOWER_IS_BETTER:
        passed = score <= min_score
        relation = "above the maximum"
    else:
        passed = bool(score >= min_score)
        relation = "below the minimum"
    if not passed:
        raise QualityGateError(f"{metric}={score:.4f} is {relation} {min_score}")
