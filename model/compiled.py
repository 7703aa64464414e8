"""The model compiled to ONNX, run by onnxruntime: the same answers as the pipeline, faster.

`graph_contract` is what the graph takes and gives: one `[N, 1]` input per feature (float64
with NaN for a gap, or strings with `MISSING_CATEGORY` for a gap) and the outputs
`label` + `probabilities` (classifiers) or `prediction` (regressors). The converter
(`train.onnx_convert`), this runtime and the edge export all read it from here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.outputs import Outputs
from model.schema import FeatureKind, FeatureSchema

MISSING_CATEGORY = "__missing__"  # the categorical imputer's fill value (train.pipeline)
# values per run of the graph: its [rows, features] float64 intermediates, 1 MiB each, stay
# in a core's cache
RUN_VALUES = 1 << 17


@dataclass(frozen=True)
class FeatureInput:
    name: str  # the feature, as in the schema
    input: str  # the graph input's name
    kind: FeatureKind


@dataclass(frozen=True)
class GraphContract:
    features: tuple[FeatureInput, ...]
    outputs: tuple[str, ...]

    def to_json(self, schema: FeatureSchema) -> dict[str, Any]:
        """What an edge device needs beside the .onnx file: inputs, gaps, outputs, labels."""
        features = []
        for spec, feature in zip(self.features, schema.features, strict=True):
            described: dict[str, Any] = {"name": spec.name, "input": spec.input, "kind": spec.kind}
            if spec.kind == "numeric":
                described |= {"dtype": "float64", "shape": [-1, 1], "missing": "NaN"}
                described |= {"min": feature.min, "max": feature.max}
            else:
                described |= {"dtype": "string", "shape": [-1, 1], "missing": MISSING_CATEGORY}
                described["categories"] = feature.categories
            features.append(described)
        return {
            "task": schema.task,
            "target": schema.target,
            "features": features,
            "outputs": list(self.outputs),
            "classes": schema.classes,
        }


def graph_contract(schema: FeatureSchema) -> GraphContract:
    taken: set[str] = set()
    features = []
    for index, feature in enumerate(schema.features):
        name = re.sub(r"\W", "_", feature.name) or "feature"
        if name[0].isdigit():
            name = f"f_{name}"
        if name in taken:
            name = f"{name}_{index}"
        taken.add(name)
        features.append(FeatureInput(feature.name, name, feature.kind))
    outputs = ("label", "probabilities") if schema.task == "classification" else ("prediction",)
    return GraphContract(tuple(features), outputs)


class CompiledModel:
    """An ONNX graph of the pipeline in an onnxruntime session, answering like `predict`."""

    def __init__(self, model: bytes, schema: FeatureSchema, *, threads: int = 1) -> None:
        import onnxruntime

        self._model, self._threads = model, threads

        options = onnxruntime.SessionOptions()
        # the server scales by workers and batching, as the pipeline does (n_jobs=1)
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            model, options, providers=["CPUExecutionProvider"]
        )
        self.schema = schema
        self.contract = graph_contract(schema)
        self._classes = np.asarray(schema.classes) if schema.classes is not None else None
        self._class_names = [str(c) for c in schema.classes or []]
        inputs = [i.name for i in self._session.get_inputs()]
        expected = [spec.input for spec in self.contract.features]
        if sorted(inputs) != sorted(expected):
            unknown = sorted(set(inputs) ^ set(expected))
            raise ValueError(
                f"the ONNX model's inputs do not match the feature schema (differ: {unknown[:5]})"
            )
        wanted = [o.name for o in self._session.get_outputs()]
        missing = [name for name in self.contract.outputs if name not in wanted]
        if missing:
            raise ValueError(f"the ONNX model has no output {missing[0]!r}")
        self._output = self.contract.outputs[-1]
        self._run_rows = max(1, RUN_VALUES // max(1, len(self.contract.features)))

    def __reduce__(self) -> tuple[Any, ...]:
        # a session does not pickle; the graph does (Spark ships the model to executors)
        return (_restored, (self._model, self.schema, self._threads))

    def outputs(self, frame: Any) -> Outputs:
        """The answer for the rows of a model frame (float64 numbers, strings or None)."""
        names = self.schema.names
        if not self.schema.categorical:  # one copy of the whole block, then column views
            matrix = frame[names].to_numpy(dtype=np.float64)
            return self.outputs_from_columns({name: matrix[:, i] for i, name in enumerate(names)})
        return self.outputs_from_columns({name: frame[name].to_numpy() for name in names})

    def outputs_from_columns(
        self, columns: Mapping[str, Any], *, pool: Executor | None = None
    ) -> Outputs:
        """The answer for the rows of one array per feature (float64 with NaN, or objects
        with None for a gap).

        The graph runs on slices of rows whose intermediate arrays stay in a core's cache
        (`RUN_VALUES`: about 1.4x faster than one run over 50,000 rows); with a `pool`, the
        slices run in its threads at once (onnxruntime releases the GIL), each on one
        intra-op thread. Rows never interact, so the answer is the same either way.
        """
        feed = self._feed(columns)
        rows = len(next(iter(feed.values()))) if feed else 0
        step = self._run_rows
        slices = [slice(start, start + step) for start in range(0, rows, step)]
        if len(slices) <= 1:
            answer = self._run(feed)
        else:
            run_slice = functools.partial(self._run_slice, feed)
            answer = np.concatenate(list((pool.map if pool else map)(run_slice, slices)))
        if self._classes is None:
            return Outputs(answer.reshape(-1).astype(np.float64), None, [])
        probabilities = answer.astype(np.float64, copy=False)
        predictions = self._classes[probabilities.argmax(axis=1)]
        return Outputs(predictions, probabilities, self._class_names)

    def _feed(self, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The graph's inputs: contiguous `[N, 1]` arrays (onnxruntime copies any other)."""
        feed = {}
        for spec in self.contract.features:
            values = columns[spec.name]
            if spec.kind == "numeric":
                array = np.ascontiguousarray(values, dtype=np.float64)
            else:
                array = np.array(
                    [MISSING_CATEGORY if v is None else v for v in values], dtype=object
                )
            feed[spec.input] = array.reshape(-1, 1)
        return feed

    def _run(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        (answer,) = self._session.run([self._output], feed)
        return answer

    def _run_slice(self, feed: Mapping[str, np.ndarray], rows: slice) -> np.ndarray:
        return self._run({name: array[rows] for name, array in feed.items()})


def _restored(model: bytes, schema: FeatureSchema, threads: int) -> CompiledModel:
    return CompiledModel(model, schema, threads=threads)
