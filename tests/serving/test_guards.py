"""HTTP guards and the access log, on a small ASGI app (no server)."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from model.settings import Secret, Settings
from serving.access_log import AccessLog, JsonFormatter
from serving.errors import ErrorShapes, shape_error
from serving.guards import ApiKeyAuth, RequestLimits, RequireReady, parse_api_keys

API = frozenset({"/predict"})


async def predict(request: Request) -> JSONResponse:
    body = await request.body()
    if body.startswith(b"slow"):
        await asyncio.sleep(0.3)
    return JSONResponse({"received": len(body)})


async def bento_style_error(request: Request) -> JSONResponse:
    return JSONResponse([{"error": "bad thing"}], status_code=int(await request.body()))


APP = Starlette(
    routes=[
        Route("/predict", predict, methods=["POST"]),
        Route("/error", bento_style_error, methods=["POST"]),
        Route("/livez", lambda _: PlainTextResponse("ok")),
    ]
)


def call(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(run())


def test_api_keys_are_parsed_and_never_printed():
    assert parse_api_keys(" a, ,b ,") == (b"a", b"b")
    settings = Settings.from_env({"API_KEYS": "k1,k2"})
    assert "k1" not in repr(settings) and "k1" not in str(settings.serving.api_keys)
    assert settings.serving.api_keys.reveal() == "k1,k2" and not Secret("")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Basic old"}, 401),
        ({"Authorization": "Bearer old"}, 200),
        ({"authorization": "bearer new"}, 200),
        ({"X-API-Key": "new"}, 200),
        ({"X-API-Key": "ne"}, 401),
    ],
)
def test_api_keys_protect_predictions(headers, status):
    app = ApiKeyAuth(APP, keys=(b"old", b"new"))
    response = call(app, "POST", "/predict", content=b"x", headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.json()["error"].startswith("missing or invalid API key")
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_probes_need_no_key_and_no_keys_means_no_auth():
    assert call(ApiKeyAuth(APP, keys=(b"k",)), "GET", "/livez").status_code == 200
    assert call(ApiKeyAuth(APP, keys=()), "POST", "/predict", content=b"x").status_code == 200


def test_body_size_limit_is_a_413_with_or_without_content_length():
    app = RequestLimits(APP, max_body_bytes=10, max_in_flight=5, paths=API)
    assert call(app, "POST", "/predict", content=b"x" * 10).json() == {"received": 10}
    too_big = call(app, "POST", "/predict", content=b"x" * 11)
    assert too_big.status_code == 413 and "MAX_BODY_BYTES" in too_big.json()["error"]

    async def chunks():
        yield b"x" * 6
        yield b"x" * 6

    assert call(app, "POST", "/predict", content=chunks()).status_code == 413


def test_requests_beyond_the_in_flight_limit_are_shed_with_retry_after():
    app = RequestLimits(APP, max_body_bytes=100, max_in_flight=2, paths=API)

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(
                *(client.post("/predict", content=b"slow") for _ in range(5))
            )

    statuses = sorted(r.status_code for r in asyncio.run(burst()))
    assert statuses == [200, 200, 503, 503, 503]
    shed = next(r for r in asyncio.run(burst()) if r.status_code == 503)
    assert shed.headers["retry-after"] == "1" and shed.json()["error"].startswith("overloaded")
    assert app.in_flight == 0
    assert call(app, "POST", "/predict", content=b"slow").status_code == 200


async def _raw_receive_app(app, messages, pause: float = 0.0) -> tuple[int, dict]:
    """Drives `app` with the given request body messages, `pause` seconds apart."""
    queue = list(messages)
    sent: list[dict] = []

    async def receive() -> dict:
        if queue:
            await asyncio.sleep(pause)
            return queue.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body)


def test_a_body_not_received_in_time_is_a_408_and_frees_what_it_held():
    app = RequestLimits(APP, max_body_bytes=100, max_in_flight=5, paths=API, body_timeout=0.2)
    trickle = [{"type": "http.request", "body": b"x", "more_body": True}] * 100
    status, body = asyncio.run(_raw_receive_app(app, trickle, pause=0.05))
    assert status == 408 and "BODY_TIMEOUT_SECONDS" in body["error"]
    assert app.body_bytes == 0 and app.in_flight == 0


def test_slow_bodies_hold_no_answering_slot():
    app = RequestLimits(APP, max_body_bytes=100, max_in_flight=1, paths=API, body_timeout=5)

    async def attack_and_call() -> tuple[int, list[int]]:
        trickle = [{"type": "http.request", "body": b"x", "more_body": True}] * 3
        slow = [asyncio.create_task(_raw_receive_app(app, trickle, pause=0.2)) for _ in range(20)]
        await asyncio.sleep(0.05)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers = [await client.post("/predict", content=b"ok") for _ in range(3)]
        for task in slow:
            task.cancel()
        return app.body_bytes, [answer.status_code for answer in answers]

    held, statuses = asyncio.run(attack_and_call())
    assert statuses == [200, 200, 200]
    assert held <= 20  # the trickling clients hold only the bytes they sent


def test_bodies_beyond_the_bytes_in_flight_are_shed_with_retry_after():
    app = RequestLimits(
        APP, max_body_bytes=100, max_in_flight=10, paths=API, max_body_bytes_in_flight=150
    )

    async def two_large() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(
                *(client.post("/predict", content=b"slow" + b" " * 90) for _ in range(2))
            )

    statuses = sorted(response.status_code for response in asyncio.run(two_large()))
    assert statuses == [200, 503]
    assert app.body_bytes == 0
    assert call(app, "POST", "/predict", content=b"x" * 100).status_code == 200


def test_the_bytes_in_flight_are_never_below_one_largest_body():
    app = RequestLimits(
        APP, max_body_bytes=100, max_in_flight=10, paths=API, max_body_bytes_in_flight=10
    )
    assert app.max_body_bytes_in_flight == 100
    assert call(app, "POST", "/predict", content=b"x" * 100).status_code == 200


def test_not_ready_answers_503_with_the_reason():
    problem: list[str | None] = ["model m:1 cannot be served: bad file"]
    app = RequireReady(APP, paths=API, problem=lambda: problem[0])
    response = call(app, "POST", "/predict", content=b"x")
    assert response.status_code == 503 and "bad file" in response.json()["error"]
    problem[0] = None
    assert call(app, "POST", "/predict", content=b"x").status_code == 200


@pytest.mark.parametrize(
    ("status", "body", "expected_status", "expected"),
    [
        (400, [{"error": "x"}], 400, {"error": "x"}),
        (
            400,
            {"error": "1 validation error", "detail": [{"type": "too_long", "loc": ["instances"]}]},
            422,
            {
                "error": "too many instances in one request",
                "detail": [{"type": "too_long", "loc": ["instances"]}],
                "error_count": 1,
            },
        ),
        (
            400,
            {"error": "e", "detail": [{"type": "too_long", "loc": ["instances", 0, "f"]}]},
            400,
            {
                "error": "e",
                "detail": [{"type": "too_long", "loc": ["instances", 0, "f"]}],
                "error_count": 1,
            },
        ),
        (
            400,
            {
                "error": "3 validation errors for Input",
                "detail": [
                    {"type": "float_parsing", "loc": ["instances", 0, "f"]},
                    {"type": "float_parsing", "loc": ["instances", 1, "f"]},
                    {
                        "type": "too_many_errors",
                        "loc": ["instances"],
                        "msg": "5000 problems in all",
                    },
                ],
            },
            400,
            {
                "error": "5000 validation errors for Input; the first 2 are listed",
                "detail": [
                    {"type": "float_parsing", "loc": ["instances", 0, "f"]},
                    {"type": "float_parsing", "loc": ["instances", 1, "f"]},
                ],
                "error_count": 5000,
            },
        ),
        (
            400,
            {"error": "e", "detail": [{"type": "arrow_too_large", "loc": ["instances"]}]},
            413,
            {
                "error": "e",
                "detail": [{"type": "arrow_too_large", "loc": ["instances"]}],
                "error_count": 1,
            },
        ),
        (503, {"error": "An unexpected error"}, 503, None),
    ],
)
def test_error_shapes(status, body, expected_status, expected):
    new_status, new_body, headers = shape_error(status, json.dumps(body).encode())
    assert new_status == expected_status
    if expected is not None:
        assert new_body == expected
    else:
        assert new_body["error"].startswith("overloaded") and (b"retry-after", b"1") in headers


def test_error_shapes_middleware_rewrites_errors_only():
    app = ErrorShapes(APP, paths=frozenset({"/predict", "/error"}))
    assert call(app, "POST", "/predict", content=b"abc").json() == {"received": 3}
    shaped = call(app, "POST", "/error", content=b"404")
    assert shaped.status_code == 404 and shaped.json() == {"error": "bad thing"}
    assert int(shaped.headers["content-length"]) == len(shaped.content)
    assert shaped.headers.get_list("content-type") == ["application/json"]


def test_access_log_is_json_with_request_id_status_and_latency(caplog):
    app = AccessLog(APP)
    with caplog.at_level(logging.INFO, logger="access"):
        response = call(
            app,
            "POST",
            "/predict",
            content=b"secret-features",
            headers={"X-Request-ID": "req-1", "X-API-Key": "k"},
        )
        call(app, "GET", "/livez")
    assert response.headers["x-request-id"] == "req-1"
    (record,) = [r for r in caplog.records if r.name == "access"]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "req-1" and line["status"] == 200 and line["path"] == "/predict"
    assert line["latency_ms"] >= 0 and line["level"] == "info"
    assert "secret-features" not in json.dumps(line) and '"k"' not in json.dumps(line)
