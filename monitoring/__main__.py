"""Command line for monitoring: `python -m monitoring drift --help`.

Exit status: 0 when the report is written, 3 when drift is detected and
`--fail-on-drift` is given, 2 on bad arguments or input (one line on stderr),
4 when the current data has fewer rows than `--min-rows` (nothing written).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

from model.outputs import PREDICTION_COLUMN
from monitoring import runs
from monitoring.inputs import InputError

if TYPE_CHECKING:
    import pandas as pd

    from model.schema import FeatureSchema
    from monitoring.drift import DriftResult, DriftSettings

T = TypeVar("T")

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_DRIFT = 3
EXIT_TOO_FEW_ROWS = 4
DEFAULT_PREDICTION_COLUMN = PREDICTION_COLUMN

REPORT_FILE = "report.html"
SUMMARY_FILE = runs.SUMMARY_FILE


class _Parser(argparse.ArgumentParser):
    """Reports a bad argument in one line, with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m monitoring", description="Model monitoring tools.")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    drift = commands.add_parser(
        "drift",
        help="compare current data with a model's reference sample",
        description=(
            "Compare current data with a reference sample, column by column, with Evidently; "
            f"write DIR/{REPORT_FILE} and DIR/{SUMMARY_FILE}. Exit 3 on drift with "
            "--fail-on-drift, 2 on bad arguments or input."
        ),
    )
    _add_data_options(drift)
    _add_schema_options(drift)
    _add_drift_options(drift)
    _add_output_options(drift)
    return parser


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument(
        "--model",
        metavar="TAG",
        help="model in the model store, name:version or a name (its promoted, else newest, "
        "version): its schema decides the columns and kinds compared, and its stored "
        "reference sample is the reference unless --reference is given",
    )
    data.add_argument(
        "--reference",
        metavar="REF",
        type=_existing_file,
        help="reference data, a .csv or .parquet file (required without --model)",
    )
    current = data.add_mutually_exclusive_group(required=True)
    current.add_argument(
        "--current",
        metavar="CUR",
        type=_existing_file,
        help="current data to check, a .csv or .parquet file",
    )
    current.add_argument(
        "--logs",
        metavar="DIR",
        type=Path,
        help="current data from the service's payload log directory (PAYLOAD_LOG_DIR); "
        "with --model, only requests that model answered",
    )
    since = data.add_mutually_exclusive_group()
    since.add_argument(
        "--since",
        metavar="TIME",
        type=_timestamp,
        help="with --logs: requests at or after this ISO-8601 time (UTC if no zone)",
    )
    since.add_argument(
        "--window",
        metavar="DURATION",
        type=_duration,
        help="with --logs: requests of the last DURATION, e.g. 90s, 30m, 6h, 7d",
    )
    data.add_argument(
        "--min-rows",
        metavar="N",
        type=int,
        help=f"exit {EXIT_TOO_FEW_ROWS} without a report when the current data has fewer "
        "rows (for scheduled runs; without it, empty current data is an error)",
    )


def _add_schema_options(parser: argparse.ArgumentParser) -> None:
    schema = parser.add_argument_group("columns (without --model)")
    schema.add_argument(
        "--target", metavar="COLUMN", help="target column of REF, left out of the features"
    )
    schema.add_argument(
        "--prediction",
        metavar="COLUMN",
        default=DEFAULT_PREDICTION_COLUMN,
        help="prediction column, judged on its own when both files have it "
        f"(default: {DEFAULT_PREDICTION_COLUMN!r})",
    )
    schema.add_argument(
        "--categorical",
        metavar="COLUMN",
        action="append",
        default=[],
        help="treat this column as categorical even if numeric (repeatable)",
    )
    schema.add_argument(
        "--exclude",
        metavar="COLUMN",
        action="append",
        default=[],
        help="leave this column of REF out of the comparison, e.g. an id (repeatable)",
    )
    schema.add_argument(
        "--task",
        choices=("classification", "regression"),
        help="kind of model, which decides whether the prediction is categorical or numeric "
        "(default: inferred from the target, else from the prediction)",
    )


