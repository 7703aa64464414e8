"""The compiled model gives one answer whatever the rows' slicing, threads and array layout."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from model import compiled as compiled_module
from model import store
from model.compiled import CompiledModel
from model.outputs import Outputs
from model.schema import to_model_frame
from train.training import TrainConfig, train

from ..train.test_onnx import mixed_table


@pytest.fixture(scope="module", params=["binary", "regression"])
def tag(request) -> str:
    features, target = mixed_table(request.param)
    task = "regression" if request.param == "regression" else "classification"
    return train(features, target, TrainConfig(name=f"compiled-{request.param}", task=task)).tag


@pytest.fixture(scope="module")
def model(tag) -> CompiledModel:
    compiled = store.load(tag, "onnx").compiled
    assert compiled is not None
    return compiled


def many_rows(compiled: CompiledModel, slices: float) -> pd.DataFrame:
    """About `slices` runs' worth of rows, with gaps in every column and unseen categories."""
    features, _ = mixed_table("binary", rows=400, seed=1)
    rows = int(slices * compiled_module.RUN_VALUES / len(compiled.schema.names))
    sample = features.sample(n=rows, replace=True, random_state=0).reset_index(drop=True)
    sample.loc[::97, "city"] = "atlantis"
    kinds = {feature.name: feature.kind for feature in compiled.schema.features}
    return to_model_frame(sample, kinds)


def columns_of(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """One contiguous array per feature, as the server and offline scoring pass them."""
    return {name: frame[name].to_numpy() for name in frame.columns}


def one_run(tag: str, monkeypatch: pytest.MonkeyPatch) -> CompiledModel:
    """The same graph in a model that runs any number of rows in one run."""
    monkeypatch.setattr(compiled_module, "RUN_VALUES", 1 << 40)
    return CompiledModel(store.onnx_path(tag).read_bytes(), store.load_schema(tag))


def assert_same(actual: Outputs, expected: Outputs) -> None:
    np.testing.assert_array_equal(actual.predictions, expected.predictions)
    if expected.probabilities is None:
        assert actual.probabilities is None
    else:
        np.testing.assert_array_equal(actual.probabilities, expected.probabilities)
    assert actual.classes == expected.classes


def test_slices_run_alone_or_in_threads_answer_as_one_run(tag, model, monkeypatch):
    frame = many_rows(model, slices=3.5)
    run_rows = compiled_module.RUN_VALUES // len(model.schema.names)
    assert len(frame) > 3 * run_rows  # `model` runs four slices
    whole = one_run(tag, monkeypatch).outputs_from_columns(columns_of(frame))
    assert_same(model.outputs_from_columns(columns_of(frame)), whole)
    with ThreadPoolExecutor(2) as pool:
        assert_same(model.outputs_from_columns(columns_of(frame), pool=pool), whole)
    assert len(whole.predictions) == len(frame)


def test_a_frame_and_column_views_answer_as_contiguous_columns(model):
    frame = many_rows(model, slices=1.5)
    expected = model.outputs_from_columns(columns_of(frame))
    assert_same(model.outputs(frame), expected)
    numeric = model.schema.numeric
    matrix = np.ascontiguousarray(frame[numeric], dtype=np.float64)  # columns strided
    views = columns_of(frame) | {name: matrix[:, i] for i, name in enumerate(numeric)}
    assert not views[numeric[0]].flags.c_contiguous
    assert_same(model.outputs_from_columns(views), expected)


def test_a_graph_whose_inputs_are_not_the_schemas_is_refused(tag):
    """A schema edited after registration must not reach onnxruntime's run as a 500."""
    loaded = store.load(tag, "onnx")
    renamed = loaded.schema.model_copy(deep=True)
    renamed.features[0].name = "renamed feature"
    onnx_model = store.onnx_path(tag).read_bytes()
    with pytest.raises(ValueError, match="inputs do not match the feature schema"):
        CompiledModel(onnx_model, renamed)
