"""Offline batch scoring: a CSV or Parquet file in, predictions out, in bounded memory.

The input is read with Arrow in chunks, each chunk is checked against the model's schema
with vectorised checks (the same rules as the API: numbers finite and within ±1e15,
categories as text, null allowed), good rows are predicted in one call, and bad rows are
written to an errors file with their row number, column and problem, never dropped
silently.

Reading and checking the next chunk (text columns in two threads), and writing the
previous one, run in background threads while the model predicts the current chunk: Arrow
and numpy release the GIL, so on two cores most of the I/O hides behind the prediction.
The ONNX model reads the checked arrays without a pandas frame, in slices of a few thousand
rows that run on every core at once (onnxruntime releases the GIL too); scikit-learn reads
a frame built in the checking thread. At most three chunks are in memory at once.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import logging
import os
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from threadpoolctl import ThreadpoolController
from tqdm import tqdm

from model import tables, values
from model.outputs import PREDICTION_COLUMN, Outputs
from model.schema import Feature, FeatureSchema
from model.store import LoadedModel

logger = logging.getLogger(__name__)

ROW_COLUMN = "row"
CSV_BLOCK_BYTES = 1 << 20

Item = TypeVar("Item")


class ScoreError(ValueError):
    """The input cannot be scored at all (unreadable, columns missing); says why."""


@dataclass
class ScoreSummary:
    rows: int = 0
    scored: int = 0
    bad_rows: int = 0


@dataclass
class CheckedChunk:
    """One chunk of the input after the checks; rows are numbered from 1 over the file."""

    row_numbers: np.ndarray  # of the rows in `columns`
    # every readable row of the chunk as the model's input, one array per feature in schema
    # order: float64 with NaN for a gap, or objects with None
    columns: dict[str, np.ndarray]
    good: np.ndarray  # rows that passed every check
    problems: list[tuple[int, str, str]]  # (row, column, problem), sorted
    kept: pa.Table  # the --keep columns, every readable row
    unreadable: int = 0  # rows with the wrong number of fields (CSV), among `problems`
    _frame: pd.DataFrame | None = dataclasses.field(default=None, repr=False)

    @property
    def features(self) -> pd.DataFrame:
        """The columns as the model's input frame (scikit-learn's), built once."""
        if self._frame is None:
            self._frame = pd.DataFrame(self.columns, columns=list(self.columns))
        return self._frame

    @property
    def rows(self) -> int:
        return len(self.good) + self.unreadable

    @property
    def scored(self) -> int:
        return int(np.count_nonzero(self.good))

    @classmethod
    def of_unreadable(cls, schema: FeatureSchema, rows: list[tuple[int, str]]) -> CheckedChunk:
        """A chunk of nothing but rows that could not be read."""
        empty = {name: np.zeros(0, dtype=object) for name in schema.names}
        chunk = cls(np.zeros(0, dtype=np.int64), empty, np.zeros(0, dtype=bool), [], pa.table({}))
        chunk.add_unreadable(rows)
        return chunk

    def add_unreadable(self, rows: list[tuple[int, str]]) -> None:
        self.unreadable += len(rows)
        self.problems = sorted(self.problems + [(row, "", problem) for row, problem in rows])


class _RaggedRows:
    """CSV rows with the wrong number of fields: the reader skips them, they are reported.

    Arrow gives their line numbers only when it parses in one thread.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[int, str]] = []  # (row, problem), in file order
        self._read = 0  # readable rows numbered so far
        self._reported = 0  # skipped rows before the last numbered one

    def __call__(self, row: pcsv.InvalidRow) -> str:
        problem = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        self._pending.append((row.number - 1, problem))  # the header is line 1
        return "skip"

    def next_rows(self, count: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """Row numbers of the next `count` readable rows, and the skipped rows up to the last."""
        read = np.arange(self._read + 1, self._read + count + 1)
        skipped = np.array([row for row, _ in self._pending], dtype=np.int64)
        readable_before_each = skipped - self._reported - np.arange(len(skipped))
        numbers = read + self._reported + np.searchsorted(readable_before_each, read, "right")
        self._read += count
        return numbers, self.take_through(numbers[-1] if count else 0)

    def take_through(self, last_row: float) -> list[tuple[int, str]]:
        taken = [item for item in self._pending if item[0] <= last_row]
        self._pending = self._pending[len(taken) :]
        self._reported += len(taken)
        return taken


def _file_type(path: Path) -> tables.FileType:
    try:
        return tables.file_type(path)
    except tables.TableError as exc:
        raise ScoreError(str(exc)) from None


def _column_names(path: Path) -> list[str]:
    if _file_type(path) == "parquet":
        return list(pq.ParquetFile(path).schema_arrow.names)
    with (
        pa.input_stream(str(path), compression="detect") as raw,
        io.TextIOWrapper(raw, newline="", encoding="utf-8-sig") as file,
    ):
        return next(csv.reader(file), [])


def _batches(
    path: Path, column_types: dict[str, pa.DataType], rows: int, ragged: _RaggedRows
) -> Iterator[pa.RecordBatch]:
    """Batches of the columns in `column_types`; a CSV file's are read as those types."""
    columns = list(column_types)
    if _file_type(path) == "parquet":
        parquet = pq.ParquetFile(path, pre_buffer=False)  # pre-buffering holds the whole file
        yield from parquet.iter_batches(batch_size=rows, columns=columns)
        return
    convert = pcsv.ConvertOptions(
        include_columns=columns,
        column_types=column_types,
        null_values=list(values.MISSING_TEXTS),
        strings_can_be_null=True,
    )
    read = pcsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False)
    parse = pcsv.ParseOptions(invalid_row_handler=ragged)
    yield from pcsv.open_csv(path, read_options=read, parse_options=parse,
                             convert_options=convert)  # fmt: skip


