"""The fitted pipeline as an ONNX model (skl2onnx), and the parity gate it must pass.

The graph takes one input per feature, `[N, 1]`: float64 for numeric features (NaN for a
gap) and strings for categorical ones (a gap as `MISSING_CATEGORY`, what the pipeline's
own imputer fills in). `model.compiled` feeds it; `model.compiled.graph_contract` is the
contract both sides read.

Preprocessing runs in float64, as scikit-learn runs it. Tree ensembles compare in float32,
as scikit-learn's trees do (they cast their input), so the graph casts the preprocessed
matrix to float32 before a tree model; linear models stay in float64. Converting the two
halves apart and joining them is what makes that possible: skl2onnx types a whole pipeline
by its inputs, and onnxruntime's tree kernels answer only in float32. Before a linear
model, the graph does not scale: the scaling is folded into the model's weights.

Two gaps in skl2onnx 1.20 are covered here, for this conversion only:
- its SimpleImputer converter has no float64 kernel in onnxruntime (Imputer is float32
  only) and refuses `missing_values=None` on strings: `_impute` writes `Where(IsNaN)` for
  numbers, and the identity for categories (gaps arrive already filled);
- its HistGradientBoosting converter writes numpy booleans into an integer attribute,
  which onnx >= 1.16 refuses: `_integer_missing_flags` casts them.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Any

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, compose, helper
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from model.compiled import CompiledModel, GraphContract, graph_contract
from model.outputs import predict
from model.schema import FeatureSchema

from .options import DEFAULT_TOLERANCE

logger = logging.getLogger(__name__)

OPSET = {"": 18, "ai.onnx.ml": 3}
PREPROCESSED = "preprocessed"
TREE_MODELS = ("RandomForest", "HistGradientBoosting", "DecisionTree", "ExtraTrees")


@dataclass(frozen=True)
class Parity:
    passed: bool
    rows: int
    label_agreement: float | None
    max_abs_difference: float
    max_relative_difference: float | None
    tolerance: float
    sklearn_seconds: float
    onnx_seconds: float
    problem: str | None

    def to_metadata(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class Conversion:
    """The ONNX model (or None) and what registration records of it."""

    model: bytes | None
    status: str  # "passed", "parity_failed" or "conversion_failed"
    reason: str | None
    parity: Parity | None
    contract: GraphContract | None

    def to_metadata(self) -> dict[str, Any]:
        recorded: dict[str, Any] = {
            "status": self.status,
            "opset": OPSET,
            "versions": {lib: version(lib) for lib in ("skl2onnx", "onnx", "onnxruntime")},
        }
        if self.reason:
            recorded["reason"] = self.reason
        if self.parity is not None:
            recorded["parity"] = self.parity.to_metadata()
        return recorded


def convert(
    pipeline: Pipeline,
    schema: FeatureSchema,
    held_out: pd.DataFrame,
    *,
    target_spread: float = 1.0,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Conversion:
    """Convert, then check parity on `held_out`; never raises for a model it cannot convert."""
    try:
        model = to_onnx(pipeline, schema)
    except Exception as exc:  # a converter refuses in many ways; the reason is recorded
        reason = f"{type(exc).__name__}: {_first_line(exc)}"
        logger.warning("ONNX conversion failed, serving with scikit-learn: %s", reason)
        return Conversion(None, "conversion_failed", reason, None, None)
    contract = graph_contract(schema)
    try:
        compiled = CompiledModel(model, schema)
        parity = check_parity(pipeline, compiled, schema, held_out, target_spread, tolerance)
    except Exception as exc:  # the runtime refused the graph: same as a failed conversion
        reason = f"onnxruntime: {type(exc).__name__}: {_first_line(exc)}"
        logger.warning("ONNX model does not run, serving with scikit-learn: %s", reason)
        return Conversion(None, "conversion_failed", reason, None, contract)
    if not parity.passed:
        logger.warning("ONNX parity failed, serving with scikit-learn: %s", parity.problem)
        return Conversion(model, "parity_failed", parity.problem, parity, contract)
    return Conversion(model, "passed", None, parity, contract)


def to_onnx(pipeline: Pipeline, schema: FeatureSchema) -> bytes:
    """The fitted pipeline (ColumnTransformer, then an estimator) as one ONNX graph."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    preprocess, estimator = _scaling_folded(pipeline.steps[0][1], pipeline.steps[-1][1])
    contract = graph_contract(schema)
    initial_types = [
        (
            spec.input,
            StringTensorType([None, 1])
            if spec.kind == "categorical"
            else DoubleTensorType([None, 1]),
        )
        for spec in contract.features
    ]
    imputer = {SimpleImputer: _impute}
    with _integer_missing_flags():
        front = convert_sklearn(
            _renamed_columns(preprocess, contract),
            initial_types=initial_types,
            final_types=[(PREPROCESSED, DoubleTensorType([None, None]))],
            target_opset=OPSET,
            custom_conversion_functions=imputer,
        )
        width = int(preprocess.transform(_typical_rows(schema)).shape[1])
        in_float32 = type(estimator).__name__.startswith(TREE_MODELS)
        tensor_type = FloatTensorType if in_float32 else DoubleTensorType
        options = {id(estimator): {"zipmap": False}} if schema.task == "classification" else None
        back = convert_sklearn(
            estimator,
            initial_types=[("estimator_input", tensor_type([None, width]))],
            target_opset=OPSET,
            options=options,
        )
    front = _cast_output(front, TensorProto.FLOAT if in_float32 else TensorProto.DOUBLE)
    # the halves name their edges alike: the estimator's get a prefix, then its outputs
    # the contract's names
    back = _renamed_outputs(compose.add_prefix(back, "estimator/"), contract)
    _align_versions(front, back)
    joined = compose.merge_models(
        front, back, io_map=[(front.graph.output[0].name, "estimator/estimator_input")]
    )
    onnx.checker.check_model(joined, full_check=True)
    return joined.SerializeToString()


