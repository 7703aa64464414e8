"""Command line: `python -m train [fit] ...`, `list`, `promote`, `rollback`, `ensure`, `score`,
`export`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

from model import store
from model.settings import MODEL_RUNTIMES, settings

from .data import DataError, load_default, load_table
from .options import DEFAULT_TOLERANCE, ESTIMATORS, QualityGateError

if TYPE_CHECKING:
    from .score import ScoreSummary

# Training (and the ONNX conversion it runs) is imported by the commands that train:
# onnx and skl2onnx take about a second to import, which `score` and `list` would pay.

COMMANDS = ("fit", "list", "promote", "rollback", "ensure", "score", "export")
EXIT_BAD_ROWS = 3


def _add_fit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name",
        default=settings().model.name,
        help="model store name (default: MODEL_NAME, %(default)s)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="training table, .csv or .parquet (default: scikit-learn's "
        "bundled breast-cancer data)",
    )
    parser.add_argument("--target", help="target column of --data (required with --data)")
    parser.add_argument(
        "--task",
        choices=("classification", "regression"),
        help="override the task inferred from the target",
    )
    parser.add_argument(
        "--categorical",
        default="",
        help="comma-separated columns to treat as categorical even if numeric",
    )
    parser.add_argument(
        "--estimator",
        choices=ESTIMATORS,
        default="linear",
        help="estimator (default: %(default)s; logistic regression or ridge)",
    )
    parser.add_argument(
        "--test-size",
        type=float,
        default=0.2,
        help="held-out share for evaluation (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--min-score",
        type=float,
        help="quality gate: minimum primary metric (maximum for mae/rmse); "
        "below it nothing is registered and the exit code is 1",
    )
    parser.add_argument(
        "--gate-metric",
        help="metric the gate checks (default: roc_auc for classifiers, r2 for regressors)",
    )
    parser.add_argument(
        "--promote",
        action="store_true",
        help="promote the new version to production once registered",
    )
    parser.add_argument(
        "--onnx-tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="ONNX parity gate: largest |Δ probability| on a held-out row (regressors: "
        "|Δ prediction| over the target's standard deviation) (default: %(default)s)",
    )
    parser.add_argument(
        "--no-onnx", action="store_true", help="skip the ONNX conversion: serve with scikit-learn"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Train, evaluate and register models; manage their versions. "
        "Without a command, `fit` runs.",
    )
    commands = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    _add_fit_options(commands.add_parser("fit", help="train, evaluate, gate and register"))

    listing = commands.add_parser("list", help="list versions with stage and metrics")
    listing.add_argument("--name", default=settings().model.name, help="model name")

    promoting = commands.add_parser("promote", help="make a version the production one")
    promoting.add_argument("tag", help="name:version to promote")

    rolling = commands.add_parser("rollback", help="return production to the previous version")
    rolling.add_argument("--name", default=settings().model.name, help="model name")

    ensuring = commands.add_parser(
        "ensure", help="train and promote the default model unless one is stored already"
    )
    ensuring.add_argument("--name", default=settings().model.name, help="model name")

    scoring = commands.add_parser(
        "score", help="score a CSV/Parquet file in chunks (bounded memory), bad rows reported"
    )
    scoring.add_argument(
        "--model",
        default="",
        help="name:version, or a name (its promoted, else newest, version); "
        "default: MODEL_TAG, else MODEL_NAME's",
    )
    scoring.add_argument(
        "--input",
        required=True,
        help="rows to score, .csv or .parquet; with --engine spark also a directory, a glob "
        "or any URI Spark reads",
    )
    scoring.add_argument(
        "--output",
        required=True,
        help="predictions (and class probabilities), .csv or .parquet",
    )
    scoring.add_argument(
        "--errors", help="bad rows: row, column, problem (default: OUTPUT.errors.csv)"
    )
    scoring.add_argument(
        "--chunk-rows",
        type=int,
        default=50_000,
        help="rows read, checked and scored at a time (default: %(default)s)",
    )
    scoring.add_argument(
        "--keep", default="", help="comma-separated input columns copied to the output (e.g. an id)"
    )
    scoring.add_argument("--no-progress", action="store_true", help="no progress bar")
    scoring.add_argument(
        "--runtime",
        choices=MODEL_RUNTIMES,
        default=settings().model.runtime,
        help="what answers: auto (ONNX when it passed parity), onnx or sklearn "
        "(default: MODEL_RUNTIME, %(default)s)",
    )
    scoring.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="local: this process; spark: Apache Spark, outputs written as datasets "
        "(directories of part files); needs the spark extra (default: %(default)s)",
    )
    scoring.add_argument(
        "--master",
        help="Spark master URL with --engine spark (default: spark-submit's, else local[*])",
    )
    scoring.add_argument(
        "--partitions",
        type=int,
        help="Spark partitions with --engine spark (default: from the input size, at least "
        "one per core)",
    )

    exporting = commands.add_parser(
        "export", help="write the version's ONNX model and its feature schema, for devices"
    )
    exporting.add_argument(
        "--model", default="", help="name:version or a name (default: as for score)"
    )
    exporting.add_argument("--format", choices=("onnx",), default="onnx", help="only onnx")
    exporting.add_argument(
        "--out", required=True, help="the .onnx file; its schema goes beside it as .json"
    )
    return parser


def _fit(args: argparse.Namespace) -> int:
    from .training import TrainConfig, train

    if args.data is not None:
        if not args.target:
            raise DataError("--target is required with --data")
        features, target = load_table(args.data, args.target)
        source = str(args.data)
    else:
        features, target = load_default()
        source = "sklearn:breast_cancer"
    config = TrainConfig(
        name=args.name,
        estimator=args.estimator,
        task=args.task,
        categorical=[c.strip() for c in args.categorical.split(",") if c.strip()],
        test_size=args.test_size,
        seed=args.seed,
        min_score=args.min_score,
        gate_metric=args.gate_metric,
        promote=args.promote,
        source=source,
        onnx=not args.no_onnx,
        onnx_tolerance=args.onnx_tolerance,
    )
    result = train(features, target, config)
    print(
        json.dumps(
            {
                "tag": result.tag,
                "metrics": result.metrics,
                "primary_metric": result.primary_metric,
                "promoted": result.promoted,
                "onnx": result.onnx_status,
            }
        )
    )
    return 0


def _list(name: str) -> int:
    print(f"{'TAG':<40} {'STAGE':<12} {'PROMOTED_AT':<24} {'CREATED':<20} METRICS")
    for model in store.versions(name):
        labels, metadata = model.info.labels, model.info.metadata
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in metadata.get("metrics", {}).items())
        created = model.info.creation_time.strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"{model.tag!s:<40} {labels.get('stage', '-'):<12} "
            f"{labels.get('promoted_at', '-'):<24} {created:<20} {metrics}"
        )
    return 0


def _ensure(name: str) -> int:
    if store.versions(name):
        print(f"model store has {store.resolve_tag(name)}; not training")
        return 0
    from .training import TrainConfig, train

    features, target = load_default()
    result = train(features, target, TrainConfig(name=name, promote=True))
    print(f"trained and promoted {result.tag}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from .score import score_file

    if args.chunk_rows < 1:
        raise ValueError("--chunk-rows must be at least 1")
    tag = _chosen_tag(args.model)
    errors = args.errors or args.output.rstrip("/") + ".errors.csv"
    keep = tuple(c.strip() for c in args.keep.split(",") if c.strip())
    if args.engine == "spark":
        summary = _score_on_spark(args, store.load(tag, args.runtime), errors, keep)
    else:
        model = store.load(tag, args.runtime, pipeline_when_used=True)
        summary = score_file(
            model, Path(args.input), Path(args.output), Path(errors),
            chunk_rows=args.chunk_rows, keep=keep, progress=not args.no_progress,
        )  # fmt: skip
    print(json.dumps({"model": tag, "rows": summary.rows, "scored": summary.scored,
                      "bad_rows": summary.bad_rows, "output": str(args.output),
                      "errors": str(errors)}))  # fmt: skip
    if summary.bad_rows:
        print(f"{summary.bad_rows} bad rows not scored; see {errors}", file=sys.stderr)
        return EXIT_BAD_ROWS
    return 0


def _chosen_tag(model: str) -> str:
    """`name:version` as given, a name's promoted (else newest) version, else the settings'."""
    name, _, version = model.partition(":")
    return store.resolve_tag(
        name or settings().model.name, model if version else settings().model.tag
    )


def _export(args: argparse.Namespace) -> int:
    from .export import export_onnx

    tag = _chosen_tag(args.model)
    model_path, schema_path = export_onnx(tag, Path(args.out))
    print(json.dumps({"model": tag, "onnx": str(model_path), "schema": str(schema_path)}))
    return 0


def _score_on_spark(
    args: argparse.Namespace, model: store.LoadedModel, errors: str, keep: tuple[str, ...]
) -> ScoreSummary:
    if find_spec("pyspark") is None:
        raise ValueError("--engine spark needs pyspark: pip install 'tabular-model[spark]'")
    from .spark.engine import run

    return run(model, args.input, args.output, errors, master=args.master, keep=keep,
               partitions=args.partitions, chunk_rows=args.chunk_rows,
               progress=not args.no_progress)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "fit")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    store.use_packaged_models()
    try:
        if args.command == "fit":
            return _fit(args)
        if args.command == "list":
            return _list(args.name)
        if args.command == "promote":
            print(f"production: {store.promote(args.tag)}")
            return 0
        if args.command == "rollback":
            print(f"production: {store.rollback(args.name)}")
            return 0
        if args.command == "score":
            return _score(args)
        if args.command == "export":
            return _export(args)
        return _ensure(args.name)
    except QualityGateError as exc:
        print(f"quality gate failed: {exc}; nothing registered", file=sys.stderr)
        return 1
    except (DataError, store.RegistryError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
