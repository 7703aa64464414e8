"""Every setting the project reads from the environment, read here and nowhere else.

Grouped by what reads them: the model to serve, the request path, the payload log and
the drift job. docs/operations.md lists them all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

MODEL_RUNTIMES = ("auto", "onnx", "sklearn")


class SettingError(ValueError):
    """A setting is present but malformed; the message names the variable."""


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingError(f"{name} must be a number, got {raw!r}") from exc
    if not low <= value <= high:
        raise SettingError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingError(f"{name} must be on/off (true/false, 1/0), got {raw!r}")


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


def _home_dir(env: Mapping[str, str], name: str) -> str:
    home = env.get("BENTOML_HOME", "").strip() or str(Path.home() / "bentoml")
    return str(Path(home) / name)


def _optional_path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name, "").strip()
    return Path(raw) if raw else None


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower() or default
    if raw not in choices:
        raise SettingError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


class Secret:
    """A setting that must never be printed or logged."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


@dataclass(frozen=True)
class ModelSettings:
    name: str
    """Model store name of the default model (trained by `make train`)."""
    tag: str
    """Exact model to serve (`name:version`); empty means the promoted, else latest, version."""
    runtime: str = "auto"
    """What answers: `onnx` (the version's ONNX model; refused unless it passed parity),
    `sklearn` (the pipeline), `auto` (ONNX when it passed parity, else the pipeline)."""


@dataclass(frozen=True)
class ServingSettings:
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
    api_keys: Secret
    """Comma-separated API keys accepted on the prediction and model routes; empty: no auth."""
    max_body_bytes: int
    """Largest request body accepted (413 beyond)."""
    max_in_flight: int
    """Prediction requests one worker handles at once; beyond it, 503 with Retry-After."""
    max_body_bytes_in_flight: int
    """Request body bytes one worker holds at once, read or being answered; beyond it, 503."""
    body_timeout_seconds: float
    """Time a client has to send a whole request body (408 beyond)."""
    max_header_bytes: int
    """Largest request line plus headers a worker reads (431 beyond)."""
    keepalive_max_requests: int
    """Answers a keep-alive connection carries before it is closed; 0: no limit."""
    keepalive_max_seconds: float
    """Age at which a keep-alive connection is closed after its next answer; 0: no limit.
    Recycled connections spread a client's connections over the workers."""
    access_log: bool
    """One JSON line per request on stdout (probes and /metrics left out)."""
    tracing: bool
    """OpenTelemetry spans for API requests (configure an exporter in BentoML's config)."""


@dataclass(frozen=True)
class PayloadLogSettings:
    enabled: bool
    """Log prediction requests and answers for drift reports."""
    directory: Path
    """Directory of the payload log files (one per worker process, rotated)."""
    sample_rate: float
    """Share of requests logged, 0 to 1."""
    max_rows: int
    """Rows logged per /predict_batch request: larger ones log a random sample; 0: all."""
    max_bytes: int
    """Size at which a payload log file is rotated."""
    max_line_bytes: int
    """Largest payload log record; larger ones are dropped and counted."""
    backups: int
    """Rotated files kept per worker."""
    queue_size: int
    """Records waiting to be written before new ones are dropped (and counted)."""

    @property
    def effective_sample_rate(self) -> float:
        return self.sample_rate if self.enabled else 0.0


@dataclass(frozen=True)
class DriftJobSettings:
    interval_minutes: float
    """Minutes between scheduled drift runs inside the service; 0 turns the schedule off."""
    runner: str
    """`service`: the service runs the drift job; `external`: a CronJob writes the runs to
    DRIFT_REPORT_DIR and the service only exports and serves the latest one."""
    window_minutes: int
    """Payload logs of the last N minutes are compared with the model's reference sample."""
    min_rows: int
    """A run with fewer logged rows in the window is skipped."""
    report_dir: Path
    """One directory per drift run (report.html, drift.json) and a LATEST pointer."""
    keep_reports: int
    """Drift runs kept; older ones are deleted."""
    webhook_url: str
    """Notified when a run detects drift; empty: no notification."""
    webhook_format: str
    """`json` (the drift.json plus a text summary) or `slack` (Slack-compatible text)."""
    workspace: Path | None
    """Evidently Workspace that every run is also added to (`evidently ui`); empty: none."""
    workspace_keep: int
    """Snapshots kept per model in the workspace; older ones are deleted."""


