"""What runs in the executors' Python processes: the model, loaded once, and batch scoring.

The model arrives as a file shipped with the job (`SparkContext.addFile`), not through
BentoML's model store: executors need neither the store nor its disk. Each Python worker
loads it on its first batch and keeps it in a module global; Spark reuses its Python
workers across tasks, so there is one load per executor Python process.

Batches carry the input's columns and three of ours: the file a row came from, its 1-based
position in that file, and (CSV) the raw text of a row with the wrong number of fields.
Each batch goes through `train.score.check_chunk`, the local scorer's checks, and
`train.score.scored_table`, its outputs; good rows and problems leave as one table whose
`problem` column is null for scored rows.
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from model.outputs import PREDICTION_COLUMN, probability_column
from model.store import LoadedModel
from train.score import ROW_COLUMN, _thread_pools, check_chunk, scored_table

FILE_COLUMN = "_file"
POSITION_COLUMN = "_position"
RAGGED_COLUMN = "_ragged_record"
PROBLEM_COLUMN = "problem"
PROBLEM_AT_COLUMN = "column"

_loaded: dict[str, LoadedModel] = {}
_loading = threading.Lock()
loads = 0  # models loaded by this process: one per model file


@dataclass(frozen=True)
class BatchPlan:
    """What the executors need to know, shipped with the function: small and picklable."""

    model_file: str  # the name given to SparkContext.addFile, or a local path
    keep: tuple[str, ...]
    output_schema: pa.Schema  # of the tables `score_table` returns
    csv_fields: int = 0  # fields in a CSV header; 0 for Parquet


def model_output_types(model: LoadedModel) -> list[tuple[str, pa.DataType]]:
    """The prediction and probability columns `scored_table` writes for this model."""
    if model.schema.task != "classification":
        return [(PREDICTION_COLUMN, pa.float64())]
    classes = model.pipeline.classes_
    label_type = pa.string() if classes.dtype == object else pa.from_numpy_dtype(classes.dtype)
    probabilities = [(probability_column(str(c)), pa.float64()) for c in classes]
    return [(PREDICTION_COLUMN, label_type), *probabilities]


def output_schema(model: LoadedModel, kept: Iterable[pa.Field]) -> pa.Schema:
    """row, the kept columns, the model's outputs, then the file, column and problem."""
    return pa.schema(
        [
            pa.field(ROW_COLUMN, pa.int64()),
            *kept,
            *model_output_types(model),
            pa.field(FILE_COLUMN, pa.string()),
            pa.field(PROBLEM_AT_COLUMN, pa.string()),
            pa.field(PROBLEM_COLUMN, pa.string()),
        ]
    )


def cached_model(model_file: str) -> LoadedModel:
    """The shipped model, loaded once per process."""
    global loads
    with _loading:
        if model_file not in _loaded:
            import joblib

            _loaded[model_file] = joblib.load(_local_path(model_file))
            loads += 1
        return _loaded[model_file]


def _local_path(model_file: str) -> str:
    from pathlib import Path

    if Path(model_file).is_file():
        return model_file
    from pyspark import SparkFiles

    return SparkFiles.get(model_file)


def score_arrow_batches(
    batches: Iterator[pa.RecordBatch], plan: BatchPlan
) -> Iterator[pa.RecordBatch]:
    """The function given to `mapInArrow`."""
    model = cached_model(plan.model_file)
    # one BLAS thread: Spark runs one Python worker per core
    with _thread_pools().limit(limits=1, user_api="blas"):
        for batch in batches:
            if batch.num_rows:
                yield from score_table(model, pa.Table.from_batches([batch]), plan).to_batches()


def score_pandas_batches(frames: Iterator[pd.DataFrame], plan: BatchPlan) -> Iterator[pd.DataFrame]:
    """The function given to `mapInPandas`: the same, through pandas frames."""
    model = cached_model(plan.model_file)
    with _thread_pools().limit(limits=1, user_api="blas"):
        for frame in frames:
            if len(frame):
                table = pa.Table.from_pandas(frame, preserve_index=False)
                yield score_table(model, table, plan).to_pandas()


def score_table(model: LoadedModel, table: pa.Table, plan: BatchPlan) -> pa.Table:
    """Scored rows and problems of one batch, as `plan.output_schema`."""
    positions = table.column(POSITION_COLUMN).to_numpy()
    files = table.column(FILE_COLUMN)
    index = np.arange(table.num_rows)
    chunk = check_chunk(table, model.schema, index, plan.keep)
    problems = chunk.problems
    if RAGGED_COLUMN in table.column_names:
        ragged = table.column(RAGGED_COLUMN)
        is_ragged = pc.is_valid(ragged).to_numpy(zero_copy_only=False)
        if is_ragged.any():
            chunk.good &= ~is_ragged
            problems = sorted(
                [p for p in problems if not is_ragged[p[0]]]
                + [
                    (int(i), "", _field_count_problem(ragged[int(i)].as_py(), plan.csv_fields))
                    for i in np.flatnonzero(is_ragged)
                ]
            )
    parts = []
    if chunk.scored:
        scored = scored_table(model, chunk)
        good = scored.column(ROW_COLUMN).to_numpy()
        scored = scored.set_column(0, ROW_COLUMN, pa.array(positions[good], pa.int64()))
        parts.append(scored.append_column(FILE_COLUMN, files.take(good)))
    if problems:
        at = np.array([row for row, _, _ in problems], dtype=np.int64)
        parts.append(
            pa.table(
                {
                    ROW_COLUMN: pa.array(positions[at], pa.int64()),
                    FILE_COLUMN: files.take(at),
                    PROBLEM_AT_COLUMN: [column or None for _, column, _ in problems],
                    PROBLEM_COLUMN: [problem for _, _, problem in problems],
                }
            )
        )
    return _as_schema(parts, plan.output_schema)


def _as_schema(parts: list[pa.Table], schema: pa.Schema) -> pa.Table:
    columns = []
    for field in schema:
        pieces = [
            part.column(field.name).cast(field.type)
            if field.name in part.column_names
            else pa.nulls(part.num_rows, field.type)
            for part in parts
        ]
        columns.append(pa.chunked_array(pieces, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema).combine_chunks()


def _field_count_problem(line: str, expected: int) -> str:
    found = len(next(csv.reader([line]), []))
    return f"expected {expected} fields, found {found}"


def number_rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Each row's 1-based position in its file, for a partition holding whole files in order.

    Spark reads a file that is not split in one task, in file order: counting rows per file
    through the partition numbers them as the file does.
    """
    counted: dict[str, int] = {}
    for batch in batches:
        names = np.asarray(batch.column(FILE_COLUMN).to_pylist(), dtype=object)
        positions = np.empty(len(names), dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, names[1:] != names[:-1]]) if len(names) else []
        for start, end in zip(starts, [*starts[1:], len(names)][: len(starts)], strict=True):
            before = counted.get(names[start], 0)
            positions[start:end] = np.arange(before + 1, before + 1 + end - start)
            counted[names[start]] = before + end - start
        yield batch.append_column(POSITION_COLUMN, pa.array(positions))
