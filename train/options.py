"""What training can be asked for, and how its gate refuses, importable without
scikit-learn or onnx: the command line needs it for every command, and `score` should not
pay for training."""

from __future__ import annotations

from typing import Literal

Estimator = Literal["linear", "random_forest", "hist_gradient_boosting"]
ESTIMATORS: tuple[Estimator, ...] = ("linear", "random_forest", "hist_gradient_boosting")
# Classifiers: the largest |probability difference| on any held-out row, and the same label
# on every row. Regressors: the largest |prediction difference| over the target's standard
# deviation on the training split.
DEFAULT_TOLERANCE = 1e-4


class QualityGateError(RuntimeError):
    """The model scored below the required minimum; nothing was registered."""