@dataclass(frozen=True)
class StreamSettings:
    redis_url: str
    """Redis of the stream consumer (`redis://host:port/db`, `rediss://` for TLS)."""
    redis_password: Secret
    """Password of the Redis user (AUTH); empty: the URL's, else none."""
    input: str
    """Stream the consumer reads events from."""
    output: str
    """Stream each event's result is added to."""
    dead_letter: str
    """Stream refused events are added to, with their error."""
    group: str
    """Consumer group: consumers in one group share the input stream's events."""
    consumer: str
    """This consumer's name in the group; empty: `<host name>-<process id>`."""
    start_id: str
    """Where a new group starts: `0` (every event already in the stream) or `$` (new ones)."""
    batch_size: int
    """Most events read (XREADGROUP COUNT) and handled at once: the consumer's in-flight bound."""
    block_ms: int
    """Longest wait for new events per read (XREADGROUP BLOCK)."""
    claim_idle_ms: int
    """Pending events idle this long are claimed from their consumer (XAUTOCLAIM)."""
    marker_ttl_seconds: int
    """How long an event's done-marker is kept: redeliveries within it write nothing again."""
    output_maxlen: int
    """Approximate length the output stream is trimmed to; 0: never trimmed."""
    max_event_bytes: int
    """Largest `instance` field accepted; larger events go to the dead-letter stream."""
    retry_max_seconds: float
    """Longest wait between retries while Redis is unreachable (the backoff's cap)."""
    stop_seconds: float
    """After SIGTERM, how long the batch in hand may keep retrying its write."""
    metrics_port: int
    """Port of the consumer's Prometheus /metrics; 0: none."""


def _stream_settings(env: Mapping[str, str]) -> StreamSettings:
    stream = StreamSettings(
        redis_url=env.get("REDIS_URL", "").strip() or "redis://127.0.0.1:6379/0",
        redis_password=Secret(env.get("REDIS_PASSWORD", "")),
        input=env.get("STREAM_INPUT", "").strip() or "tabular-model:events",
        output=env.get("STREAM_OUTPUT", "").strip() or "tabular-model:predictions",
        dead_letter=env.get("STREAM_DEAD_LETTER", "").strip() or "tabular-model:dead-letter",
        group=env.get("STREAM_GROUP", "").strip() or "tabular-model",
        consumer=env.get("STREAM_CONSUMER", "").strip(),
        start_id=_choice(env, "STREAM_START_ID", "0", ("0", "$")),
        batch_size=_int(env, "STREAM_BATCH_SIZE", 256),
        block_ms=_int(env, "STREAM_BLOCK_MS", 2_000),
        claim_idle_ms=_int(env, "STREAM_CLAIM_IDLE_MS", 60_000),
        marker_ttl_seconds=_int(env, "STREAM_MARKER_TTL_SECONDS", 900),
        output_maxlen=_int(env, "STREAM_OUTPUT_MAXLEN", 1_000_000, minimum=0),
        max_event_bytes=_int(env, "STREAM_MAX_EVENT_BYTES", 64 * 2**10),
        retry_max_seconds=_float(env, "STREAM_RETRY_MAX_SECONDS", 10.0, 0.1, 600.0),
        stop_seconds=_float(env, "STREAM_STOP_SECONDS", 20.0, 0.0, 3600.0),
        metrics_port=_int(env, "STREAM_METRICS_PORT", 9100, minimum=0),
    )
    # a marker that expires before a redelivery could come lets a result be written twice
    if stream.marker_ttl_seconds * 1000 <= stream.claim_idle_ms:
        raise SettingError(
            f"STREAM_MARKER_TTL_SECONDS ({stream.marker_ttl_seconds}) must be longer than "
            f"STREAM_CLAIM_IDLE_MS ({stream.claim_idle_ms} ms)"
        )
    return stream


