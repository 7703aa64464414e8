"""The plain FastAPI server a user would write for the same model.

    MODEL_TAG=name:version uvicorn bench.baselines.fastapi_app:app

A sync handler (run in FastAPI's thread pool), a pydantic body model, one `predict_proba`
per request on a pandas frame built from the JSON, one uvicorn process. `/predict` and
`/predict_batch` are the same handler. The body and the answer have the shape of the
served model's API (`{"instances": [[...], ...]}` in schema order), so the comparison is
about the serving stack, not the payload.
"""

from __future__ import annotations

import os

import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel, Field

from model import store

MODEL = store.load(os.environ["MODEL_TAG"])
NAMES = MODEL.schema.names
CLASSES = MODEL.pipeline.classes_
LABELS = [str(label) for label in CLASSES]


class Body(BaseModel):
    instances: list[list[float]] = Field(min_length=1, max_length=100_000)


class Answer(BaseModel):
    model: str
    predictions: list[int | float | str]
    probabilities: list[dict[str, float]]


app = FastAPI(title="tabular-model (FastAPI baseline)")


@app.get("/readyz")
def readyz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
@app.post("/predict_batch")
def predict(body: Body) -> Answer:
    frame = pd.DataFrame(body.instances, columns=NAMES)
    matrix = MODEL.pipeline.predict_proba(frame)
    return Answer(
        model=MODEL.tag,
        predictions=CLASSES[matrix.argmax(axis=1)].tolist(),
        probabilities=[dict(zip(LABELS, row, strict=True)) for row in matrix.tolist()],
    )
