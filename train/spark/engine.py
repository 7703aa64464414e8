"""The Spark engine's driver: find the input, plan the partitions, score, write both datasets.

Row ids are the local scorer's: the 1-based data row of the file. An input of several
files is numbered as if its files, in path order, were one: a file's rows follow those of
the files before it. A Parquet row's position comes from the reader (`_metadata.row_index`);
a CSV file is read whole by one task (never split) and its rows counted in order. Ids
therefore depend neither on the partitioning nor on the run.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from model import tables
from model.store import LoadedModel
from train.score import ROW_COLUMN, ScoreError, ScoreSummary

from . import executor
from .executor import (
    FILE_COLUMN,
    POSITION_COLUMN,
    PROBLEM_AT_COLUMN,
    PROBLEM_COLUMN,
    RAGGED_COLUMN,
    BatchPlan,
)
from .session import runtime_conf, spark_session

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

logger = logging.getLogger(__name__)

# Input bytes per partition when --partitions is not given: large enough that a task
# outlasts its scheduling, small enough that a cluster's cores all get work.
PARTITION_BYTES = 64 * 2**20
UDF_KINDS = ("arrow", "pandas")


@dataclass(frozen=True)
class InputFiles:
    """The data files behind an input path, directory or glob, in path order."""

    kind: tables.FileType
    files: list[str]
    sizes: list[int]

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes)


def list_input(spark: SparkSession, source: str) -> InputFiles:
    """Data files of `source` through Hadoop's file systems: any URI Spark reads."""
    jvm = spark._jvm  # type: ignore[attr-defined]
    hadoop_conf = spark._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
    pattern = jvm.org.apache.hadoop.fs.Path(source)
    filesystem = pattern.getFileSystem(hadoop_conf)
    found: dict[str, int] = {}
    for status in filesystem.globStatus(pattern) or []:
        if not status.isDirectory():
            found[status.getPath().toString()] = status.getLen()
            continue
        listing = filesystem.listFiles(status.getPath(), True)
        root = status.getPath().toString()
        while listing.hasNext():
            child = listing.next()
            name = child.getPath().toString()
            if not _hidden(name[len(root) :]):
                found[name] = child.getLen()
    if not found:
        raise ScoreError(f"{source}: no such file, or no data file in it")
    kinds = {}
    for name in found:
        try:
            kinds[name] = tables.file_type(Path(name.rsplit("/", 1)[-1]))
        except tables.TableError as exc:
            raise ScoreError(str(exc)) from None
    if len(set(kinds.values())) > 1:
        raise ScoreError(f"{source}: holds both CSV and Parquet files; score them apart")
    files = sorted(found)
    return InputFiles(next(iter(kinds.values())), files, [found[name] for name in files])


def _hidden(relative: str) -> bool:
    """Spark's rule: names starting with `_` or `.` are not data (_SUCCESS, .crc files)."""
    return any(part.startswith(("_", ".")) for part in relative.split("/") if part)


def partitions_for(spark: SparkSession, inputs: InputFiles, wanted: int | None) -> int:
    """`wanted`, else one per PARTITION_BYTES of input, and at least one per core."""
    if wanted is not None:
        if wanted < 1:
            raise ScoreError("--partitions must be at least 1")
        return wanted
    by_size = math.ceil(inputs.total_bytes / PARTITION_BYTES)
    return max(by_size, spark.sparkContext.defaultParallelism, 1)


def _column(name: str) -> Column:
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _check_columns(names: list[str], model: LoadedModel, keep: tuple[str, ...]) -> None:
    """The local scorer's checks, with its messages."""
    missing = [name for name in model.schema.names if name not in names]
    if missing:
        raise ScoreError(f"columns missing from the input: {missing}")
    missing_keep = [name for name in keep if name not in names]
    if missing_keep:
        raise ScoreError(f"--keep columns not in the input: {missing_keep}")


def read_parquet(
    spark: SparkSession, source: str, model: LoadedModel, keep: tuple[str, ...]
) -> DataFrame:
    from pyspark.sql import functions as F

    frame = spark.read.parquet(source)
    _check_columns(frame.columns, model, keep)
    needed = dict.fromkeys([*model.schema.names, *keep])
    return frame.select(
        *[_column(name) for name in needed],
        F.col("_metadata.file_path").alias(FILE_COLUMN),
        (F.col("_metadata.row_index") + 1).alias(POSITION_COLUMN),
    )


CSV_OPTIONS = {
    "header": "true",
    "escape": '"',  # a quote inside a quoted field is doubled, as pandas and Arrow write it
    "mode": "PERMISSIVE",
    "enforceSchema": "false",  # every file's header must name the columns of the first's
    "columnNameOfCorruptRecord": RAGGED_COLUMN,
}


