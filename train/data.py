"""Loading training data: scikit-learn's bundled breast-cancer set, or a user's table."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from model.tables import TableError, read_table

DEFAULT_TARGET = "diagnosis"


class DataError(ValueError):
    """The training data cannot be used; the message says why."""


def load_default() -> tuple[pd.DataFrame, pd.Series]:
    """Breast-cancer diagnostics: 569 rows, 30 named numeric features, 0 malignant, 1 benign."""
    from sklearn.datasets import load_breast_cancer  # not imported by commands that score

    bunch = load_breast_cancer(as_frame=True)
    features: pd.DataFrame = bunch.data
    target = bunch.target.rename(DEFAULT_TARGET)
    return features, target


def load_table(path: Path, target: str) -> tuple[pd.DataFrame, pd.Series]:
    try:
        frame = read_table(path)
    except TableError as exc:
        raise DataError(str(exc)) from exc
    if target not in frame.columns:
        raise DataError(f"{path}: target column {target!r} not found in {list(frame.columns)}")
    labelled = frame[frame[target].notna()]
    if len(labelled) < 10:
        raise DataError(f"{path}: only {len(labelled)} rows with a target value; need at least 10")
    features = labelled.drop(columns=[target]).reset_index(drop=True)
    if features.shape[1] == 0:
        raise DataError(f"{path}: no feature columns besides the target")
    return features, labelled[target].reset_index(drop=True)


def fingerprint(features: pd.DataFrame, target: pd.Series) -> str:
    """Content hash of the training data, stable across runs and row order."""
    rows = pd.util.hash_pandas_object(features.assign(__target__=target), index=False)
    digest = hashlib.sha256(rows.sort_values().to_numpy().tobytes())
    digest.update(",".join(map(str, features.columns)).encode())
    return f"sha256:{digest.hexdigest()}"