@dataclass(frozen=True)
class Settings:
    model: ModelSettings
    serving: ServingSettings
    payload_log: PayloadLogSettings
    drift: DriftJobSettings
    stream: StreamSettings

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            model=ModelSettings(
                name=env.get("MODEL_NAME", "").strip() or "breast_cancer",
                tag=env.get("MODEL_TAG", "").strip(),
                runtime=_choice(env, "MODEL_RUNTIME", "auto", MODEL_RUNTIMES),
            ),
            serving=ServingSettings(
                predict_max_rows=_int(env, "PREDICT_MAX_ROWS", 1_000),
                predict_batch_max_rows=_int(env, "PREDICT_BATCH_MAX_ROWS", 100_000),
                max_batch_size=_int(env, "BATCH_MAX_SIZE", 32, minimum=2),
                max_latency_ms=_int(env, "BATCH_MAX_LATENCY_MS", 1_000),
                workers=_int(env, "WORKERS", 2),
                api_keys=Secret(env.get("API_KEYS", "")),
                max_body_bytes=_int(env, "MAX_BODY_BYTES", 64 * 2**20),
                max_in_flight=_int(env, "MAX_IN_FLIGHT", 128),
                max_body_bytes_in_flight=_int(env, "MAX_BODY_BYTES_IN_FLIGHT", 128 * 2**20),
                body_timeout_seconds=_float(env, "BODY_TIMEOUT_SECONDS", 30.0, 0.1, 3600.0),
                max_header_bytes=_int(env, "MAX_HEADER_BYTES", 64 * 2**10, minimum=4096),
                keepalive_max_requests=_int(env, "KEEPALIVE_MAX_REQUESTS", 1_000, minimum=0),
                keepalive_max_seconds=_float(env, "KEEPALIVE_MAX_SECONDS", 2.0, 0.0, 86_400.0),
                access_log=_bool(env, "ACCESS_LOG", True),
                tracing=_bool(env, "TRACING", False),
            ),
            payload_log=PayloadLogSettings(
                enabled=_bool(env, "PAYLOAD_LOG", True),
                directory=Path(
                    env.get("PAYLOAD_LOG_DIR", "").strip() or _home_dir(env, "payload-logs")
                ),
                sample_rate=_float(env, "PAYLOAD_LOG_SAMPLE_RATE", 1.0, 0.0, 1.0),
                max_rows=_int(env, "PAYLOAD_LOG_MAX_ROWS", 100, minimum=0),
                max_bytes=_int(env, "PAYLOAD_LOG_MAX_BYTES", 16 * 2**20),
                max_line_bytes=_int(env, "PAYLOAD_LOG_MAX_LINE_BYTES", 2**20, minimum=1024),
                backups=_int(env, "PAYLOAD_LOG_BACKUPS", 5, minimum=0),
                queue_size=_int(env, "PAYLOAD_LOG_QUEUE", 10_000),
            ),
            drift=DriftJobSettings(
                interval_minutes=_float(env, "DRIFT_INTERVAL_MINUTES", 60.0, 0.0, 7 * 24 * 60),
                runner=_choice(env, "DRIFT_RUNNER", "service", ("service", "external")),
                window_minutes=_int(env, "DRIFT_WINDOW_MINUTES", 60),
                min_rows=_int(env, "DRIFT_MIN_ROWS", 100),
                report_dir=Path(
                    env.get("DRIFT_REPORT_DIR", "").strip() or _home_dir(env, "drift-reports")
                ),
                keep_reports=_int(env, "DRIFT_KEEP_REPORTS", 48),
                webhook_url=env.get("DRIFT_WEBHOOK_URL", "").strip(),
                webhook_format=_choice(env, "DRIFT_WEBHOOK_FORMAT", "json", ("json", "slack")),
                workspace=_optional_path(env, "DRIFT_WORKSPACE"),
                workspace_keep=_int(env, "DRIFT_WORKSPACE_KEEP", 336),
            ),
            stream=_stream_settings(env),
        )


@cache
def settings() -> Settings:
    return Settings.from_env()