def read_csv(
    spark: SparkSession, source: str, model: LoadedModel, keep: tuple[str, ...]
) -> tuple[DataFrame, int]:
    """Every column as text, as the local scorer reads it; and the number of fields."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    header = spark.read.options(header="true", escape='"').csv(source).columns
    _check_columns(header, model, keep)
    text = StructType([StructField(name, StringType()) for name in header])
    frame = (
        spark.read.schema(StructType([*text.fields, StructField(RAGGED_COLUMN, StringType())]))
        .options(**CSV_OPTIONS)
        .csv(source)
    )
    needed = dict.fromkeys([*model.schema.names, *keep])
    frame = frame.select(
        *[_column(name) for name in needed],
        _column(RAGGED_COLUMN),
        F.col("_metadata.file_path").alias(FILE_COLUMN),
    )
    numbered = StructType([*frame.schema.fields, StructField(POSITION_COLUMN, LongType(), False)])
    return frame.mapInArrow(executor.number_rows, numbered), len(header)


def _csv_unsplit_conf(inputs: InputFiles) -> dict[str, str]:
    """Each CSV file in one task: Spark splits files larger than either setting."""
    whole = str(max(inputs.sizes) + 1)
    return {"spark.sql.files.maxPartitionBytes": whole, "spark.sql.files.openCostInBytes": whole}


def _parquet_split_conf(inputs: InputFiles, partitions: int) -> dict[str, str]:
    """Splits (of whole row groups) of about the share of bytes of each partition."""
    share = max(math.ceil(inputs.total_bytes / partitions), 1 << 20)
    return {"spark.sql.files.maxPartitionBytes": str(share)}


def job_conf(chunk_rows: int) -> dict[str, str]:
    return {
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(chunk_rows),
        # plain string columns: what the checks and `scored_table` produce
        "spark.sql.execution.arrow.useLargeVarTypes": "false",
        # a CSV row with the wrong number of fields is only seen when all fields are parsed
        "spark.sql.csv.parser.columnPruning.enabled": "false",
    }


def _ship_model(spark: SparkSession, model: LoadedModel, work: Path) -> str:
    """Write the model (pipeline, schema, metadata) to one file and ship it with the job."""
    import joblib

    name = f"model-{model.tag.replace(':', '-')}-{uuid.uuid4().hex[:8]}.joblib"
    joblib.dump(model, work / name)
    spark.sparkContext.addFile(str(work / name))
    return name


def score_on_spark(
    spark: SparkSession,
    model: LoadedModel,
    source: str,
    target: str,
    errors: str,
    *,
    keep: tuple[str, ...] = (),
    partitions: int | None = None,
    chunk_rows: int = 50_000,
    udf: str = "arrow",
) -> ScoreSummary:
    """Score `source` (a path, directory, glob or URI) into `target`; bad rows to `errors`.

    Both are written as Spark writes datasets: directories of part files, in the format
    of their suffix (`target`: .csv or .parquet; `errors`: CSV with `row,column,problem`).
    """
    if udf not in UDF_KINDS:
        raise ValueError(f"udf must be one of {UDF_KINDS}, not {udf!r}")
    output_type = _output_type(target)
    inputs = list_input(spark, source)
    wanted = partitions_for(spark, inputs, partitions)
    split = (
        _csv_unsplit_conf(inputs) if inputs.kind == "csv" else _parquet_split_conf(inputs, wanted)
    )
    work = Path(tempfile.mkdtemp(prefix="spark-score-"))
    try:
        with runtime_conf(spark, {**job_conf(chunk_rows), **split}):
            model_file = _ship_model(spark, model, work)
            scored = _scored(spark, model, source, inputs, keep, wanted, model_file, udf)
            return _write(spark, scored, model, keep, target, output_type, errors)
    except Exception as exc:
        if isinstance(exc, ScoreError) or not _from_spark(exc):
            raise
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ScoreError(f"{source}: cannot score on Spark: {first_line}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _from_spark(exc: Exception) -> bool:
    """Spark's own errors (analysis, failed jobs) and the JVM's, through py4j."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    return isinstance(exc, PySparkException | Py4JJavaError)


def _output_type(target: str) -> tables.FileType:
    try:
        return tables.file_type(Path(target.rstrip("/").rsplit("/", 1)[-1]))
    except tables.TableError:
        raise ScoreError(f"{target}: unsupported output type (use .csv or .parquet)") from None


