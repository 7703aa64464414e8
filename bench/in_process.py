"""The model in the harness's own process: what `/predict_batch` is put against.

The one place that says what runs a prepared frame in process: the served version loaded
with the runtime our service picks (MODEL_RUNTIME, `auto` by default: ONNX when its
conversion passed parity at registration, else scikit-learn), answering through
`LoadedModel.outputs`, the call the service makes. The harness times it at each batch size
and the goals divide `/predict_batch` rows/s by it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from model import settings, store


@dataclass(frozen=True)
class InProcess:
    runtime: str
    call: Callable[[pd.DataFrame], Any]
    description: str


def of(tag: str) -> InProcess:
    """The served version `tag` as our service would answer with it."""
    loaded = store.load(tag, settings.settings().model.runtime)
    return InProcess(
        runtime=loaded.runtime,
        call=loaded.outputs,
        description=f"`LoadedModel.outputs` with the runtime in use, {loaded.runtime} "
        f"({loaded.runtime_note}), on a prepared pandas frame",
    )
