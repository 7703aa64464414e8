"""Model store I/O: register, list, resolve, load, promote and roll back model versions.

A version's lifecycle lives in its BentoML labels, so `bentoml models list` and
`bentoml models get` show it: `stage` is `candidate` when registered, `production` once
promoted, `archived` when another version is promoted, `rolled_back` when rolled back;
`promoted_at` orders promotions so a rollback knows which version came before.

`bentoml serve` imports this module in its supervisor process, which only reads model
metadata: scikit-learn and joblib are imported where a pipeline is saved or loaded.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bentoml
import pandas as pd
from bentoml.exceptions import NotFound

from model.outputs import Outputs, predict
from model.schema import FeatureSchema
from model.settings import MODEL_RUNTIMES

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from model.compiled import CompiledModel

logger = logging.getLogger(__name__)

PIPELINE_FILE = "pipeline.joblib"
ONNX_FILE = "model.onnx"
REFERENCE_FILE = "reference.parquet"

CANDIDATE, PRODUCTION, ARCHIVED, ROLLED_BACK = "candidate", "production", "archived", "rolled_back"


class RegistryError(RuntimeError):
    """A model-store operation cannot be done; the message says why."""


@dataclass(frozen=True)
class LoadedModel:
    tag: str
    pipeline_file: Path
    schema: FeatureSchema
    labels: dict[str, str]
    metadata: dict[str, Any]
    created_at: datetime
    compiled: CompiledModel | None = None
    runtime_note: str = "MODEL_RUNTIME=sklearn"  # why this runtime answers

    @functools.cached_property
    def pipeline(self) -> Pipeline:
        """The fitted scikit-learn pipeline, loaded on first use and checked against the schema."""
        return _load_pipeline(self.tag, self.pipeline_file, self.schema)

    @property
    def runtime(self) -> str:
        return "sklearn" if self.compiled is None else "onnx"

    def outputs(self, frame: pd.DataFrame) -> Outputs:
        """The answer for the rows of a model frame, from the runtime in use."""
        if self.compiled is not None:
            return self.compiled.outputs(frame)
        return predict(self.pipeline, frame, self.schema.task)

    def runtime_info(self) -> dict[str, Any]:
        """The runtime in use, why, and the ONNX conversion's record (status, parity)."""
        return {
            "name": self.runtime,
            "reason": self.runtime_note,
            "onnx": self.metadata.get("onnx"),
        }


def save(
    pipeline: Pipeline,
    schema: FeatureSchema,
    reference: pd.DataFrame,
    *,
    name: str,
    labels: dict[str, str],
    metadata: dict[str, Any],
    onnx_model: bytes | None = None,
) -> str:
    """Register a trained pipeline with its schema and reference sample (and its ONNX
    model, when it converted); returns the tag."""
    import joblib

    with bentoml.models.create(
        name,
        labels={"stage": CANDIDATE, **labels},
        metadata={**metadata, "schema": schema.to_metadata()},
    ) as model:
        joblib.dump(pipeline, model.path_of(PIPELINE_FILE))
        reference.to_parquet(model.path_of(REFERENCE_FILE), index=False)
        if onnx_model is not None:
            Path(model.path_of(ONNX_FILE)).write_bytes(onnx_model)
    logger.info("registered %s", model.tag)
    return str(model.tag)


def use_packaged_models(environ: Mapping[str, str] = os.environ) -> bool:
    """Inside a Bento's container, read the models packaged in it, as `bentoml serve` does.

    The image sets BENTO_PATH; its `models` directory is a model store. Command-line tools
    run there (the drift CronJob) then find the served model without a BENTOML_HOME copy.
    """
    bento = environ.get("BENTO_PATH", "")
    packaged = Path(bento) / "models"
    if not bento or not packaged.is_dir():
        return False
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    BentoMLContainer.model_store.set(ModelStore(str(packaged)))
    logger.info("using the models packaged in %s", bento)
    return True


def versions(name: str) -> list[bentoml.Model]:
    """Every stored version of `name`, newest first."""
    try:
        found = bentoml.models.list(name)
    except NotFound:
        return []
    return sorted(found, key=lambda m: m.info.creation_time, reverse=True)


def _get(tag: str) -> bentoml.Model:
    try:
        return bentoml.models.get(tag)
    except NotFound as exc:
        raise RegistryError(f"model {tag!r} is not in the model store") from exc


def production(name: str) -> bentoml.Model | None:
    promoted = [m for m in versions(name) if m.info.labels.get("stage") == PRODUCTION]
    return max(promoted, key=lambda m: m.info.labels.get("promoted_at", ""), default=None)


def resolve_tag(name: str, tag: str = "") -> str:
    """The exact tag to serve: `tag` if given, else the promoted version, else the newest."""
    if tag:
        return str(_get(tag).tag)
    chosen = production(name) or next(iter(versions(name)), None)
    if chosen is None:
        raise RegistryError(f"no model named {name!r} in the model store; run `make train`")
    return str(chosen.tag)


def _set_labels(model: bentoml.Model, **labels: str) -> None:
    model.info.labels.update(labels)
    model.flush()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def promote(tag: str) -> str:
    """Make `tag` the production version of its name; the previous one is archived."""
    model = _get(tag)
    current = production(model.tag.name)
    if current is not None and current.tag == model.tag:
        return str(model.tag)
    for other in versions(model.tag.name):
        if other.info.labels.get("stage") == PRODUCTION:
            _set_labels(other, stage=ARCHIVED)
    _set_labels(model, stage=PRODUCTION, promoted_at=_now())
    logger.info("promoted %s", model.tag)
    return str(model.tag)


