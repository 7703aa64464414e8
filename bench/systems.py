"""The HTTP systems compared on the same model: ours as shipped, two baselines a user could
write (FastAPI, default BentoML) and the peers a user could pick instead (MLServer, KServe),
each of those in its own virtualenv (bench/peer_venvs.py) running a script of bench/peers/."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import peer_venvs
from bench.local import ROOT, Server, free_port
from bench.local import ServerCommand as Command

from .processes import ServerProcess

OURS, OURS_NO_LOG, OURS_ARROW = "ours", "ours_no_payload_log", "ours_arrow"
OURS_V2 = "ours_v2"
FASTAPI, DEFAULT_BENTO = "fastapi", "default_bento"
MLSERVER, KSERVE = "mlserver", "kserve"
PEERS = (MLSERVER, KSERVE)
BASELINES = (FASTAPI, DEFAULT_BENTO, *PEERS)
PEER_WORKERS = 2  # as many worker processes as ours runs by default (WORKERS)
V2_READY = "/v2/health/ready"


@dataclass(frozen=True)
class System:
    key: str
    label: str
    description: str
    single_route: str | None  # None: no single-row points
    batch_route: str | None  # None: no batch points
    start: Callable[[Path], ServerProcess] | None
    """Starts the server, logging to the given file; None: measured on `server_of`'s."""
    body: str = "json"
    """json: `{"instances": ...}`; arrow: Arrow IPC streams both ways (batches only);
    mlserver: v2 tensors per column, pandas content type; v2: v2 in the form the server's
    model metadata advertises (read from the running server)."""
    answer: str = "instances"  # how its answer carries the probabilities (bench.bodies)
    server_of: str | None = None


@dataclass(frozen=True)
class Context:
    tag: str
    home: Path
    work: Path

    @property
    def model_name(self) -> str:
        return self.tag.split(":", 1)[0]

    def pipeline_file(self) -> Path:
        """The joblib pipeline in the model's store directory, which the peers load."""
        import bentoml

        from model.store import PIPELINE_FILE

        return Path(bentoml.models.get(self.tag).path_of(PIPELINE_FILE))


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


def ours_v2(context: Context, server_of: str) -> System:
    return System(
        key=OURS_V2,
        label="ours, v2",
        description="the same server as ours; single rows to "
        f"`/v2/models/{context.model_name}/infer` (Open Inference Protocol), in the input "
        "form its model metadata advertises, asking for predict and predict_proba",
        single_route=f"/v2/models/{context.model_name}/infer",
        batch_route=None,
        start=None,
        body="v2",
        answer="v2",
        server_of=server_of,
    )


def _peer_script(name: str) -> str:
    return str(ROOT / "bench" / "peers" / name)


def mlserver(context: Context) -> System:
    def start(log: Path) -> ServerProcess:
        argv = [
            str(peer_venvs.python(MLSERVER)),
            _peer_script("mlserver_serve.py"),
            f"--model-path={context.pipeline_file()}",
            f"--model-name={context.model_name}",
            f"--dir={log.with_suffix('')}-settings",
            "--http-port={port}",
            f"--grpc-port={free_port()}",
            f"--metrics-port={free_port()}",
            f"--workers={PEER_WORKERS}",
        ]
        return Command(argv, log, {}, ready_path=V2_READY)

    return System(
        key=MLSERVER,
        label="MLServer",
        description=f"MLServer {_pin(MLSERVER, 'mlserver')} with mlserver-sklearn "
        f"(`bench/peers/mlserver_serve.py`): the same joblib pipeline, "
        f"{PEER_WORKERS} parallel inference workers, MLServer's other settings as they "
        "come; single rows to `/v2/models/NAME/infer` (Open Inference Protocol), one tensor "
        "per feature with content type `pd` (MLServer's pandas codec builds the frame the "
        "pipeline selects columns from), asking for predict and predict_proba",
        single_route=f"/v2/models/{context.model_name}/infer",
        batch_route=None,
        start=start,
        body="mlserver",
        answer="v2",
    )


def kserve(context: Context) -> System:
    def start(log: Path) -> ServerProcess:
        argv = [
            str(peer_venvs.python(KSERVE)),
            _peer_script("kserve_server.py"),
            f"--model_path={context.pipeline_file()}",
            f"--model_name={context.model_name}",
            "--http_port={port}",
            f"--workers={PEER_WORKERS}",
        ]
        return Command(argv, log, {}, ready_path=V2_READY)

    return System(
        key=KSERVE,
        label="KServe",
        description=f"KServe {_pin(KSERVE, 'kserve')}'s model server with a `kserve.Model` "
        f"(`bench/peers/kserve_server.py`) serving the same joblib pipeline, "
        f"{PEER_WORKERS} workers, gRPC off; single rows to "
        f'`/v1/models/NAME:predict` (v1 protocol) as `{{"instances": [[...]]}}`, answering '
        "labels and probabilities",
        single_route=f"/v1/models/{context.model_name}:predict",
        batch_route=None,
        start=start,
        answer="kserve",
    )


def _pin(peer: str, package: str) -> str:
    """The version bench/peers/PEER.txt pins for `package`."""
    for line in peer_venvs.requirements(peer):
        name, _, pinned = line.partition("==")
        if name.strip() == package:
            return pinned.strip()
    return "(unpinned)"


def build(
    context: Context, payload_log: str, baselines: list[str], *, v2: bool = True
) -> list[System]:
    """Ours (payload log on, off or both) with JSON, Arrow and v2, then the baselines."""
    systems = []
    if payload_log in ("on", "both"):
        systems.append(ours(context, payload_log=True))
    if payload_log in ("off", "both"):
        systems.append(ours(context, payload_log=False))
    systems.append(ours_arrow(server_of=systems[0].key))
    if v2:
        systems.append(ours_v2(context, server_of=systems[0].key))
    if FASTAPI in baselines:
        systems.append(fastapi(context))
    if DEFAULT_BENTO in baselines:
        systems.append(default_bento(context))
    if MLSERVER in baselines:
        systems.append(mlserver(context))
    if KSERVE in baselines:
        systems.append(kserve(context))
    return systems
