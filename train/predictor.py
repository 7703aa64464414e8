"""A loaded model answering predictions: what the service delegates to."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from .instances import PredictResponse, Row, to_frame
from .registry import LoadedModel

logger = logging.getLogger(__name__)


Observer = Callable[[str, list, list[dict[str, float]] | None], None]


class Predictor:
    def __init__(self, loaded: LoadedModel, observe: Observer | None = None) -> None:
        self.loaded = loaded
        self._observe = observe
        self.tag = loaded.tag
        self.schema = loaded.schema
        self._pipeline = loaded.pipeline
        self._classifier = loaded.schema.task == "classification"
        self._classes = [str(c) for c in getattr(loaded.pipeline, "classes_", [])]
        self.ready = False

    def warm_up(self) -> None:
        """Answer one prediction from the training reference point, then report ready."""
        self.predict_frame(pd.DataFrame([self._typical_instance()], columns=self.schema.names))
        self.ready = True
        logger.info("model %s loaded and warmed up", self.tag)

    def _typical_instance(self) -> dict[str, Any]:
        typical: dict[str, Any] = {}
        for feature in self.schema.features:
            if feature.kind == "numeric":
                low, high = feature.min or 0.0, feature.max or 0.0
                typical[feature.name] = (low + high) / 2
            else:
                typical[feature.name] = (feature.categories or [None])[0]
        return typical

    def predict_frame(self, frame: pd.DataFrame) -> tuple[list, list[dict[str, float]] | None]:
        if not self._classifier:
            return self._pipeline.predict(frame).tolist(), None
        # one pass through the pipeline: predict() is the most probable class for these models
        matrix = self._pipeline.predict_proba(frame)
        predictions = self._pipeline.classes_[matrix.argmax(axis=1)].tolist()
        return predictions, [dict(zip(self._classes, row, strict=True)) for row in matrix.tolist()]

    def _answer(self, endpoint: str, instances: Sequence[dict[str, Any]]):
        predictions, probabilities = self.predict_frame(to_frame(instances, self.schema))
        if self._observe is not None:
            try:
                self._observe(endpoint, predictions, probabilities)
            except Exception:  # metrics must never fail a prediction
                logger.exception("recording prediction metrics failed")
        return predictions, probabilities

    def predict(
        self, instances: Sequence[dict[str, Any]], endpoint: str = "/predict_batch"
    ) -> PredictResponse:
        predictions, probabilities = self._answer(endpoint, instances)
        # built from the model's own output: nothing to validate
        return PredictResponse.model_construct(
            model=self.tag, predictions=predictions, probabilities=probabilities
        )

    def predict_rows(
        self, instances: Sequence[dict[str, Any]], endpoint: str = "/predict"
    ) -> list[Row]:
        """One answer per instance, for the adaptive batcher to hand back to each request."""
        predictions, probabilities = self._answer(endpoint, instances)
        per_row = probabilities or [None] * len(predictions)
        return [
            {"model": self.tag, "prediction": p, "probabilities": q}
            for p, q in zip(predictions, per_row, strict=True)
        ]

    def info(self) -> dict[str, Any]:
        loaded = self.loaded
        created: datetime = loaded.created_at
        return {
            "tag": loaded.tag,
            "labels": loaded.labels,
            "created_at": created.isoformat(),
            "metrics": loaded.metadata.get("metrics", {}),
            "primary_metric": loaded.metadata.get("primary_metric"),
            "data_fingerprint": loaded.metadata.get("data_fingerprint"),
            "versions": loaded.metadata.get("versions", {}),
            "schema": loaded.schema.to_metadata(),
        }