def rollback(name: str) -> str:
    """Return production to the version promoted before the current one; returns its tag."""
    current = production(name)
    if current is None:
        raise RegistryError(f"{name!r} has no production version to roll back")
    current_at = current.info.labels["promoted_at"]
    earlier = [
        m
        for m in versions(name)
        if m.tag != current.tag and "" < m.info.labels.get("promoted_at", "") < current_at
    ]
    if not earlier:
        raise RegistryError(f"{current.tag} is the first promoted version of {name!r}")
    previous = max(earlier, key=lambda m: m.info.labels["promoted_at"])
    _set_labels(current, stage=ROLLED_BACK)
    _set_labels(previous, stage=PRODUCTION)
    logger.info("rolled back %s to %s", current.tag, previous.tag)
    return str(previous.tag)


@dataclass(frozen=True)
class ServedChoice:
    """The model a server is asked to serve, or why none can be: decided before loading."""

    tag: str
    schema: FeatureSchema | None
    problem: str | None


def choose_served(name: str, tag: str = "") -> ServedChoice:
    """Resolve the model to serve without failing: a server without a model stays up, unready."""
    try:
        resolved = resolve_tag(name, tag)
        return ServedChoice(resolved, load_schema(resolved), None)
    except Exception as exc:  # missing store entry, unreadable or foreign metadata
        wanted = tag or f"{name} (promoted, else newest)"
        return ServedChoice(tag or f"{name}:latest", None, f"model {wanted}: {exc}")


def load_stored(
    model: bentoml.Model, runtime: str = "auto", *, pipeline_when_used: bool = False
) -> LoadedModel:
    """The version's pipeline and schema, answering with `runtime` (MODEL_RUNTIME).

    The pipeline is loaded and checked against the schema here, even when ONNX answers: a
    version whose pipeline is damaged never serves, and MODEL_RUNTIME=sklearn stays a way
    back. With `pipeline_when_used` and ONNX answering, it is loaded on first use instead:
    a command that only scores with ONNX does not import scikit-learn (about 1.5 s).
    """
    info = model.info
    metadata = dict(info.metadata)
    if "schema" not in metadata:
        raise RegistryError(f"{model.tag} has no feature schema; it was not registered by train")
    schema = FeatureSchema.from_metadata(metadata["schema"])
    compiled, note = _compiled(model, schema, metadata, runtime)
    loaded = LoadedModel(
        tag=str(model.tag),
        pipeline_file=Path(model.path_of(PIPELINE_FILE)),
        schema=schema,
        labels=dict(info.labels),
        metadata=metadata,
        created_at=info.creation_time,
        compiled=compiled,
        runtime_note=note,
    )
    if compiled is None or not pipeline_when_used:
        loaded.pipeline  # noqa: B018  (loads and checks it)
    return loaded


def _load_pipeline(tag: str, path: Path, schema: FeatureSchema) -> Pipeline:
    import joblib

    try:
        pipeline = joblib.load(path)
    except Exception as exc:  # a truncated or foreign file fails in many ways
        raise RegistryError(f"{tag}: cannot load {PIPELINE_FILE}: {exc}") from exc
    fitted_on = list(getattr(pipeline, "feature_names_in_", schema.names))
    if fitted_on != schema.names:
        raise RegistryError(
            f"{tag}: the pipeline was fitted on {fitted_on[:5]}... but the stored schema "
            f"lists {schema.names[:5]}...; the model does not match its schema"
        )
    return pipeline


def _compiled(
    model: bentoml.Model, schema: FeatureSchema, metadata: dict[str, Any], runtime: str
) -> tuple[CompiledModel | None, str]:
    """The ONNX runtime when `runtime` asks for it and the version has one that passed
    parity; else None (auto) or RegistryError (onnx). The text says why."""
    if runtime not in MODEL_RUNTIMES:
        raise RegistryError(f"runtime must be one of {', '.join(MODEL_RUNTIMES)}, got {runtime!r}")
    if runtime == "sklearn":
        return None, "MODEL_RUNTIME=sklearn"
    record = metadata.get("onnx") or {}
    path = Path(model.path_of(ONNX_FILE))
    problem = None
    if record.get("status") != "passed":
        why = record.get("reason") or "registered before ONNX conversion existed"
        problem = f"its ONNX model is {record.get('status', 'missing')}: {why}"
    elif not path.is_file():
        problem = f"{ONNX_FILE} is missing from the model store"
    compiled = None
    if problem is None:
        from model.compiled import CompiledModel

        try:
            compiled = CompiledModel(path.read_bytes(), schema)
        except Exception as exc:  # onnxruntime refuses a damaged or foreign file many ways
            problem = f"onnxruntime cannot load {ONNX_FILE}: {exc}"
    if problem is None:
        return compiled, f"MODEL_RUNTIME={runtime}: ONNX passed parity at registration"
    if runtime == "onnx":
        raise RegistryError(
            f"{model.tag}: ONNX runtime required (MODEL_RUNTIME=onnx), but {problem}"
        )
    return None, f"MODEL_RUNTIME=auto: scikit-learn, because {problem}"


def load(tag: str, runtime: str = "auto", *, pipeline_when_used: bool = False) -> LoadedModel:
    return load_stored(_get(tag), runtime, pipeline_when_used=pipeline_when_used)


def onnx_path(tag: str) -> Path:
    return Path(_get(tag).path_of(ONNX_FILE))


def load_schema(tag: str) -> FeatureSchema:
    model = _get(tag)
    return FeatureSchema.from_metadata(model.info.metadata["schema"])


def load_reference(tag: str) -> pd.DataFrame:
    """The training-data sample stored with the model: features, target and prediction."""
    path = Path(_get(tag).path_of(REFERENCE_FILE))
    if not path.is_file():
        raise RegistryError(f"{tag} has no stored reference sample")
    return pd.read_parquet(path)
