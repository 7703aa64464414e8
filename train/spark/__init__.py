"""Offline scoring on Apache Spark: `python -m train score --engine spark`.

The same checks and outputs as `train.score`, spread over a cluster: `engine` plans and
runs the job on the driver, `executor` checks and scores Arrow batches in the executors'
Python processes, `session` starts or joins a SparkSession. pyspark is an optional extra
(`pip install tabular-model[spark]`): only these modules import it.
"""