def _add_drift_options(parser: argparse.ArgumentParser) -> None:
    drift = parser.add_argument_group("drift rules (default: Evidently's)")
    drift.add_argument(
        "--drift-share",
        metavar="SHARE",
        type=float,
        default=0.5,
        help="dataset drift when at least this share of features drifted (default: 0.5)",
    )
    drift.add_argument(
        "--threshold", metavar="VALUE", type=float, help="stattest threshold for every column"
    )
    drift.add_argument(
        "--num-threshold", metavar="VALUE", type=float, help="threshold for numeric columns"
    )
    drift.add_argument(
        "--cat-threshold", metavar="VALUE", type=float, help="threshold for categorical columns"
    )
    drift.add_argument(
        "--column-threshold",
        metavar="COLUMN=VALUE",
        action="append",
        default=[],
        help="threshold for one column (repeatable)",
    )
    drift.add_argument(
        "--method", metavar="NAME", help="Evidently stattest for every column, e.g. psi, ks"
    )
    drift.add_argument("--num-method", metavar="NAME", help="stattest for numeric columns")
    drift.add_argument("--cat-method", metavar="NAME", help="stattest for categorical columns")
    drift.add_argument(
        "--column-method",
        metavar="COLUMN=NAME",
        action="append",
        default=[],
        help="stattest for one column (repeatable)",
    )
    drift.add_argument(
        "--no-prediction",
        action="store_true",
        help="do not judge the prediction column",
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    output = parser.add_argument_group("output")
    where = output.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help=f"directory for {REPORT_FILE} and {SUMMARY_FILE} (created if missing)",
    )
    where.add_argument(
        "--runs",
        metavar="DIR",
        type=Path,
        help="keep every run: write into a new DIR/<UTC time>/ and point DIR/LATEST at it "
        "(the layout the service's /drift/latest reads)",
    )
    output.add_argument(
        "--keep",
        metavar="N",
        type=int,
        default=48,
        help="with --runs: runs kept, older ones deleted (default: %(default)s)",
    )
    output.add_argument(
        "--no-html", action="store_true", help=f"write only {SUMMARY_FILE}, not {REPORT_FILE}"
    )
    output.add_argument(
        "--workspace",
        metavar="DIR",
        type=Path,
        help="also add the run to the model's project in this Evidently Workspace, for "
        "`evidently ui --workspace DIR` (default: DRIFT_WORKSPACE; none when unset); "
        "a failure is logged, not fatal",
    )
    output.add_argument(
        "--notify",
        action="store_true",
        help="when drift is detected, post the result to DRIFT_WEBHOOK_URL "
        "(DRIFT_WEBHOOK_FORMAT json or slack); a failed delivery is logged, not fatal",
    )
    output.add_argument(
        "--fail-on-drift",
        action="store_true",
        help=f"exit with status {EXIT_DRIFT} when dataset drift is detected",
    )
    output.add_argument(
        "--workers",
        metavar="N",
        type=int,
        help="threads judging columns at once (default: CPU count, at most 4)",
    )
    output.add_argument(
        "--quiet", action="store_true", help="log only warnings and errors to stderr"
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_arguments(parser, args)
    _configure_logging(quiet=args.quiet)
    from monitoring.drift import DriftInputError

    try:
        return run_drift(args)
    except (InputError, DriftInputError) as exc:
        print(f"python -m monitoring drift: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What can be checked before any data is read, reported like argparse's own errors."""
    if args.model is None and args.reference is None:
        parser.error("--reference is required without --model")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.logs is None and (args.since is not None or args.window is not None):
        parser.error("--since and --window need --logs")
    if args.keep < 1:
        parser.error("--keep must be at least 1")
    if args.min_rows is not None and args.min_rows < 1:
        parser.error("--min-rows must be at least 1")


def _timestamp(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO-8601 time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: str) -> timedelta:
    number, unit = value[:-1], value[-1:].lower()
    try:
        seconds = float(number) * _UNITS[unit]
    except (KeyError, ValueError) as exc:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a duration like 90s, 30m, 6h or 7d"
        ) from exc
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be positive")
    return timedelta(seconds=seconds)


def _existing_file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{value}: no such file")
    return path


def run_drift(args: argparse.Namespace) -> int:
    from monitoring.drift import compute_drift

    settings = _settings(args)
    schema, reference = _load_reference(args)
    current = _load_current(args, schema)
    if args.min_rows is not None and len(current) < args.min_rows:
        print(
            f"python -m monitoring drift: {len(current)} current rows, fewer than "
            f"--min-rows {args.min_rows}; no report written",
            file=sys.stderr,
        )
        return EXIT_TOO_FEW_ROWS
    result = compute_drift(
        reference,
        current,
        schema,
        model=args.model or "",
        settings=settings,
        include_prediction=not args.no_prediction,
        prediction_column=args.prediction,
        workers=args.workers,
    )
    if args.runs is not None:
        run = runs.new_run(args.runs)
        written = _write(result, run, html=not args.no_html)
        runs.mark_latest(args.runs, run, keep=args.keep)
        run_name = run.name
    else:
        written = _write(result, args.out, html=not args.no_html)
        run_name = result.generated_at.strftime(runs.RUN_NAME_FORMAT)
    _add_to_workspace(args, result, run_name)
    print(_summary(result, written))
    if args.notify and result.drift_detected:
        _notify(result)
    return EXIT_DRIFT if result.drift_detected and args.fail_on_drift else EXIT_OK


def _settings(args: argparse.Namespace) -> DriftSettings:
    from pydantic import ValidationError

    from monitoring.drift import DriftSettings

    try:
        return DriftSettings(
            drift_share=args.drift_share,
            method=args.method,
            num_method=args.num_method,
            cat_method=args.cat_method,
            per_column_method=_pairs(args.column_method, "--column-method", str),
            threshold=args.threshold,
            num_threshold=args.num_threshold,
            cat_threshold=args.cat_threshold,
            per_column_threshold=_pairs(args.column_threshold, "--column-threshold", float),
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}"
            for e in exc.errors()
        )
        raise InputError(problems) from exc


