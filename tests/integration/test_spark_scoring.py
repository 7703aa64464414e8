"""The Spark engine against the local scorer: the same files, the same outputs and errors.

One SparkSession (local[2]) for the whole module: the JVM starts once.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from model import store
from train.__main__ import main as train_cli
from train.data import load_default
from train.score import ScoreError, score_file
from train.spark.engine import score_on_spark
from train.spark.session import spark_session
from train.training import TrainConfig, train

from ..train.test_training import churn_table

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEST_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
}


def require_spark() -> None:
    """pyspark and Java, or a skip with the install command (a failure when CI is set)."""
    missing = []
    if find_spec("pyspark") is None:
        missing.append("pyspark (pip install -e '.[spark]')")
    if not os.environ.get("JAVA_HOME") and shutil.which("java") is None:
        missing.append("Java 17 (apt-get install openjdk-17-jre-headless)")
    if missing:
        message = f"the Spark engine needs {' and '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    require_spark()
    session = spark_session("local[2]", TEST_CONF)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def cancer_model(bentoml_home: Path) -> store.LoadedModel:
    features, target = load_default()
    return store.load(train(features, target, TrainConfig(name="spark-cancer")).tag)


@pytest.fixture(scope="module")
def churn_model(bentoml_home: Path) -> store.LoadedModel:
    table = churn_table()
    config = TrainConfig(name="spark-churn", categorical=["city"])
    return store.load(train(table.drop(columns="churned"), table["churned"], config).tag)


def cancer_rows_with_problems(rows: int = 400) -> pd.DataFrame:
    """Breast-cancer rows with an id, refused values, a missing one and a row with two."""
    features, _ = load_default()
    table = features.sample(n=rows, replace=True, random_state=1).reset_index(drop=True)
    table = table.astype({"mean radius": str})
    table.loc[3, "mean radius"] = "abc"
    table.loc[7, "worst area"] = np.inf
    table.loc[11, "mean texture"] = 1e300
    table.loc[15, "mean area"] = None  # missing: imputed, not a problem
    table.loc[19, "mean radius"] = "1_000"
    table.loc[19, "worst area"] = -np.inf
    table.loc[250, "mean radius"] = "nan"  # a missing-value text
    return table.assign(id=[f"id-{i}" for i in range(rows)])


def churn_rows_with_problems() -> pd.DataFrame:
    table = churn_table(rows=300, seed=3).drop(columns="churned").astype({"age": str})
    table.loc[2, "age"] = "old"
    table.loc[5, "spend"] = np.inf
    table.loc[9, "city"] = None
    table.loc[13, "city"] = "rome"  # a category unseen in training: scored
    table.loc[21, "city"] = "NA"  # missing-value text
    return table.assign(id=range(100, 400))


def write(table: pd.DataFrame, path: Path, **options: object) -> Path:
    if path.suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False, **options)
    return path


def with_ragged_rows(path: Path, rows: dict[int, str]) -> None:
    """CSV data rows (1-based) cut short ("short") or given an extra field ("long")."""
    lines = path.read_text().splitlines()
    for row, how in rows.items():
        lines[row] = lines[row].rsplit(",", 1)[0] if how == "short" else lines[row] + ",1.0"
    path.write_text("\n".join(lines) + "\n")


def read_dataset(path: Path) -> pd.DataFrame:
    """A file the local scorer wrote, or a directory Spark wrote (sorted by row)."""
    if path.is_file():
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        return frame
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        parts = sorted(path.glob("part-*.csv"))
        frame = pd.concat([pd.read_csv(part) for part in parts], ignore_index=True)
    return frame.sort_values("row", kind="stable").reset_index(drop=True)


def read_errors(path: Path) -> list[list[str]]:
    files = [path] if path.is_file() else sorted(path.glob("part-*.csv"))
    frames = [pd.read_csv(f, dtype=str, keep_default_na=False) for f in files]
    return pd.concat(frames, ignore_index=True).values.tolist()


def score_both(
    spark, model: store.LoadedModel, local_input: Path, spark_input: str, work: Path, **options
) -> tuple[tuple[pd.DataFrame, list], tuple[pd.DataFrame, list], tuple]:
    """Score locally and on Spark; the outputs, errors and both summaries."""
    suffix = options.pop("output_suffix", ".parquet")
    keep = options.pop("keep", ("id",))
    local = score_file(model, local_input, work / f"local{suffix}", work / "local.errors.csv",
                       keep=keep, chunk_rows=70, progress=False)  # fmt: skip
    on_spark = score_on_spark(spark, model, spark_input, str(work / f"spark{suffix}"),
                              str(work / "spark.errors.csv"), keep=keep, **options)  # fmt: skip
    return (
        (read_dataset(work / f"local{suffix}"), read_errors(work / "local.errors.csv")),
        (read_dataset(work / f"spark{suffix}"), read_errors(work / "spark.errors.csv")),
        (local, on_spark),
    )


def assert_identical(local: tuple[pd.DataFrame, list], on_spark: tuple[pd.DataFrame, list]):
    local_out, local_errors = local
    spark_out, spark_errors = on_spark
    assert list(spark_out.columns) == list(local_out.columns)
    pd.testing.assert_frame_equal(spark_out, local_out, check_exact=False, rtol=1e-9, atol=0)
    assert spark_errors == local_errors


@pytest.mark.parametrize(
    ("suffix", "partitions", "udf"),
    [(".csv", 3, "arrow"), (".parquet", 4, "arrow"), (".parquet", None, "pandas")],
)
def test_numeric_model_same_rows_predictions_and_errors_as_locally(
    spark, cancer_model, tmp_path, suffix, partitions, udf
):
    source = write(cancer_rows_with_problems(), tmp_path / f"in{suffix}", row_group_size=64)
    if suffix == ".csv":
        with_ragged_rows(source, {30: "short", 31: "long", 399: "short"})
    local, on_spark, (local_summary, spark_summary) = score_both(
        spark, cancer_model, source, str(source), tmp_path,
        partitions=partitions, chunk_rows=50, udf=udf,
    )  # fmt: skip
    assert_identical(local, on_spark)
    assert spark_summary == local_summary
    assert local_summary.bad_rows == (7 if suffix == ".csv" else 4)
    assert [row for row, *_ in local[1]][:5] == ["4", "8", "12", "20", "20"]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_categorical_model_same_rows_predictions_and_errors_as_locally(
    spark, churn_model, tmp_path, suffix
):
    source = write(churn_rows_with_problems(), tmp_path / f"in{suffix}")
    local, on_spark, (local_summary, spark_summary) = score_both(
        spark, churn_model, source, str(source), tmp_path, partitions=2, chunk_rows=40,
        output_suffix=suffix,
    )  # fmt: skip
    assert_identical(local, on_spark)
    assert spark_summary == local_summary
    assert (spark_summary.rows, spark_summary.bad_rows) == (300, 2)
    infinity = "not a number: 'inf'" if suffix == ".csv" else "not finite"  # CSV: text
    assert on_spark[1] == [["3", "age", "not a number: 'old'"], ["6", "spend", infinity]]


def test_a_directory_of_parquet_files_is_numbered_as_the_files_in_path_order(
    spark, cancer_model, tmp_path
):
    table = cancer_rows_with_problems(rows=500)
    pieces = [table.iloc[:120], table.iloc[120:330], table.iloc[330:]]
    folder = tmp_path / "lake"
    folder.mkdir()
    for index, piece in enumerate(pieces):
        write(piece, folder / f"part-{index}.parquet", row_group_size=50)
    (folder / "_SUCCESS").touch()
    whole = write(table, tmp_path / "whole.parquet")
    local, on_spark, _ = score_both(spark, cancer_model, whole, str(folder), tmp_path,
                                    partitions=3)  # fmt: skip
    assert_identical(local, on_spark)
    assert on_spark[0]["row"].tolist()[-1] == 500


def test_a_csv_glob_reads_only_the_files_it_matches(spark, churn_model, tmp_path):
    table = churn_rows_with_problems()
    folder = tmp_path / "exports"
    folder.mkdir()
    write(table.iloc[:180], folder / "scores-1.csv")
    write(table.iloc[180:], folder / "scores-2.csv")
    write(table.drop(columns="city"), folder / "other.csv")  # not matched: lacks a feature
    whole = write(table, tmp_path / "whole.csv")
    local, on_spark, _ = score_both(spark, churn_model, whole, str(folder / "scores-*.csv"),
                                    tmp_path, output_suffix=".csv")  # fmt: skip
    assert_identical(local, on_spark)


def test_row_ids_do_not_depend_on_the_partitioning(spark, cancer_model, tmp_path):
    source = write(cancer_rows_with_problems(), tmp_path / "in.csv")
    outputs = []
    for partitions in (1, 5):
        target = tmp_path / f"out-{partitions}.parquet"
        score_on_spark(spark, cancer_model, str(source), str(target),
                       str(tmp_path / f"errors-{partitions}.csv"), keep=("id",),
                       partitions=partitions, chunk_rows=30)  # fmt: skip
        outputs.append(read_dataset(target))
    pd.testing.assert_frame_equal(outputs[0], outputs[1])
    assert (outputs[0]["id"] == "id-" + (outputs[0]["row"] - 1).astype(str)).all()


def test_command_line_spark_engine(spark, cancer_model, tmp_path, capsys):
    source = write(cancer_rows_with_problems(), tmp_path / "in.parquet")
    code = train_cli(["score", "--engine", "spark", "--model", cancer_model.tag,
                      "--input", str(source), "--output", str(tmp_path / "out.csv"),
                      "--keep", "id", "--partitions", "2", "--no-progress"])  # fmt: skip
    assert code == 3
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["rows"], summary["bad_rows"]) == (400, 4)
    assert summary["errors"] == str(tmp_path / "out.csv.errors.csv")
    assert len(read_dataset(tmp_path / "out.csv")) == 396
    assert spark.sparkContext._jsc is not None  # the active session was used, not stopped


def test_inputs_it_cannot_score_are_errors(spark, cancer_model, tmp_path):
    pd.DataFrame({"mean radius": [1.0]}).to_parquet(tmp_path / "in.parquet")
    with pytest.raises(ScoreError, match="columns missing from the input"):
        score_on_spark(spark, cancer_model, str(tmp_path / "in.parquet"),
                       str(tmp_path / "o.parquet"), str(tmp_path / "e.csv"))  # fmt: skip
    with pytest.raises(ScoreError, match="no such file"):
        score_on_spark(spark, cancer_model, str(tmp_path / "absent-*.csv"),
                       str(tmp_path / "o.parquet"), str(tmp_path / "e.csv"))  # fmt: skip
    with pytest.raises(ScoreError, match="unsupported output type"):
        score_on_spark(spark, cancer_model, str(tmp_path / "in.parquet"),
                       str(tmp_path / "o.json"), str(tmp_path / "e.csv"))  # fmt: skip
