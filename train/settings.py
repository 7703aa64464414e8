"""Every setting the project reads from the environment, read here and nowhere else."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache


class SettingError(ValueError):
    """A setting is present but malformed; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise SettingError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    model_name: str
    """Model store name of the default model (trained by `make train`)."""
    model_tag: str
    """Exact model to serve (`name:version`); empty means the promoted, else latest, version."""
    predict_max_rows: int
    """Rows accepted by one /predict request."""
    predict_batch_max_rows: int
    """Rows accepted by one /predict_batch request."""
    max_batch_size: int
    """Most rows the adaptive batcher merges into one model call."""
    max_latency_ms: int
    """Latency budget of the adaptive batcher; requests it predicts will miss it get 503."""
    workers: int
    """Server worker processes."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            model_name=env.get("MODEL_NAME", "").strip() or "breast_cancer",
            model_tag=env.get("MODEL_TAG", "").strip(),
            predict_max_rows=_int(env, "PREDICT_MAX_ROWS", 1_000),
            predict_batch_max_rows=_int(env, "PREDICT_BATCH_MAX_ROWS", 100_000),
            max_batch_size=_int(env, "BATCH_MAX_SIZE", 64, minimum=2),
            max_latency_ms=_int(env, "BATCH_MAX_LATENCY_MS", 1_000),
            workers=_int(env, "WORKERS", 1),
        )


@cache
def settings() -> Settings:
    return Settings.from_env()