def _rechunked(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Tables of exactly `rows` rows (the last one: what is left)."""
    waiting: list[pa.RecordBatch] = []
    waiting_rows = 0
    for batch in batches:
        waiting.append(batch)
        waiting_rows += batch.num_rows
        if waiting_rows < rows:
            continue
        table = pa.Table.from_batches(waiting)
        start = 0
        while waiting_rows - start >= rows:
            yield table.slice(start, rows)
            start += rows
        waiting = table.slice(start).to_batches()
        waiting_rows -= start
    if waiting_rows:
        yield pa.Table.from_batches(waiting)


def check_chunk(
    chunk: pa.Table,
    schema: FeatureSchema,
    row_numbers: np.ndarray,
    keep: tuple[str, ...] = (),
    pool: Executor | None = None,
    *,
    frame: bool = False,
) -> CheckedChunk:
    """The chunk as model input, which rows are good, and (row, column, problem) for bad ones.

    With a `pool`, columns are checked in its threads when some need parsing (parsing
    numbers from text releases the GIL). With `frame`, the pandas frame scikit-learn reads
    is built now, in this thread, rather than when first asked for.
    """
    columns: dict[str, np.ndarray] = {}
    good = np.ones(chunk.num_rows, dtype=bool)
    problems: list[tuple[int, str, str]] = []
    checked = (pool.map if pool and _needs_parsing(chunk, schema) else map)(
        lambda feature: _checked_column(chunk.column(feature.name), feature), schema.features
    )
    for feature, (column_values, found) in zip(schema.features, checked, strict=True):
        columns[feature.name] = column_values
        for index, problem in found:
            good[index] = False
            problems.append((int(row_numbers[index]), feature.name, problem))
    return CheckedChunk(
        row_numbers=row_numbers,
        columns=columns,
        good=good,
        problems=sorted(problems),
        kept=chunk.select(list(keep)),
        _frame=pd.DataFrame(columns, columns=schema.names) if frame else None,
    )


def _needs_parsing(chunk: pa.Table, schema: FeatureSchema) -> bool:
    """Whether a feature column holds more than numbers (text, most often): parsing is worth
    a thread; checking stored numbers takes less than handing columns to threads."""
    numbers = (pa.types.is_integer, pa.types.is_floating)
    return not all(
        any(is_number(chunk.schema.field(name).type) for is_number in numbers)
        for name in schema.names
    )


def _checked_column(
    column: pa.ChunkedArray, feature: Feature
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """The column as the model's input, and (index, problem) for every value refused."""
    check = values.number_column if feature.kind == "numeric" else values.category_column
    checked = check(column, max_problems=len(column))
    return checked.values, [(problem.row, problem.message) for problem in checked.problems]


def _checked_chunks(
    source: Path, schema: FeatureSchema, keep: tuple[str, ...], rows: int, *, frame: bool = False
) -> Iterator[CheckedChunk]:
    names = _column_names(source)
    missing = [name for name in schema.names if name not in names]
    if missing:
        raise ScoreError(f"columns missing from the input: {missing}")
    missing_keep = [name for name in keep if name not in names]
    if missing_keep:
        raise ScoreError(f"--keep columns not in the input: {missing_keep}")
    ragged = _RaggedRows()
    tables = _rechunked(_batches(source, _csv_types(schema, keep), rows, ragged), rows)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="score-check") as pool:
        for table in tables:
            row_numbers, unreadable = ragged.next_rows(table.num_rows)
            chunk = check_chunk(table, schema, row_numbers, keep, pool, frame=frame)
            chunk.add_unreadable(unreadable)
            yield chunk
    unreadable_at_the_end = ragged.take_through(np.inf)
    if unreadable_at_the_end:
        yield CheckedChunk.of_unreadable(schema, unreadable_at_the_end)


