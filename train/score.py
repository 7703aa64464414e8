"""Offline batch scoring: a CSV or Parquet file in, predictions out, in bounded memory.

The input is read in chunks, each chunk is checked against the model's schema with
vectorised checks (the same rules as the API: numbers finite and within ±1e15,
categories as text, null allowed), good rows are predicted in one call, and bad rows are
written to an errors file with their line number, column and problem, never dropped
silently.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from .instances import MAX_ABS_NUMBER
from .registry import LoadedModel
from .schema import FeatureSchema

logger = logging.getLogger(__name__)

ROW_COLUMN = "row"
PREDICTION_COLUMN = "prediction"


class ScoreError(ValueError):
    """The input cannot be scored at all (unreadable, columns missing); says why."""


@dataclass
class ScoreSummary:
    rows: int = 0
    scored: int = 0
    bad_rows: int = 0


def _chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from pd.read_csv(path, chunksize=rows, dtype=str, keep_default_na=True)
    elif suffix in (".parquet", ".pq"):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            yield batch.to_pandas()
    else:
        raise ScoreError(f"{path}: unsupported file type {suffix!r} (use .csv or .parquet)")


def _total_rows(path: Path) -> int | None:
    if path.suffix.lower() in (".parquet", ".pq"):
        return pq.ParquetFile(path).metadata.num_rows
    return None


def check_chunk(
    chunk: pd.DataFrame, schema: FeatureSchema
) -> tuple[pd.DataFrame, pd.Series, list[tuple[int, str, str]]]:
    """The chunk as model input, which rows are good, and (row, column, problem) for bad ones."""
    missing = [name for name in schema.names if name not in chunk.columns]
    if missing:
        raise ScoreError(f"columns missing from the input: {missing}")
    columns: dict[str, object] = {}
    bad = np.zeros(len(chunk), dtype=bool)
    problems: list[tuple[int, str, str]] = []
    for feature in schema.features:
        raw = chunk[feature.name]
        if feature.kind == "categorical":
            columns[feature.name] = (
                raw.astype(object)
                .where(raw.notna(), None)
                .map(lambda v: v if v is None else str(v))
            )
            continue
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
            values = raw.to_numpy(dtype="float64")
            not_a_number = np.zeros(len(raw), dtype=bool)
        else:
            values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64")
            not_a_number = raw.notna().to_numpy() & np.isnan(values)
        with np.errstate(invalid="ignore"):
            out_of_range = ~np.isnan(values) & ~(np.abs(values) <= MAX_ABS_NUMBER)
        for index in chunk.index[not_a_number]:
            problems.append((index, feature.name, f"not a number: {raw[index]!r}"))
        for index in chunk.index[out_of_range]:
            problems.append((index, feature.name, "not finite or beyond ±1e15"))
        bad |= not_a_number | out_of_range
        columns[feature.name] = values
    frame = pd.DataFrame(columns, index=chunk.index, columns=schema.names)
    return frame, pd.Series(~bad, index=chunk.index), problems


class _Writer:
    """Appends scored chunks to a CSV or Parquet output."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.parquet = path.suffix.lower() in (".parquet", ".pq")
        if not self.parquet and path.suffix.lower() != ".csv":
            raise ScoreError(f"{path}: unsupported output type (use .csv or .parquet)")
        self._parquet_writer: pq.ParquetWriter | None = None
        self._header = True

    def write(self, frame: pd.DataFrame) -> None:
        if not self.parquet:
            frame.to_csv(self.path, mode="w" if self._header else "a", header=self._header,
                         index=False)  # fmt: skip
            self._header = False
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._parquet_writer is None:
            self._parquet_writer = pq.ParquetWriter(self.path, table.schema)
        self._parquet_writer.write_table(table)

    def close(self) -> None:
        if self._parquet_writer is not None:
            self._parquet_writer.close()
        elif self._header:  # nothing written: still leave a valid, empty output
            pd.DataFrame(columns=[ROW_COLUMN, PREDICTION_COLUMN]).to_csv(self.path, index=False)


def score_file(
    model: LoadedModel,
    source: Path,
    target: Path,
    errors: Path,
    *,
    chunk_rows: int = 50_000,
    keep: tuple[str, ...] = (),
    progress: bool = True,
) -> ScoreSummary:
    """Score `source` into `target`; bad rows go to `errors` (CSV: line, column, problem).

    `row` in both outputs is the 1-based data row (for a CSV file, line `row + 1`).
    """
    if not source.is_file():
        raise ScoreError(f"{source}: no such file")
    schema = model.schema
    classes = [str(c) for c in getattr(model.pipeline, "classes_", [])]
    classifier = schema.task == "classification"
    summary = ScoreSummary()
    writer = _Writer(target)
    with (
        errors.open("w", newline="") as error_file,
        tqdm(total=_total_rows(source), unit="rows", disable=not progress, desc="scoring") as bar,
    ):
        error_csv = csv.writer(error_file)
        error_csv.writerow([ROW_COLUMN, "column", "problem"])
        try:
            for chunk in _chunks(source, chunk_rows):
                chunk = chunk.reset_index(drop=True)
                chunk.index = chunk.index + summary.rows + 1
                missing_keep = [c for c in keep if c not in chunk.columns]
                if missing_keep:
                    raise ScoreError(f"--keep columns not in the input: {missing_keep}")
                frame, good, problems = check_chunk(chunk, schema)
                for row, column, problem in sorted(problems):
                    error_csv.writerow([row, column, problem])
                scored = frame[good]
                out = pd.DataFrame({ROW_COLUMN: scored.index})
                for column in keep:
                    out[column] = chunk.loc[good, column].to_numpy()
                if len(scored):
                    if classifier:
                        matrix = model.pipeline.predict_proba(scored)
                        out[PREDICTION_COLUMN] = model.pipeline.classes_[matrix.argmax(axis=1)]
                        for index, label in enumerate(classes):
                            out[f"probability_{label}"] = matrix[:, index]
                    else:
                        out[PREDICTION_COLUMN] = model.pipeline.predict(scored)
                    writer.write(out)
                summary.rows += len(chunk)
                summary.scored += len(scored)
                summary.bad_rows += int((~good).sum())
                bar.update(len(chunk))
        except (pd.errors.ParserError, pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise ScoreError(f"{source}: cannot read: {exc}") from exc
        finally:
            writer.close()
    return summary
