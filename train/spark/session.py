"""Starting, or joining, the SparkSession that scores."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOCAL_MASTER = "local[*]"
APP_NAME = "tabular-model-score"


def under_spark_submit(environ: Mapping[str, str] = os.environ) -> bool:
    """spark-submit starts the Python driver with a gateway to its JVM already running."""
    return "PYSPARK_GATEWAY_PORT" in environ


def spark_session(master: str | None = None, conf: Mapping[str, str] | None = None) -> SparkSession:
    """The session: `master` if given, else spark-submit's, else `local[*]`.

    Executors run Python workers with PYSPARK_PYTHON; unset, they use this interpreter
    (the virtualenv's), so that locally they import the same packages as the driver.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(APP_NAME)
    if master or not under_spark_submit():
        builder = builder.master(master or LOCAL_MASTER)
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


@contextmanager
def runtime_conf(spark: SparkSession, values: Mapping[str, str]) -> Iterator[None]:
    """SQL settings for one job, the session's own restored afterwards."""
    before = {key: spark.conf.get(key, None) for key in values}
    for key, value in values.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)
