"""Train, evaluate, gate and register: data in, registered tag out."""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass, field
from importlib.metadata import version

import pandas as pd
from sklearn.model_selection import train_test_split

from model import store
from model.outputs import PREDICTION_COLUMN
from model.schema import Task, build_schema, infer_kinds, infer_task, to_model_frame

from .data import fingerprint
from .evaluate import PRIMARY_METRIC, check_gate, evaluate
from .onnx_convert import convert
from .options import DEFAULT_TOLERANCE, Estimator
from .pipeline import build_pipeline

logger = logging.getLogger(__name__)

REFERENCE_ROWS = 10_000
LIBRARIES = ("scikit-learn", "numpy", "pandas", "bentoml", "joblib", "skl2onnx", "onnxruntime")


@dataclass(frozen=True)
class TrainConfig:
    name: str
    estimator: Estimator = "linear"
    task: Task | None = None
    categorical: list[str] = field(default_factory=list)
    test_size: float = 0.2
    seed: int = 42
    min_score: float | None = None
    gate_metric: str | None = None
    promote: bool = False
    source: str = "sklearn:breast_cancer"
    onnx: bool = True
    onnx_tolerance: float = DEFAULT_TOLERANCE


@dataclass(frozen=True)
class TrainResult:
    tag: str
    metrics: dict[str, float]
    primary_metric: str
    promoted: bool
    onnx_status: str = "skipped"


def _split(features: pd.DataFrame, target: pd.Series, task: Task, config: TrainConfig):
    stratify = None
    if task == "classification" and target.value_counts().min() >= 2:
        stratify = target
    return train_test_split(
        features, target, test_size=config.test_size, random_state=config.seed, stratify=stratify
    )


def train(features: pd.DataFrame, target: pd.Series, config: TrainConfig) -> TrainResult:
    """Fit on a training split, score the held-out split, gate, then register."""
    task = config.task or infer_task(target)
    kinds = infer_kinds(features, config.categorical)
    frame = to_model_frame(features, kinds)
    if task == "classification" and not pd.api.types.is_numeric_dtype(target):
        target = target.astype(str)
    x_train, x_test, y_train, y_test = _split(frame, target, task, config)

    pipeline = build_pipeline(kinds, task, config.estimator, config.seed)
    pipeline.fit(x_train, y_train)
    metrics = evaluate(pipeline, x_test, y_test, task)
    primary = config.gate_metric or PRIMARY_METRIC[task]
    logger.info("held-out metrics: %s", metrics)
    check_gate(metrics, primary, config.min_score)

    classes = list(pipeline.classes_) if task == "classification" else None
    schema = build_schema(x_train, y_train, task, kinds, classes)
    reference = x_train.sample(
        n=min(len(x_train), REFERENCE_ROWS), random_state=config.seed
    ).sort_index()
    reference = reference.assign(
        **{
            schema.target: y_train.loc[reference.index],
            PREDICTION_COLUMN: pipeline.predict(reference),
        }
    ).reset_index(drop=True)

    onnx_model, onnx_record = None, {"status": "skipped", "reason": "conversion turned off"}
    if config.onnx:
        spread = float(y_train.std()) if task == "regression" else 1.0
        conversion = convert(
            pipeline, schema, x_test, target_spread=spread, tolerance=config.onnx_tolerance
        )
        onnx_model, onnx_record = conversion.model, conversion.to_metadata()
    tag = store.save(
        pipeline,
        schema,
        reference,
        name=config.name,
        labels={"task": task, "estimator": config.estimator},
        metadata={
            "metrics": metrics,
            "primary_metric": primary,
            "data_fingerprint": fingerprint(features, target),
            "data_source": config.source,
            "train_rows": len(x_train),
            "test_rows": len(x_test),
            "params": {
                "estimator": config.estimator,
                "seed": config.seed,
                "test_size": config.test_size,
            },
            "versions": {
                "python": platform.python_version(),
                **{lib: version(lib) for lib in LIBRARIES},
            },
            "onnx": onnx_record,
        },
        onnx_model=onnx_model,
    )
    if config.promote:
        store.promote(tag)
    return TrainResult(
        tag=tag,
        metrics=metrics,
        primary_metric=primary,
        promoted=config.promote,
        onnx_status=onnx_record["status"],
    )
