"""The middleware stack in front of the APIs, outermost first, as one plain function.

A request passes through them in this order: keep-alive recycling (with several
workers), an id and an access-log line, the API key, the request limits (in-flight,
media type, body size), readiness, one error shape, then payload capture next to the
APIs. `service.py` adds them to the BentoML service; `wrap` applies the same stack to any
ASGI app, for tests without a server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp

from model.settings import Settings

from .access_log import AccessLog
from .capture import PayloadCapture
from .errors import ErrorShapes
from .guards import (
    DOC_PATHS,
    PROBE_PATHS,
    ApiKeyAuth,
    RequestLimits,
    RequireReady,
    parse_api_keys,
)
from .keep_alive import RecycleConnections
from .payload_log import Exchange

API_PATHS = frozenset({"/predict", "/predict_batch"})
ARROW_PATHS = frozenset({"/predict_batch"})
# /predict logs the instances it validated (capture.remember_instances); /predict_batch a
# sample of the rows it predicted on (capture.BatchCapture)
INSTANCE_LOG_PATHS = frozenset({"/predict"})


@dataclass(frozen=True)
class Layer:
    middleware: type
    options: dict[str, Any] = field(default_factory=dict)


def middleware_stack(
    settings: Settings,
    *,
    problem: Callable[[], str | None],
    submit: Callable[[Exchange], object],
    v2_paths: frozenset[str] = frozenset(),
    v2_layers: list[Layer] | None = None,
) -> list[Layer]:
    """The ordered stack; `problem` tells why the model is not serving (None: serving).

    `v2_paths` (the v2 infer routes) get the same limits and readiness check as the APIs,
    any media type, and `v2_layers` (their own reading and error shape) innermost.
    """
    serving = settings.serving
    layers: list[Layer] = []
    if serving.workers > 1 and (serving.keepalive_max_requests or serving.keepalive_max_seconds):
        limits = {
            "max_requests": serving.keepalive_max_requests or float("inf"),
            "max_seconds": serving.keepalive_max_seconds or float("inf"),
        }
        layers.append(Layer(RecycleConnections, limits))
    if serving.access_log:
        layers.append(Layer(AccessLog))
    layers += [
        Layer(ApiKeyAuth, {"keys": parse_api_keys(serving.api_keys.reveal())}),
        Layer(
            RequestLimits,
            {
                "max_body_bytes": serving.max_body_bytes,
                "max_in_flight": serving.max_in_flight,
                "max_body_bytes_in_flight": serving.max_body_bytes_in_flight,
                "body_timeout": serving.body_timeout_seconds,
                "paths": API_PATHS | v2_paths,
                "arrow_paths": ARROW_PATHS,
                "any_media_paths": v2_paths,
            },
        ),
        Layer(RequireReady, {"paths": API_PATHS | v2_paths, "problem": problem}),
        Layer(ErrorShapes, {"paths": API_PATHS}),
        Layer(
            PayloadCapture,
            {
                "paths": INSTANCE_LOG_PATHS,
                "submit": submit,
                "sample_rate": settings.payload_log.effective_sample_rate,
            },
        ),
        *(v2_layers or []),
    ]
    return layers


def route_paths(info: Starlette) -> frozenset[str]:
    """Every exact path the service answers: the APIs, probes, docs and `info`'s routes."""
    return API_PATHS | PROBE_PATHS | DOC_PATHS | {route.path for route in info.routes}


def wrap(app: ASGIApp, layers: list[Layer]) -> ASGIApp:
    """`app` behind `layers`, the first one outermost (as BentoML and Starlette stack them)."""
    for layer in reversed(layers):
        app = layer.middleware(app, **layer.options)
    return app
