"""The HTTP systems compared: ours as shipped and the two baselines, on the same model."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.local import Server
from bench.local import ServerCommand as Command

from .processes import ServerProcess

OURS, OURS_NO_LOG, OURS_ARROW = "ours", "ours_no_payload_log", "ours_arrow"
FASTAPI, DEFAULT_BENTO = "fastapi", "default_bento"
BASELINES = (FASTAPI, DEFAULT_BENTO)


@dataclass(frozen=True)
class System:
    key: str
    label: str
    description: str
    single_route: str | None  # None: no single-row points
    batch_route: str
    start: Callable[[Path], ServerProcess] | None
    """Starts the server, logging to the given file; None: measured on `server_of`'s."""
    body: str = "json"  # "arrow": batches sent and answered as Arrow IPC streams
    server_of: str | None = None


@dataclass(frozen=True)
class Context:
    tag: str
    home: Path
    work: Path


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def ours(context: Context, payload_log: bool) -> System:
    state = "on" if payload_log else "off"
    env = {
        "MODEL_TAG": context.tag,
        "PAYLOAD_LOG": state,
        "PAYLOAD_LOG_DIR": str(context.work / f"payload-logs-{state}"),
        "DRIFT_REPORT_DIR": str(context.work / "drift-reports"),
    }
    return System(
        key=OURS if payload_log else OURS_NO_LOG,
        label="ours" if payload_log else "ours, payload log off",
        description=f"`bentoml serve service:TabularModel`, settings as shipped, "
        f"PAYLOAD_LOG={state}; /predict (adaptive batching) and /predict_batch",
        single_route="/predict",
        batch_route="/predict_batch",
        start=lambda log: Server(context.home, log, **env),
    )


def ours_arrow(server_of: str) -> System:
    return System(
        key=OURS_ARROW,
        label="ours, Arrow",
        description="the same server as ours; /predict_batch with Arrow IPC stream bodies "
        "and answers (Content-Type and Accept: application/vnd.apache.arrow.stream)",
        single_route=None,
        batch_route="/predict_batch",
        start=None,
        body="arrow",
        server_of=server_of,
    )


LOOPBACK = ("--host", "127.0.0.1", "--port", "{port}")


def _baseline_env(context: Context) -> dict[str, str]:
    """The baselines load the same model from the same store as ours."""
    return {"MODEL_TAG": context.tag, "BENTOML_HOME": str(context.home)}


def fastapi(context: Context) -> System:
    argv = [sys.executable, "-m", "uvicorn", "bench.baselines.fastapi_app:app", *LOOPBACK]
    env = _baseline_env(context)
    return System(
        key=FASTAPI,
        label="FastAPI",
        description="`uvicorn bench.baselines.fastapi_app:app`: one process, sync handler, "
        "pydantic body, one predict_proba per request on a pandas frame",
        single_route="/predict",
        batch_route="/predict_batch",
        start=lambda log: Command(argv, log, env),
    )


def default_bento(context: Context) -> System:
    argv = [_bin("bentoml"), "serve", "bench.baselines.default_bento:DefaultBento", *LOOPBACK]
    env = _baseline_env(context)
    return System(
        key=DEFAULT_BENTO,
        label="default BentoML",
        description="`bentoml serve bench.baselines.default_bento:DefaultBento`: one "
        "batchable np.ndarray API, BentoML's default max_batch_size and max_latency_ms",
        single_route="/predict",
        batch_route="/predict",
        start=lambda log: Command(argv, log, env),
    )


def build(context: Context, payload_log: str, baselines: list[str]) -> list[System]:
    """Ours (payload log on, off or both) with JSON, then with Arrow, then the baselines."""
    systems = []
    if payload_log in ("on", "both"):
        systems.append(ours(context, payload_log=True))
    if payload_log in ("off", "both"):
        systems.append(ours(context, payload_log=False))
    systems.append(ours_arrow(server_of=systems[0].key))
    if FASTAPI in baselines:
        systems.append(fastapi(context))
    if DEFAULT_BENTO in baselines:
        systems.append(default_bento(context))
    return systems