def _csv_types(schema: FeatureSchema, keep: tuple[str, ...]) -> dict[str, pa.DataType]:
    """Every column as text, as pandas read it with dtype=str.

    Numeric features are read as bytes: Arrow parses them as numbers without checking
    UTF-8 first.
    """
    types: dict[str, pa.DataType] = {name: pa.string() for name in [*schema.names, *keep]}
    for name in schema.numeric:
        if name not in keep:
            types[name] = pa.binary()
    return types


def _read_ahead(items: Iterator[Item]) -> Iterator[Item]:
    """`items`, with the next one produced in a background thread while this one is used."""
    end = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-reader") as pool:
        pending = pool.submit(next, items, end)
        while (item := pending.result()) is not end:
            pending = pool.submit(next, items, end)
            yield item


def scored_table(model: LoadedModel, chunk: CheckedChunk, pool: Executor | None = None) -> pa.Table:
    """Row numbers, kept columns, prediction and class probabilities of the good rows.

    The ONNX model reads the checked arrays as they are (no pandas frame), in the threads
    of `pool` if given; scikit-learn reads the frame.
    """
    all_good = bool(chunk.good.all())
    kept = chunk.kept if all_good else chunk.kept.filter(pa.array(chunk.good))
    columns: dict[str, Any] = {
        ROW_COLUMN: chunk.row_numbers if all_good else chunk.row_numbers[chunk.good]
    }
    columns.update(zip(kept.column_names, kept.columns, strict=True))
    columns.update(_good_rows_outputs(model, chunk, all_good, pool).columns())
    return pa.table(columns)


def _good_rows_outputs(
    model: LoadedModel, chunk: CheckedChunk, all_good: bool, pool: Executor | None
) -> Outputs:
    if model.compiled is None:
        return model.outputs(chunk.features if all_good else chunk.features[chunk.good])
    columns = chunk.columns
    if not all_good:
        columns = {name: values[chunk.good] for name, values in columns.items()}
    return model.compiled.outputs_from_columns(columns, pool=pool)


