"""KServe's model server with a `kserve.Model` serving a scikit-learn pipeline saved with joblib.

Runs in its own virtualenv (bench/peers/kserve.txt), without the project's packages:

    python bench/peers/kserve_server.py --model_path PIPELINE.joblib --model_name NAME \
        --http_port PORT --workers 2 [--host 127.0.0.1]

KServe's own options (`--workers`, `--http_port`, `--enable_grpc`, ...) apply as in any
KServe model server; gRPC is off unless `--enable_grpc true`. v1 protocol:
`POST /v1/models/NAME:predict` with `{"instances": [[...], ...]}`, rows in the order of the
pipeline's `feature_names_in_`; the answer is `{"predictions": [label, ...],
"probabilities": [[one per class], ...]}`.

Two changes to KServe 0.21's own behaviour, both outside request handling: its REST server
binds 0.0.0.0 whatever it is told, here it binds `--host`; and its parent gives a starting
worker more time before it replaces it as hung (see `tolerate_slow_worker_starts`).
"""

from __future__ import annotations

import argparse
from typing import Any

import joblib
import kserve
import pandas as pd
from kserve.protocol.rest import server as rest_server
from kserve.protocol.rest.multiprocess import server as multiprocess_server

# seconds a worker may take to answer its parent's ping, its own start included
WORKER_PING_TIMEOUT_S = 120.0


class Pipeline(kserve.Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        self.pipeline = joblib.load(self.path)
        self.columns = list(self.pipeline.feature_names_in_)
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: Any = None) -> dict[str, Any]:
        frame = pd.DataFrame(payload["instances"], columns=self.columns)
        probabilities = self.pipeline.predict_proba(frame)
        labels = self.pipeline.classes_[probabilities.argmax(axis=1)]
        return {"predictions": labels.tolist(), "probabilities": probabilities.tolist()}


def bind_rest_server_to(host: str) -> None:
    """KServe's REST server hard-codes host 0.0.0.0 in its uvicorn config; replace it."""
    original = rest_server.RESTServer.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.config.host = host

    rest_server.RESTServer.__init__ = init  # type: ignore[method-assign]


def tolerate_slow_worker_starts(timeout: float) -> None:
    """KServe's parent pings each worker every half second and replaces one that takes
    more than 5 s to answer; a worker answers only once it has imported KServe and
    unpickled the model, which takes longer than that on a busy 2-core machine, so the
    workers were replaced over and over and never served."""
    process = multiprocess_server.RESTServerProcess
    original = process.is_alive

    def is_alive(self: Any, timeout_s: float = timeout) -> bool:
        return original(self, timeout_s)

    process.is_alive = is_alive  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.set_defaults(enable_grpc=False)
    args, _ = parser.parse_known_args()
    bind_rest_server_to(args.host)
    tolerate_slow_worker_starts(WORKER_PING_TIMEOUT_S)
    model = Pipeline(args.model_name, args.model_path)
    server = kserve.ModelServer(
        http_port=args.http_port, workers=args.workers, enable_grpc=args.enable_grpc
    )
    server.start([model])


if __name__ == "__main__":
    main()