def _scored(
    spark: SparkSession,
    model: LoadedModel,
    source: str,
    inputs: InputFiles,
    keep: tuple[str, ...],
    partitions: int,
    model_file: str,
    udf: str,
) -> DataFrame:
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_type

    csv_fields = 0
    if inputs.kind == "csv":
        frame, csv_fields = read_csv(spark, source, model, keep)
    else:
        frame = read_parquet(spark, source, model, keep)
    read_partitions = frame.rdd.getNumPartitions()
    if read_partitions < partitions:
        frame = frame.repartition(partitions)
    elif read_partitions > partitions:
        frame = frame.coalesce(partitions)  # no shuffle: tasks take several splits each
    kept = [pa.field(name, to_arrow_type(frame.schema[name].dataType)) for name in keep]
    schema = executor.output_schema(model, kept)
    plan = BatchPlan(model_file, keep, schema, csv_fields)
    if udf == "pandas":
        function = functools.partial(executor.score_pandas_batches, plan=plan)
        return frame.mapInPandas(function, from_arrow_schema(schema))
    function = functools.partial(executor.score_arrow_batches, plan=plan)
    return frame.mapInArrow(function, from_arrow_schema(schema))


def _write(
    spark: SparkSession,
    scored: DataFrame,
    model: LoadedModel,
    keep: tuple[str, ...],
    target: str,
    output_type: tables.FileType,
    errors: str,
) -> ScoreSummary:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        is_scored = F.col(PROBLEM_COLUMN).isNull()
        per_file = (
            scored.groupBy(FILE_COLUMN)
            .agg(
                F.max(ROW_COLUMN).alias("rows"),
                F.sum(F.when(is_scored, 1).otherwise(0)).alias("scored"),
            )
            .collect()
        )
        per_file.sort(key=lambda found: found[FILE_COLUMN])
        rows = [int(found["rows"]) for found in per_file]
        summary = ScoreSummary(rows=sum(rows), scored=sum(int(f["scored"]) for f in per_file))
        summary.bad_rows = summary.rows - summary.scored
        numbered = _with_row_ids(spark, scored, [f[FILE_COLUMN] for f in per_file], rows)
        outputs = [name for name, _ in executor.model_output_types(model)]
        out = numbered.filter(is_scored).select(
            _column(ROW_COLUMN), *[_column(name) for name in [*keep, *outputs]]
        )
        if output_type == "csv":
            _booleans_as_python_text(out).write.csv(target, header=True, mode="overwrite")
        else:
            out.write.parquet(target, mode="overwrite")
        problems = numbered.filter(~is_scored).select(ROW_COLUMN, PROBLEM_AT_COLUMN, PROBLEM_COLUMN)
        (
            problems.repartition(1)  # one small file, in the local scorer's order
            .sortWithinPartitions(ROW_COLUMN, PROBLEM_AT_COLUMN, PROBLEM_COLUMN)
            .write.csv(errors, header=True, mode="overwrite")
        )
        return summary
    finally:
        scored.unpersist()


def _with_row_ids(
    spark: SparkSession, scored: DataFrame, files: list[str], rows: list[int]
) -> DataFrame:
    """Rows numbered across files, in path order: a file's ids follow the previous file's."""
    from pyspark.sql import functions as F

    if len(files) <= 1:
        return scored
    offsets = spark.createDataFrame(
        list(zip(files, itertools.accumulate([0, *rows[:-1]]), strict=True)),
        f"{FILE_COLUMN} string, offset long",
    )
    return scored.join(F.broadcast(offsets), FILE_COLUMN).withColumn(
        ROW_COLUMN, F.col(ROW_COLUMN) + F.col("offset")
    )


def _booleans_as_python_text(frame: DataFrame) -> DataFrame:
    """True/False rather than Spark's true/false, as the local scorer writes CSV."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType

    return frame.select(
        *[
            F.when(_column(f.name), "True").when(~_column(f.name), "False").alias(f.name)
            if isinstance(f.dataType, BooleanType)
            else _column(f.name)
            for f in frame.schema.fields
        ]
    )


def run(
    model: LoadedModel,
    source: str,
    target: str,
    errors: str,
    *,
    master: str | None = None,
    keep: tuple[str, ...] = (),
    partitions: int | None = None,
    chunk_rows: int = 50_000,
    progress: bool = True,
) -> ScoreSummary:
    """`score_on_spark` in the active session, else one of its own, stopped at the end."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    quiet = {} if progress else {"spark.ui.showConsoleProgress": "false"}
    spark = active or spark_session(master, quiet)
    try:
        return score_on_spark(spark, model, source, target, errors, keep=keep,
                              partitions=partitions, chunk_rows=chunk_rows)  # fmt: skip
    finally:
        if active is None:
            spark.stop()