def _pairs(values: list[str], option: str, convert: Callable[[str], T]) -> dict[str, T]:
    pairs: dict[str, T] = {}
    for value in values:
        column, sep, setting = value.partition("=")
        if not sep or not column or not setting:
            raise InputError(f"{option} wants COLUMN=VALUE, not {value!r}")
        try:
            pairs[column] = convert(setting)
        except ValueError as exc:
            raise InputError(f"{option} {value!r}: {exc}") from exc
    return pairs


def _load_reference(args: argparse.Namespace) -> tuple[FeatureSchema, pd.DataFrame]:
    from monitoring.inputs import infer_schema, read_table

    if args.model:
        args.model = _resolved_tag(args.model)
        schema = _stored_schema(args.model)
        if args.reference is not None:
            return schema, read_table(args.reference, schema.categorical)
        return schema, _stored_reference(args.model)
    reference = read_table(args.reference, args.categorical)
    schema = infer_schema(
        reference,
        target=args.target,
        prediction=args.prediction,
        categorical=args.categorical,
        exclude=args.exclude,
        task=args.task,
    )
    return schema, reference


def _load_current(args: argparse.Namespace, schema: FeatureSchema) -> pd.DataFrame:
    """The data to judge: a file, or the payload log's requests in the chosen window."""
    from monitoring.inputs import read_table

    if args.logs is not None:
        return _logged_current(args, schema)

    text_columns = list(schema.categorical)
    if schema.task == "classification":
        text_columns.append(args.prediction)
    return read_table(args.current, text_columns)


