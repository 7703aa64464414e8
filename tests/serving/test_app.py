"""The middleware stack as service.py builds it, in order, on a small ASGI app (no server)."""

from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from model.settings import Settings
from serving.access_log import AccessLog
from serving.app import middleware_stack, wrap
from serving.capture import PayloadCapture, remember_instances
from serving.errors import ErrorShapes
from serving.guards import ApiKeyAuth, RequestLimits, RequireReady
from serving.keep_alive import RecycleConnections
from tests.serving.test_guards import call

KEY = {"X-API-Key": "k1"}
JSON = {"Content-Type": "application/json"}


async def predict(request: Request) -> JSONResponse:
    body = await request.body()
    if body == b"invalid":  # BentoML's shape for a validation error
        return JSONResponse([{"error": "bad", "detail": []}], status_code=400)
    remember_instances(request.scope, [(len(body),)])  # as the input spec does
    return JSONResponse({"received": len(body)})


APP = Starlette(
    routes=[
        Route("/predict", predict, methods=["POST"]),
        Route("/livez", lambda _: PlainTextResponse("ok")),
    ]
)


def stacked(env: dict[str, str], problem: str | None = None) -> tuple[object, list]:
    submitted: list = []
    settings = Settings.from_env({"API_KEYS": "k1", "MAX_BODY_BYTES": "100", **env})
    layers = middleware_stack(settings, problem=lambda: problem, submit=submitted.append)
    return wrap(APP, layers), submitted


def test_the_stack_is_in_request_order():
    settings = Settings.from_env({})
    layers = middleware_stack(settings, problem=lambda: None, submit=print)
    assert [layer.middleware for layer in layers] == [
        RecycleConnections,
        AccessLog,
        ApiKeyAuth,
        RequestLimits,
        RequireReady,
        ErrorShapes,
        PayloadCapture,
    ]


def test_without_access_log_the_stack_starts_at_the_key():
    settings = Settings.from_env({"ACCESS_LOG": "off", "WORKERS": "1"})
    layers = middleware_stack(settings, problem=lambda: None, submit=print)
    assert layers[0].middleware is ApiKeyAuth


@pytest.mark.parametrize(
    "env",
    [
        {"WORKERS": "1"},
        {"KEEPALIVE_MAX_REQUESTS": "0", "KEEPALIVE_MAX_SECONDS": "0"},
    ],
)
def test_connections_are_recycled_only_with_several_workers_and_a_limit(env):
    layers = middleware_stack(Settings.from_env(env), problem=lambda: None, submit=print)
    assert RecycleConnections not in [layer.middleware for layer in layers]


def test_a_caller_without_a_key_learns_nothing_about_limits_or_readiness():
    app, submitted = stacked({}, problem="model missing")
    response = call(app, "POST", "/predict", content=b"x" * 1_000, headers=JSON)
    assert response.status_code == 401
    assert response.headers["x-request-id"]  # the access log, outermost, saw it too
    assert submitted == []


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"x" * 1_000, JSON, 413),
        (b"{}", {"Content-Type": "text/csv"}, 415),
    ],
)
def test_limits_come_before_readiness(body, headers, status):
    app, _ = stacked({}, problem="model missing")
    response = call(app, "POST", "/predict", content=body, headers={**KEY, **headers})
    assert response.status_code == status


def test_an_unready_model_answers_503_with_the_reason():
    app, submitted = stacked({}, problem="model missing")
    response = call(app, "POST", "/predict", content=b"{}", headers={**KEY, **JSON})
    assert response.status_code == 503
    assert response.json() == {"error": "not serving: model missing"}
    assert submitted == []


def test_errors_are_shaped_and_not_logged():
    app, submitted = stacked({})
    response = call(app, "POST", "/predict", content=b"invalid", headers={**KEY, **JSON})
    assert response.status_code == 400
    assert response.json() == {"error": "bad", "detail": []}
    assert submitted == []


def test_an_answer_is_logged_under_the_request_id_it_echoes():
    app, submitted = stacked({})
    headers = {**KEY, **JSON, "X-Request-ID": "abc-1"}
    response = call(app, "POST", "/predict", content=b"{}", headers=headers)
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "abc-1"
    (exchange,) = submitted
    assert exchange.request_id == "abc-1"
    assert exchange.instances == [(2,)]
    assert json.loads(exchange.response_body) == {"received": 2}


def test_probes_pass_without_a_key_even_when_unready():
    app, _ = stacked({}, problem="model missing")
    assert call(app, "GET", "/livez").status_code == 200


def test_payload_log_off_captures_nothing():
    app, submitted = stacked({"PAYLOAD_LOG": "off"})
    response = call(app, "POST", "/predict", content=b"{}", headers={**KEY, **JSON})
    assert response.status_code == 200
    assert submitted == []
