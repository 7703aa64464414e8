"""Drift webhook notifications against a real local HTTP receiver (127.0.0.1 only)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypedDict

import pytest

from monitoring.notify import (
    build_payload,
    notify_drift,
    retry_after_seconds,
    safe_url,
    summary_text,
)

pytestmark = pytest.mark.timeout(30)

RESULT: dict[str, Any] = {
    "drift_detected": True,
    "share_drifted": 0.5,
    "model": "breast_cancer:abc123",
    "reference_rows": 10000,
    "current_rows": 500,
    "columns": {
        "mean radius": {"score": 0.31, "method": "wasserstein", "threshold": 0.1, "drifted": True},
        "mean texture": {"score": 0.001, "method": "ks", "threshold": 0.05, "drifted": True},
        "a<b&c": {"score": 0.2, "method": "wasserstein", "threshold": 0.1, "drifted": True},
        "mean area": {"score": 0.02, "method": "wasserstein", "threshold": 0.1, "drifted": False},
        "gone": {"score": 1.0, "method": "missing_in_current", "threshold": 0.0, "drifted": True},
        "mean smoothness": {"score": 0.4, "method": "ks", "threshold": 0.05, "drifted": False},
        "worst area": {"score": None, "method": "wasserstein", "threshold": 0.1, "drifted": False},
        "worst radius": {"score": 0.3, "method": "psi", "threshold": 0.1, "drifted": True},
    },
    "prediction": {"score": 0.12, "method": "jensenshannon", "threshold": 0.1, "drifted": True},
    "generated_at": "2026-11-25T12:00:00+00:00",
}


class Options(TypedDict):
    timeout: float
    backoff: float


FAST = Options(timeout=2.0, backoff=0.01)


@dataclass(frozen=True)
class Reply:
    """What the receiver does with one request: answer `status`, or stall `stall` seconds.

    `{path}` in `body` is replaced by the request's path, as servers that echo it do.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    stall: float = 0.0
    body: str = "ok"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Records every POST; answers the queued replies in order, then 200."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.replies: list[Reply] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(self)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def take(self, request: Received) -> Reply:
        with self._lock:
            self.received.append(request)
            return self.replies.pop(0) if self.replies else Reply()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        receiver = self.server.receiver
        reply = receiver.take(Received(self.path, dict(self.headers.items()), body))
        if reply.stall:
            receiver.stopping.wait(reply.stall)
            self.close_connection = True
            return
        body = reply.body.replace("{path}", self.path).encode()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# --------------------------------------------------------------------------- payloads


def test_json_payload_received(receiver: Receiver) -> None:
    assert notify_drift(RESULT, receiver.url + "/hook", fmt="json", **FAST) is True
    [request] = receiver.received
    assert request.path == "/hook"
    assert request.headers["Content-Type"] == "application/json"
    body = request.json()
    assert {key: body[key] for key in RESULT} == RESULT
    assert body["text"] == summary_text(RESULT)
    assert body["text"].startswith("Drift detected for model breast_cancer:abc123")
    assert "5 of 8 features drifted (50.0%)" in body["text"]


def test_slack_payload_received(receiver: Receiver) -> None:
    assert notify_drift(RESULT, receiver.url + "/slack", fmt="slack", **FAST) is True
    [request] = receiver.received
    body = request.json()
    assert set(body) == {"text", "blocks"}
    assert "a&lt;b&amp;c (wasserstein 0.2 &gt;= 0.1)" in body["text"]
    assert "<" not in body["text"]
    [section] = body["blocks"]
    assert section["type"] == "section"
    assert section["text"]["type"] == "mrkdwn"
    assert section["text"]["text"].startswith("*Drift detected for model breast_cancer:abc123")


def test_summary_ranks_drifted_columns_past_their_threshold() -> None:
    text = summary_text(RESULT, top=3)
    lines = text.splitlines()
    assert lines[0] == (
        "Drift detected for model breast_cancer:abc123: 5 of 8 features drifted (50.0%)."
    )
    # Untestable first, then p-value 0.001 < 0.05 (50x), then distances 0.31/0.1 and 0.3/0.1.
    assert lines[1] == (
        "Top drifted: gone (missing_in_current 1 >= 0), mean texture (ks 0.001 < 0.05), "
        "mean radius (wasserstein 0.31 >= 0.1) and 2 more."
    )
    assert lines[2] == "Prediction: drifted (jensenshannon 0.12 >= 0.1)."
    assert lines[3] == (
        "500 current rows against 10000 reference rows, generated 2026-11-25T12:00:00+00:00."
    )
    assert "mean area" not in text
    assert "mean smoothness" not in text


def test_summary_without_drift_or_prediction() -> None:
    quiet = {**RESULT, "drift_detected": False, "share_drifted": 0.0, "prediction": None}
    quiet["columns"] = {"x": {"score": 0.5, "method": "ks", "threshold": 0.05, "drifted": False}}
    assert summary_text(quiet).splitlines()[:2] == [
        "No dataset drift for model breast_cancer:abc123: 0 of 1 features drifted (0.0%).",
        "500 current rows against 10000 reference rows, generated 2026-11-25T12:00:00+00:00.",
    ]


def test_unknown_format_is_refused_without_raising(receiver: Receiver) -> None:
    assert notify_drift(RESULT, receiver.url, fmt="xml", **FAST) is False  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown format"):
        build_payload(RESULT, "xml")  # type: ignore[arg-type]
    assert receiver.received == []


@pytest.mark.parametrize(
    "result",
    [{"share_drifted": "lots"}, {"columns": {"x": None}}, {"share_drifted": float("nan")}],
)
def test_bad_result_returns_false(receiver: Receiver, result: dict[str, Any]) -> None:
    assert notify_drift(result, receiver.url, **FAST) is False
    assert receiver.received == []


