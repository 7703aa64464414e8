"""The scikit-learn pipeline: per-kind preprocessing in a ColumnTransformer, then an estimator."""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from model.compiled import MISSING_CATEGORY
from model.schema import FeatureKind, Task

from .options import ESTIMATORS, Estimator


def make_estimator(name: Estimator, task: Task, seed: int):
    classification = task == "classification"
    if name == "linear":
        return LogisticRegression(max_iter=2_000) if classification else Ridge(random_state=seed)
    if name == "random_forest":
        # one thread: the server scales by batching and workers, not by estimator threads
        cls = RandomForestClassifier if classification else RandomForestRegressor
        return cls(n_estimators=200, random_state=seed, n_jobs=1)
    if name == "hist_gradient_boosting":
        cls = HistGradientBoostingClassifier if classification else HistGradientBoostingRegressor
        return cls(random_state=seed)
    raise ValueError(f"unknown estimator {name!r}; choose one of {ESTIMATORS}")


def build_pipeline(
    kinds: dict[str, FeatureKind], task: Task, estimator: Estimator, seed: int
) -> Pipeline:
    numeric = [name for name, kind in kinds.items() if kind == "numeric"]
    categorical = [name for name, kind in kinds.items() if kind == "categorical"]
    transformers = []
    if numeric:
        numeric_steps = Pipeline(
            [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
        )
        transformers.append(("numeric", numeric_steps, numeric))
    if categorical:
        categorical_steps = Pipeline(
            [
                (
                    "impute",
                    SimpleImputer(
                        missing_values=None, strategy="constant", fill_value=MISSING_CATEGORY
                    ),
                ),
                ("one_hot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("categorical", categorical_steps, categorical))
    preprocess = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("preprocess", preprocess), ("model", make_estimator(estimator, task, seed))])
