"""The v2 routes beside infer: server and model metadata, health, and 404 for the rest.

Every answer is JSON; errors are `{"error": "..."}`: 404 for a model or version this
server does not serve (or any other path under /v2), 503 while the model is not ready.
`/docs.json` gets these routes too (`V2OpenAPI`), and the versioned infer route.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from copy import deepcopy
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .v2_protocol import ServedModel, server_metadata

HEALTH_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
MODEL = "/v2/models/{model_name}"
VERSION = "/v2/models/{model_name}/versions/{model_version}"
# every route template under /v2: the metrics label of a v2 request
TEMPLATES = (
    "/v2",
    *sorted(HEALTH_PATHS),
    MODEL,
    f"{MODEL}/ready",
    f"{MODEL}/infer",
    VERSION,
    f"{VERSION}/ready",
    f"{VERSION}/infer",
    "/v2/{path:path}",
)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def v2_app(
    served: ServedModel, problem: Callable[[], str | None], server_version: str
) -> Starlette:
    """`problem` tells why the model is not serving (None: it is)."""

    def unknown(request: Request) -> JSONResponse | None:
        """404 unless the path names the served model (and version, if it names one)."""
        name = request.path_params["model_name"]
        version = request.path_params.get("model_version")
        if name != served.name:
            return error(404, f"unknown model '{name}'; this server serves '{served.name}'")
        if version is not None and version != served.version:
            return error(
                404,
                f"unknown version '{version}' of model '{name}'; this server serves version "
                f"'{served.version}'",
            )
        return None

    async def server(_: Request) -> JSONResponse:
        return JSONResponse(server_metadata(server_version))

    async def live(_: Request) -> JSONResponse:
        return JSONResponse({"live": True})

    async def ready(_: Request) -> JSONResponse:
        reason = problem()
        if reason is not None:
            return error(503, f"not ready: {reason}")
        return JSONResponse({"ready": True})

    async def model(request: Request) -> JSONResponse:
        refused = unknown(request)
        if refused is not None:
            return refused
        reason = problem()
        if reason is not None or served.schema is None:
            return error(503, f"not ready: {reason or 'no model'}")
        return JSONResponse(served.metadata())

    async def model_ready(request: Request) -> JSONResponse:
        refused = unknown(request)
        if refused is not None:
            return refused
        reason = problem()
        if reason is not None:
            return error(503, f"not ready: {reason}")
        return JSONResponse({"name": served.name, "ready": True})

    async def infer(request: Request) -> JSONResponse:
        # the served model's infer paths are answered by the API before this route
        return unknown(request) or error(404, f"no such route: {request.url.path}")

    async def other(request: Request) -> JSONResponse:
        return error(404, f"no such route: {request.url.path}")

    everything = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(
        routes=[
            Route("/v2", server, methods=["GET"]),
            Route("/v2/health/live", live, methods=["GET"]),
            Route("/v2/health/ready", ready, methods=["GET"]),
            Route(MODEL, model, methods=["GET"]),
            Route(f"{MODEL}/ready", model_ready, methods=["GET"]),
            Route(VERSION, model, methods=["GET"]),
            Route(f"{VERSION}/ready", model_ready, methods=["GET"]),
            Route(f"{MODEL}/infer", infer, methods=["POST"]),
            Route(f"{VERSION}/infer", infer, methods=["POST"]),
            Route("/v2/{path:path}", other, methods=everything),
        ]
    )


# ------------------------------------------------------------------------------ OpenAPI


def _get(summary: str, parameters: list[str], ok: dict[str, Any]) -> dict[str, Any]:
    errors = {"404": _error_response("Unknown model or version")} if parameters else {}
    return {
        "get": {
            "tags": ["Open Inference Protocol (v2)"],
            "summary": summary,
            "operationId": "v2_" + summary.lower().replace(" ", "_"),
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in parameters
            ],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": ok}}},
                **errors,
                "503": _error_response("The model is not ready"),
            },
        }
    }


def _error_response(description: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    }
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_paths(served: ServedModel, infer: dict[str, Any] | None) -> dict[str, Any]:
    """The v2 routes as OpenAPI path items; `infer` is BentoML's item for the infer API."""
    obj = {"type": "object"}
    ready = {"type": "object", "properties": {"ready": {"type": "boolean"}}}
    paths: dict[str, Any] = {
        "/v2": _get("Server metadata", [], obj),
        "/v2/health/live": _get("Server live", [], obj),
        "/v2/health/ready": _get("Server ready", [], ready),
        MODEL: _get("Model metadata", ["model_name"], obj),
        f"{MODEL}/ready": _get("Model ready", ["model_name"], ready),
        VERSION: _get("Model version metadata", ["model_name", "model_version"], obj),
        f"{VERSION}/ready": _get("Model version ready", ["model_name", "model_version"], ready),
    }
    if infer is not None and "post" in infer:
        versioned = deepcopy(infer)
        post = versioned["post"]
        post["operationId"] = f"{post.get('operationId', 'v2_infer')}_version"
        post.pop("x-bentoml-name", None)  # not an API of its own for BentoML's client
        paths[served.infer_paths[1]] = versioned
    return paths


class V2OpenAPI:
    """Adds the v2 routes to BentoML's `/docs.json`, and hides the vectorised API's route."""

    def __init__(
        self, app: ASGIApp, *, served: ServedModel, vectorised_path: str, path: str = "/docs.json"
    ) -> None:
        self.app = app
        self.served = served
        self.vectorised_path = vectorised_path
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def extend(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            assert start is not None
            body = b"".join(chunks)
            if start["status"] == 200:
                body = self._extended(body)
            headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, extend)

    def _extended(self, body: bytes) -> bytes:
        spec = json.loads(body)
        paths = spec.setdefault("paths", {})
        paths.pop(self.vectorised_path, None)
        paths.update(openapi_paths(self.served, paths.get(self.served.infer_paths[0])))
        return json.dumps(spec).encode()
