"""A loaded model answering predictions: what the service delegates to."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from model.outputs import Outputs
from model.store import LoadedModel

from .instances import Columns, to_frame
from .responses import PredictResponse, Row, arrow_answer, json_answer

logger = logging.getLogger(__name__)


# validated instances (tuples in schema order or mappings), or checked columns or frame
Instances = Sequence[Sequence[Any] | Mapping[str, Any]] | Columns | pd.DataFrame
Observer = Callable[[str, "Outputs"], None]


class Predictor:
    def __init__(self, loaded: LoadedModel, observe: Observer | None = None) -> None:
        self.loaded = loaded
        self._observe = observe
        self.tag = loaded.tag
        self.schema = loaded.schema
        self._compiled = loaded.compiled
        self.ready = False

    def warm_up(self) -> None:
        """Answer one prediction from the training reference point, then report ready."""
        self.outputs(pd.DataFrame([self._typical_instance()], columns=self.schema.names))
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

    def outputs(self, frame: pd.DataFrame) -> Outputs:
        return self.loaded.outputs(frame)

    def _outputs_of(self, instances: Instances) -> Outputs:
        if isinstance(instances, pd.DataFrame):
            return self.outputs(instances)
        if self._compiled is not None:  # straight from the validated values: no frame
            return self._compiled.outputs_from_columns(self.columns(instances).arrays)
        return self.outputs(self.frame(instances))

    def frame(self, instances: Instances) -> pd.DataFrame:
        """Validated instances as the model's frame."""
        if isinstance(instances, pd.DataFrame):
            return instances
        if isinstance(instances, Columns):
            return instances.frame()
        return to_frame(instances, self.schema)

    def columns(self, instances: Sequence[Sequence[Any] | Mapping[str, Any]] | Columns) -> Columns:
        """Validated instances column by column; checked columns are already."""
        if isinstance(instances, Columns):
            return instances
        return Columns.of_instances(instances, self.schema)

    def answer(self, instances: Instances, endpoint: str) -> Outputs:
        """Predict for validated instances (or a checked frame) and record the metrics."""
        outputs = self._outputs_of(instances)
        if self._observe is not None:
            try:
                self._observe(endpoint, outputs)
            except Exception:  # metrics must never fail a prediction
                logger.exception("recording prediction metrics failed")
        return outputs

    def response(self, outputs: Outputs) -> PredictResponse:
        # built from the model's own output: nothing to validate
        return PredictResponse.model_construct(
            model=self.tag,
            predictions=outputs.predictions.tolist(),
            probabilities=outputs.probability_dicts(),
        )

    def json_response(self, outputs: Outputs) -> bytes:
        """`response(outputs)` as JSON, written in one pass without a model object per row."""
        return json_answer(outputs, self.tag)

    def arrow_response(self, outputs: Outputs) -> bytes:
        """The answer as an Arrow IPC stream, the model's tag in the schema's metadata."""
        return arrow_answer(outputs, self.tag)

    def predict(self, instances: Instances, endpoint: str = "/predict_batch") -> PredictResponse:
        return self.response(self.answer(instances, endpoint))

    def predict_rows(self, instances: Instances, endpoint: str = "/predict") -> list[Row]:
        """One answer per instance, for the adaptive batcher to hand back to each request."""
        outputs = self.answer(instances, endpoint)
        predictions = outputs.predictions.tolist()
        per_row = outputs.probability_dicts() or [None] * len(predictions)
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
            "runtime": loaded.runtime_info(),
        }
