"""Read-only HTTP routes for the latest drift report."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from .runs import SUMMARY_FILE, latest_run

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