class _Writer:
    """Writes scored tables to CSV or Parquet, in order, in a background thread."""

    def __init__(self, path: Path) -> None:
        try:
            self.file_type = _file_type(path)
        except ScoreError:
            raise ScoreError(f"{path}: unsupported output type (use .csv or .parquet)") from None
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-writer")
        self._pending: Future[None] | None = None
        self._file: pq.ParquetWriter | pcsv.CSVWriter | None = None

    def write(self, table: pa.Table) -> None:
        self._wait()  # one table in flight at most: memory stays bounded
        self._pending = self._pool.submit(self._write_now, table)

    def close(self) -> None:
        try:
            self._wait()
            if self._file is None:  # nothing written: still leave a valid, empty output
                empty = pa.schema([(ROW_COLUMN, pa.int64()), (PREDICTION_COLUMN, pa.null())])
                self._file = self._open(empty)
            self._file.close()
        finally:
            self._pool.shutdown()

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def _write_now(self, table: pa.Table) -> None:
        if self.file_type == "csv":
            table = _booleans_as_python_text(table)
        if self._file is None:
            self._file = self._open(table.schema)
        self._file.write_table(table)

    def _open(self, schema: pa.Schema) -> pq.ParquetWriter | pcsv.CSVWriter:
        if self.file_type == "csv":
            return pcsv.CSVWriter(self.path, schema)
        return pq.ParquetWriter(self.path, schema, use_dictionary=_dictionary_columns(schema))


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary encoding: labels and text, not row numbers nor floats.

    Encoding distinct numbers costs about twice the rest of the write, for a larger file.
    """
    return [
        field.name
        for field in schema
        if field.name != ROW_COLUMN and not pa.types.is_floating(field.type)
    ]


def _booleans_as_python_text(table: pa.Table) -> pa.Table:
    """True/False rather than Arrow's true/false, so labels match `probability_True`."""
    for index, field in enumerate(table.schema):
        if pa.types.is_boolean(field.type):
            text = pc.if_else(table.column(index), "True", "False")
            table = table.set_column(index, field.name, text)
    return table


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
    """Score `source` into `target`; bad rows go to `errors` (CSV: row, column, problem).

    `row` in both outputs is the 1-based data row (for a CSV file, line `row + 1`).
    """
    if not source.is_file():
        raise ScoreError(f"{source}: no such file")
    _file_type(source)
    summary = ScoreSummary()
    writer = _Writer(target)
    with (
        # one BLAS thread: the model's small products gain little from a second one, and
        # it would spin on the core that reads and writes
        _thread_pools().limit(limits=1, user_api="blas"),
        # the ONNX model's slices of a chunk, one per core at once
        ThreadPoolExecutor(_usable_cores(), thread_name_prefix="score-predict") as predict_pool,
        errors.open("w", newline="") as error_file,
        tqdm(total=_total_rows(source), unit="rows", disable=not progress, desc="scoring") as bar,
    ):
        error_csv = csv.writer(error_file)
        error_csv.writerow([ROW_COLUMN, "column", "problem"])
        try:
            # scikit-learn reads a frame: built in the checking thread, off the model's
            chunks = _checked_chunks(
                source, model.schema, keep, chunk_rows, frame=model.compiled is None
            )
            for chunk in _read_ahead(chunks):
                error_csv.writerows(chunk.problems)
                scored = chunk.scored
                if scored:
                    writer.write(scored_table(model, chunk, predict_pool))
                summary.rows += chunk.rows
                summary.scored += scored
                summary.bad_rows += chunk.rows - scored
                bar.update(chunk.rows)
        except (pa.ArrowInvalid, UnicodeDecodeError, csv.Error) as exc:
            raise ScoreError(f"{source}: cannot read: {exc}") from exc
        finally:
            writer.close()
    return summary


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@functools.cache
def _thread_pools() -> ThreadpoolController:
    """The loaded native thread pools; finding them takes tens of milliseconds."""
    return ThreadpoolController()


def _total_rows(path: Path) -> int | None:
    if _file_type(path) == "parquet":
        try:
            return pq.ParquetFile(path).metadata.num_rows
        except pa.ArrowInvalid as exc:
            raise ScoreError(f"{path}: cannot read: {exc}") from exc
    return None
