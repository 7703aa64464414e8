"""Reading the payload log: every logged request, with its instances named by feature.

The log is written by the service (`serving.payload_log`): one JSON line per answered
request, in one file per worker process (`payloads-<host>-<pid>.jsonl`, rotated). A line holds
`ts`, `request_id`, `endpoint`, `features` (the feature names, in schema order),
`request` (`{"instances": [...]}`: the instances as the API validated them, each a list
in schema order, or a sample of a batch's rows; older logs may hold objects keyed by
feature name) and `response` (`{"model", "predictions", "probabilities"}`); a sampled
batch adds `rows`.
Values are read with the one rule of `model.values`, as the API read them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model import values
from model.outputs import PREDICTION_COLUMN
from model.schema import FeatureSchema

logger = logging.getLogger(__name__)

FILE_PREFIX = "payloads-"


def to_record(line: dict[str, Any]) -> dict[str, Any]:
    """A logged line as one request: instances by feature name, and the model's answer.

    A batch logged as a sample of its rows (SampledRows) holds those rows only; `rows`
    says how many the request had.
    """
    names = line["features"]
    response = line["response"]
    instances = [
        dict(zip(names, row, strict=True)) if isinstance(row, list) else row
        for row in line["request"]["instances"]
    ]
    return {
        "ts": line["ts"],
        "request_id": line["request_id"],
        "endpoint": line["endpoint"],
        "model": response["model"],
        "instances": instances,
        "predictions": response["predictions"],
        "probabilities": response.get("probabilities"),
        "rows": line.get("rows", len(instances)),  # more than logged: a sampled batch
    }


def log_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{FILE_PREFIX}*.jsonl*"))


def read_records(directory: Path, since: datetime | None = None) -> list[dict[str, Any]]:
    """Every logged request at or after `since`, from all workers' current and rotated files."""
    records = []
    for path in log_files(directory):
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    record = to_record(json.loads(line))
                except (ValueError, KeyError, TypeError, AttributeError):
                    logger.warning("%s: skipping a line that is not a logged request", path)
                    continue
                if since is None or datetime.fromisoformat(record["ts"]) >= since:
                    records.append(record)
    return sorted(records, key=lambda r: r["ts"])


def to_frame(records: Sequence[dict[str, Any]], schema: FeatureSchema) -> pd.DataFrame:
    """One row per logged instance: its features read with the one rule (`model.values`),
    as the API read them, and its prediction.

    An instance with a value the rule refuses cannot come from this service, which refuses
    it too; one found in an older or a foreign log is left out with a warning rather than
    failing the drift run. A feature absent from an instance is a missing value.
    """
    instances = [instance for record in records for instance in record["instances"]]
    predictions = [prediction for record in records for prediction in record["predictions"]]
    columns: dict[str, np.ndarray] = {}
    refused = np.zeros(len(instances), dtype=bool)
    for feature in schema.features:
        given = [instance.get(feature.name) for instance in instances]
        read = values.number_list if feature.kind == "numeric" else values.category_list
        columns[feature.name], refused_here = read(given)
        refused |= refused_here
    frame = pd.DataFrame(columns, columns=schema.names)
    frame[PREDICTION_COLUMN] = pd.Series(predictions, dtype=object)
    if refused.any():
        logger.warning(
            "payload log: %d logged instances hold values the API refuses; left out",
            int(refused.sum()),
        )
        frame = frame[~refused].reset_index(drop=True)
    return frame