# --------------------------------------------------------------------------- retries


def test_retries_on_5xx_429_and_timeout_then_succeeds(receiver: Receiver) -> None:
    receiver.queue(
        Reply(500),
        Reply(429, {"Retry-After": "0"}),
        Reply(stall=5.0),
        Reply(503),
    )
    started = time.monotonic()
    sent = notify_drift(RESULT, receiver.url, retries=4, timeout=0.3, backoff=0.01)
    assert sent is True
    assert len(receiver.received) == 5
    assert len({request.body for request in receiver.received}) == 1
    assert time.monotonic() - started < 3


def test_gives_up_after_retries(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.queue(*[Reply(502)] * 10)
    caplog.set_level(logging.INFO, logger="monitoring.notify")
    assert notify_drift(RESULT, receiver.url, retries=2, **FAST) is False
    assert len(receiver.received) == 3
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.name == "monitoring.notify"
    assert "failed after 3 attempt(s): HTTP 502" in warning.getMessage()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_no_retry_on_other_4xx(receiver: Receiver, status: int) -> None:
    receiver.queue(*[Reply(status)] * 5)
    assert notify_drift(RESULT, receiver.url, retries=3, **FAST) is False
    assert len(receiver.received) == 1


def test_retry_after_is_respected(receiver: Receiver) -> None:
    receiver.queue(Reply(429, {"Retry-After": "1"}))
    started = time.monotonic()
    assert notify_drift(RESULT, receiver.url, retries=1, **FAST) is True
    elapsed = time.monotonic() - started
    assert len(receiver.received) == 2
    assert 1.0 <= elapsed < 2.5


def test_retry_after_beyond_max_delay_stops(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.queue(Reply(503, {"Retry-After": "120"}))
    started = time.monotonic()
    assert notify_drift(RESULT, receiver.url, retries=3, max_delay=5, **FAST) is False
    assert time.monotonic() - started < 1
    assert len(receiver.received) == 1
    assert "Retry-After 120s is beyond the retry limit" in caplog.text


def test_timeout_is_honoured(receiver: Receiver) -> None:
    receiver.queue(*[Reply(stall=10.0)] * 3)
    started = time.monotonic()
    assert notify_drift(RESULT, receiver.url, timeout=0.2, retries=1, backoff=0.01) is False
    assert time.monotonic() - started < 1.5
    assert len(receiver.received) == 2


def test_connection_refused_is_retried_then_false(caplog: pytest.LogCaptureFixture) -> None:
    started = time.monotonic()
    assert notify_drift(RESULT, closed_port_url(), retries=2, **FAST) is False
    assert time.monotonic() - started < 2
    assert "failed after 3 attempt(s): ConnectError" in caplog.text


@pytest.mark.parametrize("url", ["not a url", "ftp://127.0.0.1/x", "http://", ""])
def test_unusable_url_returns_false(url: str) -> None:
    assert notify_drift(RESULT, url, retries=1, **FAST) is False


# --------------------------------------------------------------------------- secrets


def test_url_secrets_never_logged(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, httpx, httpcore
    port = receiver.url.rsplit(":", 1)[1]
    secret_url = (
        f"http://hook-user:hunter2@127.0.0.1:{port}/services/T0/B0/SECRET-TOKEN?sig=QUERYSECRET"
    )
    receiver.queue(Reply(500), Reply(404, body="no hook at {path}"), Reply(stall=5.0))
    assert notify_drift(RESULT, secret_url, retries=1, **FAST) is False  # 500, then 404
    assert notify_drift(RESULT, secret_url, retries=0, timeout=0.2) is False  # stalls
    assert notify_drift(RESULT, secret_url, fmt="slack", **FAST) is True
    refused = closed_port_url().replace("/hook", "/services/SECRET-TOKEN?sig=QUERYSECRET")
    assert notify_drift(RESULT, refused, retries=0, **FAST) is False

    assert len(receiver.received) == 4
    assert receiver.received[0].path == "/services/T0/B0/SECRET-TOKEN?sig=QUERYSECRET"
    logged = caplog.text + "\n".join(str(record.args) for record in caplog.records)
    for secret in ("SECRET-TOKEN", "QUERYSECRET", "hunter2", "hook-user", "/services"):
        assert secret not in logged
    assert f"http://127.0.0.1:{port}" in caplog.text
    # httpx's own request line was logged, with the URL cut down.
    assert any(r.name == "httpx" and "HTTP Request" in r.getMessage() for r in caplog.records)


def test_httpx_urls_are_left_alone_outside_notifications(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    import httpx

    notify_drift(RESULT, receiver.url + "/hook", **FAST)
    caplog.set_level(logging.INFO, logger="httpx")
    with httpx.Client() as client:
        client.post(receiver.url + "/other", content=b"{}")
    assert f"{receiver.url}/other" in caplog.text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://hooks.example.com/services/T/B/X", "https://hooks.example.com"),
        ("https://u:p@hooks.example.com:8443/x?token=y", "https://hooks.example.com:8443"),
        ("http://[::1]:9000/hook", "http://[::1]:9000"),
        ("hooks.example.com/x", "<invalid url>"),
        ("http://host:notaport/x", "<invalid url>"),
    ],
)
def test_safe_url(url: str, expected: str) -> None:
    assert safe_url(url) == expected


def test_retry_after_parsing() -> None:
    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(" 0 ") == 0.0
    assert retry_after_seconds("-5") == 0.0
    assert retry_after_seconds("Wed, 25 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert retry_after_seconds("Wed, 25 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("inf") is None
    assert retry_after_seconds(None) is None
