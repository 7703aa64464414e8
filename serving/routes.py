"""Read-only routes beside the APIs: `/model` and the latest drift report (`/drift/*`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from monitoring.runs import SUMMARY_FILE, latest_run

REPORT_FILE = "report.html"


def drift_routes(report_dir: Path) -> list[Route]:
    def latest_file(name: str, media_type: str):
        async def endpoint(_: Request) -> Response:
            run = latest_run(report_dir)
            if run is None or not (run / name).is_file():
                return JSONResponse(
                    {
                        "error": "no drift report yet: the first scheduled run has not finished "
                        "(see DRIFT_INTERVAL_MINUTES)"
                    },
                    status_code=404,
                )
            return FileResponse(
                run / name, media_type=media_type, headers={"X-Drift-Run": run.name}
            )

        return endpoint

    return [
        Route("/drift/latest", latest_file(REPORT_FILE, "text/html"), methods=["GET"]),
        Route("/drift/latest.json", latest_file(SUMMARY_FILE, "application/json"), methods=["GET"]),
    ]


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