def _logged_current(args: argparse.Namespace, schema: FeatureSchema) -> pd.DataFrame:
    from monitoring import payloads

    if not args.logs.is_dir():
        raise InputError(f"--logs {args.logs}: no such directory")
    since = args.since
    if args.window is not None:
        since = datetime.now(UTC) - args.window
    records = payloads.read_records(args.logs, since=since)
    if args.model:
        records = [r for r in records if r.get("model") == args.model]
    try:
        current = payloads.to_frame(records, schema)
    except (KeyError, ValueError, TypeError) as exc:
        raise InputError(f"--logs {args.logs}: records do not match the schema: {exc}") from exc
    if schema.task == "classification":
        current[args.prediction] = current[args.prediction].map(str)
    return current


def _resolved_tag(name_or_tag: str) -> str:
    """A bare name means its promoted (else newest) version, as the service resolves it."""
    try:
        from model.store import resolve_tag, use_packaged_models

        use_packaged_models()
        name, _, version = name_or_tag.partition(":")
        return resolve_tag(name, name_or_tag if version else "")
    except Exception as exc:  # as in _stored_schema
        raise InputError(f"cannot find model {name_or_tag!r}: {_one_line(exc)}") from exc


def _stored_schema(tag: str) -> FeatureSchema:
    try:
        from model.store import load_schema

        return load_schema(tag)
    except Exception as exc:  # the store reports a missing or broken model in many ways
        raise InputError(f"cannot load the schema of model {tag!r}: {_one_line(exc)}") from exc


def _stored_reference(tag: str) -> pd.DataFrame:
    try:
        from model.store import load_reference

        return load_reference(tag)
    except Exception as exc:  # as above
        raise InputError(f"cannot load the reference sample of {tag!r}: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _write(result: DriftResult, directory: Path, *, html: bool) -> list[Path]:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        summary = directory / SUMMARY_FILE
        summary.write_text(result.to_json() + "\n", encoding="utf-8")
        written = [summary]
        if html:
            written.append(result.save_html(directory / REPORT_FILE))
    except OSError as exc:
        raise InputError(f"{directory}: {exc.strerror or exc}") from exc
    return written


def _add_to_workspace(args: argparse.Namespace, result: DriftResult, run_name: str) -> None:
    from model.settings import settings

    config = settings().drift
    directory = args.workspace or config.workspace
    if directory is None:
        return
    from monitoring.workspace import record_run

    try:
        record_run(
            directory,
            result,
            model=result.model or "model",
            run_name=run_name,
            keep=config.workspace_keep,
        )
    except Exception:
        # the run's own files are written; the history misses one point
        logging.getLogger("monitoring").exception(
            "could not add drift run %s to the workspace %s", run_name, directory
        )


def _notify(result: DriftResult) -> None:
    from model.settings import settings
    from monitoring.notify import notify_drift

    config = settings()
    if not config.drift.webhook_url:
        logging.getLogger("monitoring").warning("--notify: DRIFT_WEBHOOK_URL is not set")
        return
    notify_drift(result.to_dict(), config.drift.webhook_url, fmt=config.drift.webhook_format)


def _summary(result: DriftResult, written: list[Path]) -> str:
    drifted = sum(c.drifted for c in result.columns.values())
    verdict = "drift detected" if result.drift_detected else "no drift"
    prediction = ""
    if result.prediction is not None:
        prediction = f"; prediction {'drifted' if result.prediction.drifted else 'stable'}"
    files = ", ".join(str(p) for p in written)
    return (
        f"{verdict}: {drifted} of {len(result.columns)} features drifted "
        f"(share {result.share_drifted:.2f}){prediction}; wrote {files}"
    )


def _configure_logging(*, quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("monitoring").setLevel(logging.WARNING if quiet else logging.INFO)


if __name__ == "__main__":
    sys.exit(main())