def _scaling_folded(preprocess: Any, estimator: Any) -> tuple[Any, Any]:
    """Copies of the two halves with each StandardScaler that ends a transformer folded
    into a linear estimator's weights: w·(x - mean)/scale + b = (w/scale)·x + (b - w·mean/scale).

    The same function, one Sub and one Div fewer over every value in the graph (a fifth of
    its time on the default model). Anything else is returned as it is.
    """
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.preprocessing import StandardScaler

    if not isinstance(estimator, LogisticRegression | Ridge | LinearRegression):
        return preprocess, estimator
    preprocess, estimator = copy.deepcopy(preprocess), copy.deepcopy(estimator)
    coef = np.array(estimator.coef_, dtype=np.float64)
    intercept = np.array(estimator.intercept_, dtype=np.float64)
    for name, step, _columns in preprocess.transformers_:
        if not isinstance(step, Pipeline) or len(step.steps) < 2:
            continue
        if not isinstance(step.steps[-1][1], StandardScaler):
            continue
        scaler = step.steps[-1][1]
        columns = preprocess.output_indices_[name]
        mean = scaler.mean_ if scaler.mean_ is not None else 0.0
        scale = scaler.scale_ if scaler.scale_ is not None else 1.0
        weights = coef[..., columns]
        intercept = intercept - (weights * (mean / scale)).sum(axis=-1)
        coef[..., columns] = weights / scale
        step.steps = step.steps[:-1]
    estimator.coef_ = coef
    estimator.intercept_ = intercept if intercept.ndim else np.float64(intercept)
    return preprocess, estimator


def check_parity(
    pipeline: Pipeline,
    compiled: CompiledModel,
    schema: FeatureSchema,
    held_out: pd.DataFrame,
    target_spread: float,
    tolerance: float,
) -> Parity:
    started = time.perf_counter()
    expected = predict(pipeline, held_out, schema.task)
    sklearn_seconds = time.perf_counter() - started
    started = time.perf_counter()
    actual = compiled.outputs(held_out)
    onnx_seconds = time.perf_counter() - started
    rows = len(held_out)
    if schema.task == "classification":
        assert expected.probabilities is not None and actual.probabilities is not None
        agreement = float(np.mean(expected.predictions == actual.predictions)) if rows else 1.0
        difference = _max_abs(expected.probabilities, actual.probabilities)
        relative = None
        problems = []
        if agreement < 1.0:
            disagreeing = round((1 - agreement) * rows)
            problems.append(f"{disagreeing} of {rows} held-out rows get another label")
        if not difference <= tolerance:
            problems.append(f"max |Δ probability| {difference:.3g} > tolerance {tolerance:g}")
    else:
        agreement = None
        difference = _max_abs(
            expected.predictions.astype(np.float64), actual.predictions.astype(np.float64)
        )
        relative = difference / target_spread if target_spread > 0 else difference
        problems = []
        if not relative <= tolerance:
            problems.append(
                f"max |Δ prediction| / target spread {relative:.3g} > tolerance {tolerance:g}"
            )
    return Parity(
        passed=not problems,
        rows=rows,
        label_agreement=agreement,
        max_abs_difference=difference,
        max_relative_difference=relative,
        tolerance=tolerance,
        sklearn_seconds=sklearn_seconds,
        onnx_seconds=onnx_seconds,
        problem="; ".join(problems) or None,
    )


