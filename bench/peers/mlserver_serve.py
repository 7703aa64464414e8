"""MLServer with its scikit-learn runtime, serving a pipeline saved with joblib.

Runs in its own virtualenv (bench/peers/mlserver.txt), without the project's packages:

    python bench/peers/mlserver_serve.py --model-path PIPELINE.joblib --model-name NAME \
        --dir DIR --http-port P1 --grpc-port P2 --metrics-port P3 [--workers 2]

Writes DIR/settings.json and DIR/NAME/model-settings.json, then becomes `mlserver start DIR`
(same process id) in DIR, so MLServer's files (.metrics, .envs) stay there. Every server of
MLServer listens on 127.0.0.1: its gRPC server cannot be turned off, so it gets a port too.
Other settings keep MLServer's defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", type=Path, required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2, help="parallel inference workers")
    return parser.parse_args(argv)


def write_settings(args: argparse.Namespace) -> None:
    folder = args.dir.resolve()
    model_dir = folder / args.model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": args.http_port,
        "grpc_port": args.grpc_port,
        "metrics_port": args.metrics_port,
        "parallel_workers": args.workers,
        "metrics_dir": str(folder / ".metrics"),
        "environments_dir": str(folder / ".envs"),
    }
    model = {
        "name": args.model_name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(args.model_path.resolve())},
    }
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    (model_dir / "model-settings.json").write_text(json.dumps(model, indent=2))


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    write_settings(args)
    os.chdir(args.dir)
    mlserver = str(Path(sys.executable).with_name("mlserver"))
    os.execv(mlserver, [mlserver, "start", "."])


if __name__ == "__main__":
    main(sys.argv[1:])
