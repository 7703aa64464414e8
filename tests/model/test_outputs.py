"""The model's answer as arrays: counts per predicted label."""

from __future__ import annotations

import numpy as np
import pytest

from model.outputs import Outputs


def counted_one_by_one(outputs: Outputs) -> dict[str, int]:
    counts: dict[str, int] = {}
    for label in outputs.predictions.tolist():
        counts[str(label)] = counts.get(str(label), 0) + 1
    return counts


@pytest.mark.parametrize("classes", [[0, 1], ["no", "yes", "maybe"], [True, False]])
def test_label_counts_of_a_classifier_count_its_predictions(classes):
    probabilities = np.random.default_rng(0).dirichlet(np.ones(len(classes)), size=500)
    predictions = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]
    outputs = Outputs(predictions, probabilities, [str(c) for c in classes])
    assert outputs.label_counts() == counted_one_by_one(outputs)


def test_label_counts_leave_out_labels_never_predicted():
    outputs = Outputs(np.array(["a", "a"]), np.array([[0.9, 0.1], [0.8, 0.2]]), ["a", "b"])
    assert outputs.label_counts() == {"a": 2}


def test_label_counts_of_a_regressor_count_its_values():
    outputs = Outputs(np.array([1.5, 1.5, 2.0]), None, [])
    assert outputs.label_counts() == {"1.5": 2, "2.0": 1}
