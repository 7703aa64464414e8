"""A BentoML service with BentoML's defaults for the same model.

    MODEL_TAG=name:version bentoml serve bench.baselines.default_bento:DefaultBento

One `batchable=True` API taking and returning a numpy array (default `max_batch_size`
and `max_latency_ms`, one worker): the request body is `{"instances": [[...], ...]}`
(rows in schema order) and the answer is the `predict_proba` matrix.
"""

from __future__ import annotations

import os

import bentoml
import numpy as np
import pandas as pd

from model import store


@bentoml.service
class DefaultBento:
    def __init__(self) -> None:
        loaded = store.load(os.environ["MODEL_TAG"])
        self.pipeline = loaded.pipeline
        self.names = loaded.schema.names

    @bentoml.api(batchable=True)
    def predict(self, instances: np.ndarray) -> np.ndarray:
        return self.pipeline.predict_proba(pd.DataFrame(instances, columns=self.names))