def _max_abs(expected: np.ndarray, actual: np.ndarray) -> float:
    if expected.size == 0:
        return 0.0
    return float(np.max(np.abs(expected.astype(np.float64) - actual.astype(np.float64))))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


def _typical_rows(schema: FeatureSchema) -> pd.DataFrame:
    row: dict[str, Any] = {}
    for feature in schema.features:
        if feature.kind == "numeric":
            row[feature.name] = float(feature.min or 0.0)
        else:
            row[feature.name] = (feature.categories or ["x"])[0]
    return pd.DataFrame([row], columns=schema.names)


def _renamed_columns(preprocess: Any, contract: GraphContract) -> Any:
    """A copy of the ColumnTransformer selecting graph input names instead of feature names
    (skl2onnx maps selected columns to inputs by name; input names must be identifiers)."""
    renamed = copy.deepcopy(preprocess)
    by_feature = {spec.name: spec.input for spec in contract.features}
    renamed.transformers_ = [
        (name, step, [by_feature[c] for c in columns] if isinstance(columns, list) else columns)
        for name, step, columns in renamed.transformers_
    ]
    renamed.feature_names_in_ = np.array([spec.input for spec in contract.features], dtype=object)
    return renamed


def _impute(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx.common.data_types import StringTensorType
    from skl2onnx.operator_converters.common import concatenate_variables

    imputer = operator.raw_operator
    source = concatenate_variables(scope, operator.inputs, container)
    target = operator.outputs[0].full_name
    if isinstance(operator.inputs[0].type, StringTensorType):
        # the feeder puts the imputer's own fill value in every gap: nothing left to do
        container.add_node("Identity", [source], [target])
        return
    statistics = np.asarray(imputer.statistics_, dtype=np.float64)
    fill = scope.get_unique_variable_name("fill")
    container.add_initializer(fill, TensorProto.DOUBLE, [statistics.size], statistics.tolist())
    gaps = scope.get_unique_variable_name("gaps")
    container.add_node("IsNaN", [source], [gaps])
    container.add_node("Where", [gaps, fill, source], [target])


@contextlib.contextmanager
def _integer_missing_flags() -> Iterator[None]:
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node

    def add_node(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kwargs: Any) -> Any:
        flag = int(nodes_missing_value_tracks_true)
        return original(*args, nodes_missing_value_tracks_true=flag, **kwargs)

    tree_ensemble.add_node = add_node
    try:
        yield
    finally:
        tree_ensemble.add_node = original


def _cast_output(model: onnx.ModelProto, to: int) -> onnx.ModelProto:
    """`model` with its single output cast to `to` (float32 for trees, float64 otherwise)."""
    graph = model.graph
    source = graph.output[0].name
    cast = f"{PREPROCESSED}_cast"
    graph.node.append(helper.make_node("Cast", [source], [cast], to=to))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(cast, to, [None, None]))
    return model


def _align_versions(first: onnx.ModelProto, second: onnx.ModelProto) -> None:
    """Both models at the highest IR version and operator set either uses, per domain
    (skl2onnx writes the lowest each part needs; merging wants them equal)."""
    ir_version = max(first.ir_version, second.ir_version)
    opsets: dict[str, int] = {}
    for model in (first, second):
        for entry in model.opset_import:
            opsets[entry.domain] = max(opsets.get(entry.domain, 0), entry.version)
    for model in (first, second):
        model.ir_version = ir_version
        del model.opset_import[:]
        model.opset_import.extend(helper.make_opsetid(d, v) for d, v in sorted(opsets.items()))


def _renamed_outputs(model: onnx.ModelProto, contract: GraphContract) -> onnx.ModelProto:
    """The estimator's outputs under the contract's names (`label`, `probabilities`)."""
    renames = dict(zip((o.name for o in model.graph.output), contract.outputs, strict=False))
    for node in model.graph.node:
        node.output[:] = [renames.get(name, name) for name in node.output]
    for output in model.graph.output:
        output.name = renames.get(output.name, output.name)
    return model
