"""Read-only routes beside the APIs: `/model` and the latest drift report (`/drift/*`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from monitoring.runs import SUMMARY_FILE, latest_run

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"
NO_REPORT = (
    "no drift report: no run has finished yet (see DRIFT_INTERVAL_MINUTES), or LATEST in "
    "the report directory names no run (see the service log)"
)


def drift_routes(report_dir: Path) -> list[Route]:
    """The latest run's files; 404 unless LATEST names a finished run in `report_dir`
    (`monitoring.runs.latest_run`) and the file is a file of that run."""

    def latest_file(name: str, media_type: str):
        async def endpoint(_: Request) -> Response:
            run = latest_run(report_dir)
            path = None if run is None else _file_in(run, name)
            if run is None or path is None:
                return JSONResponse({"error": NO_REPORT}, status_code=404)
            return FileResponse(path, media_type=media_type, headers={"X-Drift-Run": run.name})

        return endpoint

    return [
        Route("/drift/latest", latest_file(REPORT_FILE, "text/html"), methods=["GET"]),
        Route("/drift/latest.json", latest_file(SUMMARY_FILE, "application/json"), methods=["GET"]),
    ]


def _file_in(directory: Path, name: str) -> Path | None:
    """`directory / name` when it is a file that resolves to a path inside `directory`."""
    path = directory / name
    try:
        inside = path.resolve(strict=True).parent == directory.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not (inside and path.is_file()):
        logger.warning("%s is not a file of its drift run; not served", path)
        return None
    return path


def model_routes(model_info: Callable[[], dict[str, Any] | str]) -> list[Route]:
    """`GET /model`: the served model's tag, labels, metrics and schema; 503 with the reason
    when no model could be loaded (`model_info` returns that reason as text)."""

    async def endpoint(_: Request) -> JSONResponse:
        info = model_info()
        if isinstance(info, str):
            return JSONResponse({"error": info}, status_code=503)
        return JSONResponse(info)

    return [Route("/model", endpoint, methods=["GET"])]


def info_app(model_info: Callable[[], dict[str, Any] | str], report_dir: Path) -> Starlette:
    return Starlette(routes=[*model_routes(model_info), *drift_routes(report_dir)])
