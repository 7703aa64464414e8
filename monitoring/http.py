"""Read-only HTTP routes for the latest drift report."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from .schedule import REPORT_HTML, REPORT_JSON, latest_report


def drift_routes(report_dir: Path) -> list[Route]:
    def latest_file(name: str, media_type: str):
        async def endpoint(_: Request) -> Response:
            run = latest_report(report_dir)
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
        Route("/drift/latest", latest_file(REPORT_HTML, "text/html"), methods=["GET"]),
        Route("/drift/latest.json", latest_file(REPORT_JSON, "application/json"), methods=["GET"]),
    ]
