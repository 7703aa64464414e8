"""The model's answer for a batch of rows: predictions, and class probabilities for classifiers.

`predict` is the one place a pipeline's output becomes an answer; the APIs (JSON and
Arrow), offline scoring and the payload log all read it from `Outputs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model.schema import Task

PREDICTION_COLUMN = "prediction"
PROBABILITY_PREFIX = "probability_"


def probability_column(label: object) -> str:
    return f"{PROBABILITY_PREFIX}{label}"


@dataclass(frozen=True)
class Outputs:
    """The model's answer for a batch of rows, as arrays."""

    predictions: np.ndarray
    probabilities: np.ndarray | None  # classifiers: one column per class, in `classes` order
    classes: list[str]

    @property
    def top_probabilities(self) -> np.ndarray | None:
        return None if self.probabilities is None else self.probabilities.max(axis=1)

    def take(self, rows: np.ndarray) -> Outputs:
        """The answers for `rows` (indices) only."""
        probabilities = None if self.probabilities is None else self.probabilities[rows]
        return Outputs(self.predictions[rows], probabilities, self.classes)

    def label_counts(self) -> dict[str, int]:
        """How many rows got each predicted label (classifiers), labels as text."""
        if self.probabilities is not None and len(self.classes) == self.probabilities.shape[1]:
            # the prediction is the most probable class (`predict`)
            counts = np.bincount(self.probabilities.argmax(axis=1), minlength=len(self.classes))
            return {
                label: int(n) for label, n in zip(self.classes, counts.tolist(), strict=True) if n
            }
        labels, counts = np.unique(self.predictions, return_counts=True)
        return {
            str(label): int(n) for label, n in zip(labels.tolist(), counts.tolist(), strict=True)
        }

    def probability_dicts(self) -> list[dict[str, float]] | None:
        if self.probabilities is None:
            return None
        classes = self.classes
        return [dict(zip(classes, row, strict=True)) for row in self.probabilities.tolist()]

    def columns(self) -> dict[str, np.ndarray]:
        """`prediction`, then `probability_<class>` for classifiers: a table's columns."""
        columns = {PREDICTION_COLUMN: self.predictions}
        if self.probabilities is not None:
            for index, label in enumerate(self.classes):
                columns[probability_column(label)] = self.probabilities[:, index]
        return columns


def predict(pipeline: Any, frame: Any, task: Task) -> Outputs:
    """The pipeline's answer for the rows of `frame` (the model's input frame)."""
    if task != "classification":
        return Outputs(pipeline.predict(frame), None, [])
    # one pass through the pipeline: predict() is the most probable class for these models
    matrix = pipeline.predict_proba(frame)
    classes = pipeline.classes_
    return Outputs(classes[matrix.argmax(axis=1)], matrix, [str(c) for c in classes])
