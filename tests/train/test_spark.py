"""The Spark engine's executor side and command line, without starting a JVM."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from model import store
from train.__main__ import build_parser
from train.data import load_default
from train.score import check_chunk, scored_table
from train.spark import executor
from train.spark.engine import _hidden, _output_type
from train.spark.executor import FILE_COLUMN, POSITION_COLUMN, RAGGED_COLUMN, BatchPlan
from train.spark.session import under_spark_submit
from train.training import TrainConfig, train

from .test_score import scored_in_a_process

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cancer_model() -> store.LoadedModel:
    features, target = load_default()
    return store.load(train(features, target, TrainConfig(name="spark-unit")).tag)


def batch_of(model: store.LoadedModel, rows: int = 6) -> pa.Table:
    """Rows of two files, at positions 10.. and 1.., with an id and a ragged-record column."""
    features, _ = load_default()
    table = (
        features.iloc[:rows].astype({"mean radius": str}).assign(id=[f"r{i}" for i in range(rows)])
    )
    table.loc[1, "mean radius"] = "abc"
    table.loc[2, "worst area"] = np.inf
    table[FILE_COLUMN] = ["a.csv"] * 3 + ["b.csv"] * (rows - 3)
    table[POSITION_COLUMN] = [10, 11, 12, *range(1, rows - 2)]
    table[RAGGED_COLUMN] = [*[None] * (rows - 1), "1,2"]
    return pa.Table.from_pandas(table, preserve_index=False)


def plan_for(model: store.LoadedModel, model_file: str = "unused") -> BatchPlan:
    kept = [pa.field("id", pa.string())]
    return BatchPlan(model_file, ("id",), executor.output_schema(model, kept), csv_fields=31)


def test_a_batch_gives_the_local_scorers_rows_and_problems_at_file_positions(cancer_model):
    table = batch_of(cancer_model)
    out = executor.score_table(cancer_model, table, plan_for(cancer_model))
    assert out.schema == plan_for(cancer_model).output_schema
    frame = out.to_pandas()
    scored = frame[frame["problem"].isna()]
    problems = frame[frame["problem"].notna()]
    assert list(zip(scored["_file"], scored["row"], strict=True)) == [("a.csv", 10), ("b.csv", 1),
                                                                       ("b.csv", 2)]  # fmt: skip
    assert problems[["_file", "row", "column", "problem"]].values.tolist() == [
        ["a.csv", 11, "mean radius", "not a number: 'abc'"],
        ["a.csv", 12, "worst area", "not finite"],
        ["b.csv", 3, None, "expected 31 fields, found 2"],
    ]
    local = check_chunk(table, cancer_model.schema, np.arange(6), ("id",))
    local.good[5] = False
    expected = scored_table(cancer_model, local).to_pandas()
    np.testing.assert_array_equal(scored["probability_1"], expected["probability_1"])
    assert scored["id"].tolist() == ["r0", "r3", "r4"]


def test_rows_are_numbered_per_file_across_batches():
    batches = [
        pa.record_batch({FILE_COLUMN: ["a", "a", "b"]}),
        pa.record_batch({FILE_COLUMN: ["b", "b"]}),
        pa.record_batch({FILE_COLUMN: pa.array([], pa.string())}),
        pa.record_batch({FILE_COLUMN: ["c", "c"]}),
    ]
    numbered = pa.Table.from_batches(list(executor.number_rows(iter(batches))))
    assert numbered.column(POSITION_COLUMN).to_pylist() == [1, 2, 1, 2, 3, 1, 2]


def test_the_shipped_model_is_loaded_once_per_process(cancer_model, tmp_path, monkeypatch):
    path = tmp_path / "model.joblib"
    joblib.dump(cancer_model, path)
    monkeypatch.setattr(executor, "_loaded", {})
    monkeypatch.setattr(executor, "loads", 0)
    plan = plan_for(cancer_model, str(path))
    table = batch_of(cancer_model).drop_columns([RAGGED_COLUMN])
    for _ in range(3):
        batches = list(executor.score_arrow_batches(iter(table.to_batches(max_chunksize=2)), plan))
        assert sum(batch.num_rows for batch in batches) == 6  # 4 scored, 2 problems
    frames = list(executor.score_pandas_batches(iter([table.to_pandas()]), plan))
    assert pa.Table.from_pandas(frames[0]).num_rows == 6
    assert executor.loads == 1


def test_output_types_follow_the_models_labels(cancer_model):
    types = dict(executor.model_output_types(cancer_model))
    assert types == {"prediction": pa.int64(), "probability_0": pa.float64(),
                     "probability_1": pa.float64()}  # fmt: skip


def test_spark_options_and_outputs():
    args = build_parser().parse_args(["score", "--input", "s3a://bucket/day=*/", "--output",
                                      "s3a://bucket/out.parquet", "--engine", "spark",
                                      "--partitions", "8"])  # fmt: skip
    assert (args.input, args.engine, args.partitions) == ("s3a://bucket/day=*/", "spark", 8)
    assert _output_type("s3a://bucket/out.parquet/") == "parquet"
    assert _hidden("/_SUCCESS") and _hidden("/.part-0.crc") and not _hidden("/day=1/p.parquet")
    assert not under_spark_submit({}) and under_spark_submit({"PYSPARK_GATEWAY_PORT": "1"})


def test_local_scoring_never_imports_pyspark(cancer_model, tmp_path):
    features, _ = load_default()
    features.iloc[:5].to_parquet(tmp_path / "in.parquet")
    arguments = ["--model", cancer_model.tag, "--input", str(tmp_path / "in.parquet"),
                 "--output", str(tmp_path / "out.csv"), "--no-progress"]  # fmt: skip
    assert scored_in_a_process(arguments, ("pyspark",)) == (0, [])
    assert len(pd.read_csv(tmp_path / "out.csv")) == 5
