"""Reading the payload log: every logged request, with its instances named by feature.

The log is written by the service (`serving.payload_log`): one JSON line per answered
request, in one file per worker process (`payloads-<pid>.jsonl`, rotated). A line holds
`ts`, `request_id`, `endpoint`, `features` (the feature names, in schema order),
`request` (`{"instances": [...]}`: the body as sent, or a sample of a batch's rows) and
`response` (`{"model", "predictions", "probabilities"}`); a sampled batch adds `rows`.
Values are read with the one rule of `model.values`, as the API read them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from model.outputs import PREDICTION_COLUMN
from model.schema import FeatureSchema, to_model_frame

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
    """One row per logged instance: its features, cast as in training, and its prediction."""
    rows = [
        {**instance, PREDICTION_COLUMN: prediction}
        for record in records
        for instance, prediction in zip(record["instances"], record["predictions"], strict=True)
    ]
    frame = pd.DataFrame(rows, columns=[*schema.names, PREDICTION_COLUMN], dtype=object)
    kinds = {feature.name: feature.kind for feature in schema.features}
    return to_model_frame(frame[schema.names], kinds).assign(
        **{PREDICTION_COLUMN: frame[PREDICTION_COLUMN].to_numpy()}
    )
