"""Abusive requests against a real `bentoml serve`, each measured from outside.

    python -m bench.abuse [--working-dir DIR] [--model TAG] [--fresh-server] [--out FILE.json]
                          [--only NAME ...]

One server with one worker (`WORKERS=1`, as in the pods), `API_KEYS` set, the payload log
on and no drift schedule. Around each attack: the worker's resident memory (VmRSS in
/proc) before, every 50 ms during it (the peak) and after a short rest; `/livez` every
100 ms with a short timeout (the worst latency; a timeout counts as the timeout); then the
size of `/metrics` and of the payload log directory. An attack that has not finished
after `--timeout` seconds is reported as `timeout`; a server it left busy or dead is
replaced by a fresh one before the next attack (`--fresh-server`: a new server for every
attack, so none pays for what an earlier one left behind). `--working-dir` serves another
copy of the sources, e.g. a worktree of an earlier commit. Without `--model`, the default
model is trained into a temporary BENTOML_HOME. Prints a markdown table and writes
FILE.json and FILE.md.

Each attack is a function of the target and its size options that builds its bodies and
returns the step that sends them, so only the sending is measured; tests run smaller ones.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import numpy as np
import pyarrow as pa
import requests

from bench import harness, processes
from bench.local import ROOT, Server

API_KEY = "k1"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
MIB = 2**20
RESULTS = ROOT / "bench" / "results"
WORKER_MODULE = "_bentoml_impl.worker"
RSS_INTERVAL_S = 0.05
LIVEZ_INTERVAL_S = 0.1
LIVEZ_TIMEOUT_S = 2.0
REST_S = 2.0  # after an attack, before the worker's memory is read again
DEFAULT_TIMEOUT_S = 150.0
LARGE_JSON_BYTES = 16 * MIB  # error bodies larger than this are counted, not parsed
LOG_WAIT_S = 15.0
NORMAL_CLIENT_TIMEOUT_S = 10.0


# --- the served model and the server --------------------------------------------------


@dataclass(frozen=True)
class ServedModel:
    tag: str
    names: tuple[str, ...]
    row: tuple[float, ...]
    """One valid instance: every feature at its training minimum."""

    @classmethod
    def fetch(cls, url: str, api_key: str) -> ServedModel:
        info = requests.get(f"{url}/model", headers={"X-API-Key": api_key}, timeout=10)
        info.raise_for_status()
        features = info.json()["schema"]["features"]
        if any(feature["kind"] != "numeric" for feature in features):
            raise SystemExit("the attacks are built for a model of numeric features only")
        return cls(
            tag=info.json()["tag"],
            names=tuple(feature["name"] for feature in features),
            row=tuple(float(feature.get("min") or 0.0) for feature in features),
        )


@dataclass(frozen=True)
class Target:
    """A running server and what the attacks need to know about it."""

    url: str
    server_pid: int
    model: ServedModel
    payload_log_dir: Path
    report_dir: Path
    models_home: Path
    working_dir: Path
    max_body_bytes: int
    max_rows: int
    api_key: str = API_KEY
    request_timeout: float = DEFAULT_TIMEOUT_S

    def key(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}


def server_env(work: Path, tag: str, **overrides: str) -> dict[str, str]:
    return {
        "MODEL_TAG": tag,
        "WORKERS": "1",
        "API_KEYS": API_KEY,
        "PAYLOAD_LOG": "on",
        "PAYLOAD_LOG_DIR": str(work / "payload-logs"),
        "DRIFT_INTERVAL_MINUTES": "0",
        "DRIFT_REPORT_DIR": str(work / "drift" / "reports"),
        **overrides,
    }


def server_limits(working_dir: Path, env: dict[str, str]) -> tuple[int, int]:
    """MAX_BODY_BYTES and PREDICT_BATCH_MAX_ROWS as the served sources read them (their
    defaults may differ from ours)."""
    read = (
        "from model.settings import Settings; serving = Settings.from_env().serving; "
        "print(serving.max_body_bytes, serving.predict_batch_max_rows)"
    )
    done = subprocess.run(
        [sys.executable, "-c", read],
        cwd=working_dir,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    body_bytes, rows = done.stdout.split()
    return int(body_bytes), int(rows)


def start(
    models_home: Path,
    work: Path,
    tag: str,
    *,
    working_dir: Path | None = None,
    log_name: str = "serve",
    timeout: float = DEFAULT_TIMEOUT_S,
    **overrides: str,
) -> tuple[Server, Target]:
    """A ready server of `tag` with one worker, and its target; stop it with `stop`."""
    env = server_env(work, tag, **overrides)
    server = Server(models_home, work / f"{log_name}.log", working_dir=working_dir, **env)
    try:
        server.wait_ready(120)
        max_body_bytes, max_rows = server_limits(working_dir or ROOT, env)
        target = Target(
            url=server.url,
            server_pid=server.process.pid,
            model=ServedModel.fetch(server.url, API_KEY),
            payload_log_dir=Path(env["PAYLOAD_LOG_DIR"]),
            report_dir=Path(env["DRIFT_REPORT_DIR"]),
            models_home=models_home,
            working_dir=working_dir or ROOT,
            max_body_bytes=max_body_bytes,
            max_rows=max_rows,
            request_timeout=timeout,
        )
    except BaseException:
        stop(server)
        raise
    return server, target


def stop(server: Server) -> None:
    """The server's process group, then any descendant still alive, each by its own pid."""
    processes.stop(server)


# --- measuring from outside ------------------------------------------------------------


def child_pids(pid: int) -> list[int]:
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in children.read_text().split()]
    return found


def descendant_pids(pid: int) -> list[int]:
    found, pending = [], child_pids(pid)
    while pending:
        child = pending.pop()
        found.append(child)
        pending += child_pids(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def worker_pids(server_pid: int) -> list[int]:
    """BentoML's worker processes under `bentoml serve` (`python -m _bentoml_impl.worker...`)."""
    return [pid for pid in descendant_pids(server_pid) if WORKER_MODULE in cmdline(pid)]


def worker_pid(server_pid: int, wait_s: float = 30.0) -> int:
    """The server's single worker; waits while the supervisor (re)starts it."""
    deadline = time.monotonic() + wait_s
    while True:
        workers = worker_pids(server_pid)
        if len(workers) == 1:
            return workers[0]
        if time.monotonic() > deadline:
            raise RuntimeError(f"server {server_pid} has {len(workers)} workers, not 1")
        time.sleep(0.2)


def rss_bytes(pid: int) -> int | None:
    """VmRSS of a process; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


class Sampler:
    """Calls `sample` every `interval` seconds in a thread while the context is open."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> bool:
        """One sample; False ends the sampling."""
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set() and self.sample():
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(LIVEZ_TIMEOUT_S + 5)


class PeakRss(Sampler):
    def __init__(self, pid: int) -> None:
        super().__init__(RSS_INTERVAL_S)
        self.pid = pid
        self.peak = rss_bytes(pid) or 0
        self.gone = False

    def sample(self) -> bool:
        rss = rss_bytes(self.pid)
        if rss is None:
            self.gone = True
            return False
        self.peak = max(self.peak, rss)
        return True


class LivezProbe(Sampler):
    """GET /livez on a new connection every 100 ms; a timeout counts as LIVEZ_TIMEOUT_S."""

    def __init__(self, url: str) -> None:
        super().__init__(LIVEZ_INTERVAL_S)
        self.url = f"{url}/livez"
        self.latencies_ms: list[float] = []
        self.timeouts = 0
        self.failures = 0

    def sample(self) -> bool:
        started = time.monotonic()
        try:
            answered = requests.get(self.url, timeout=LIVEZ_TIMEOUT_S).status_code == 200
            self.failures += not answered
            self.latencies_ms.append((time.monotonic() - started) * 1000)
        except requests.Timeout:
            self.timeouts += 1
            self.latencies_ms.append(LIVEZ_TIMEOUT_S * 1000)
        except requests.ConnectionError:
            self.failures += 1
        return True


def dir_bytes(path: Path) -> int:
    total = 0
    for file in path.rglob("*"):
        with contextlib.suppress(OSError):
            if file.is_file():
                total += file.stat().st_size
    return total


def scrape_metrics(url: str, timeout: float = 60.0) -> tuple[int | None, float]:
    """Size of GET /metrics in bytes (None if it failed) and the seconds it took."""
    started = time.monotonic()
    try:
        size = len(requests.get(f"{url}/metrics", timeout=timeout).content)
    except requests.RequestException:
        size = None
    return size, round(time.monotonic() - started, 3)


# --- what an attack returns ------------------------------------------------------------


@dataclass
class Outcome:
    statuses: list[str]
    """One per request of interest: the HTTP status, or `timeout`, `closed`, `error`."""
    seconds: float
    """Seconds the sending step took: the requests and their answers."""
    details: dict[str, Any] = field(default_factory=dict)


Send = Callable[[], Outcome]


def response_facts(response: requests.Response, seconds: float) -> dict[str, Any]:
    """Status, time, size, and for JSON error bodies: the message and how many errors."""
    content = response.content
    facts: dict[str, Any] = {
        "status": response.status_code,
        "seconds": round(seconds, 3),
        "bytes": len(content),
        "content_type": response.headers.get("content-type", ""),
    }
    if response.status_code < 400:
        return facts
    if len(content) > LARGE_JSON_BYTES:
        facts["detail_count"] = content.count(b'"loc"')
        return facts
    try:
        body = json.loads(content)
    except ValueError:
        facts["not_json"] = content[:300].decode("utf-8", "replace")
        return facts
    if isinstance(body, dict):
        facts["error"] = str(body.get("error"))[:300]
        if isinstance(body.get("detail"), list):
            facts["detail_count"] = len(body["detail"])
            facts["first_detail"] = body["detail"][0] if body["detail"] else None
        if "error_count" in body:
            facts["error_count"] = body["error_count"]
    return facts


def send_request(
    target: Target,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    with_key: bool = True,
    timeout: float | None = None,
) -> tuple[str, dict[str, Any], requests.Response | None]:
    """One request: its status (or `timeout`/`closed`), facts, and the response if any."""
    sent = {"Content-Type": content_type} if body is not None else {}
    sent |= (target.key() if with_key else {}) | (headers or {})
    started = time.monotonic()
    try:
        response = requests.request(
            method,
            f"{target.url}{path}",
            data=body,
            headers=sent,
            timeout=timeout or target.request_timeout,
        )
    except requests.Timeout:
        return "timeout", {"seconds": round(time.monotonic() - started, 3)}, None
    except requests.ConnectionError as exc:
        seconds = round(time.monotonic() - started, 3)
        return "closed", {"seconds": seconds, "error": str(exc)[:300]}, None
    facts = response_facts(response, time.monotonic() - started)
    return str(response.status_code), facts, response


def post(target: Target, path: str, body: bytes, content_type: str = "application/json") -> Send:
    """A step that posts one body and reports its answer."""

    def send() -> Outcome:
        started = time.monotonic()
        status, facts, _ = send_request(target, "POST", path, body=body, content_type=content_type)
        facts["body_bytes"] = len(body)
        return Outcome([status], time.monotonic() - started, {"responses": [facts]})

    return send


def summarize(outcome: Outcome, text: str) -> Outcome:
    outcome.details["summary"] = text
    return outcome


# --- request bodies ----------------------------------------------------------------------


def write_stream(
    batches: Iterator[pa.RecordBatch], schema: pa.Schema, compression: str | None
) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, schema, options=options) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def zero_rows_stream(names: Sequence[str], rows: int, batch_rows: int) -> bytes:
    """`rows` rows of 0.0 in float64 columns, zstd-compressed: tiny on the wire.

    One array of zeros is reused for every column of every batch, and numpy's zeros are
    the kernel's zero page until written, so the client never holds the decoded table.
    """
    schema = pa.schema([(name, pa.float64()) for name in names])
    zeros = pa.array(np.zeros(min(rows, batch_rows)))

    def batches() -> Iterator[pa.RecordBatch]:
        for start_row in range(0, rows, batch_rows):
            column = zeros.slice(0, min(batch_rows, rows - start_row))
            yield pa.record_batch([column] * len(names), schema=schema)

    return write_stream(batches(), schema, "zstd")


def one_row_batch(model: ServedModel, first: pa.Array) -> pa.RecordBatch:
    """The model's valid row, with `first` as its first feature's column."""
    arrays = [first, *(pa.array([value], pa.float64()) for value in model.row[1:])]
    return pa.record_batch(arrays, names=list(model.names))


def huge_dictionary_stream(model: ServedModel, entries: int) -> bytes:
    """One valid row whose first feature is dictionary-encoded, with `entries` zeros in its
    dictionary (zstd-compressed: a few KiB on the wire, 8 bytes per entry decoded)."""
    dictionary = pa.array(np.zeros(entries))
    first = pa.DictionaryArray.from_arrays(pa.array([0], pa.int32()), dictionary)
    batch = one_row_batch(model, first)
    return write_stream(iter([batch]), batch.schema, "zstd")


def wide_stream(columns: int) -> bytes:
    """One row of `columns` float64 columns, none of them the model's."""
    zero = pa.array([0.0])
    names = [f"x{index}" for index in range(columns)]
    batch = pa.record_batch([zero] * columns, names=names)
    return write_stream(iter([batch]), batch.schema, None)


def valid_rows_stream(model: ServedModel, size_bytes: int) -> bytes:
    """Uncompressed valid rows (the model's row repeated) filling about `size_bytes`."""
    rows = max(1, size_bytes // (8 * len(model.names)))
    arrays = [pa.array(np.full(rows, value)) for value in model.row]
    batch = pa.record_batch(arrays, names=list(model.names))
    return write_stream(iter([batch]), batch.schema, None)


def instances_json(rows: Sequence[Sequence[object]]) -> bytes:
    return json.dumps({"instances": [list(row) for row in rows]}).encode()


def invalid_values_json(features: int, size_bytes: int) -> tuple[bytes, int]:
    """A JSON body of about `size_bytes` whose every value is "x"; and its row count."""
    row = json.dumps(["x"] * features)
    rows = max(1, (size_bytes - len('{"instances": []}')) // (len(row) + 2))
    return ('{"instances": [' + ", ".join([row] * rows) + "]}").encode(), rows


def padded_json(model: ServedModel, size_bytes: int) -> bytes:
    """The model's valid row as a /predict body, padded with spaces to `size_bytes`."""
    head = json.dumps({"instances": [list(model.row)]})[:-1].encode()
    return head + b" " * max(0, size_bytes - len(head) - 1) + b"}"


# --- the payload log, read from outside ---------------------------------------------------

_REQUEST_ID = re.compile(rb'"request_id"\s*:\s*"((?:[^"\\]|\\.)*)"')
_LINE_HEAD_BYTES = 64 * 1024
_SKIP_BYTES = 8 * MIB


def logged_request_ids(directory: Path) -> list[str]:
    """The request id of every line in the payload log files, read from each line's start
    (lines of padded bodies can be hundreds of MiB; the rest of them is skipped)."""
    found: list[str] = []
    for path in sorted(directory.glob("*.jsonl*")):
        with contextlib.suppress(OSError), path.open("rb") as lines:
            while head := lines.readline(_LINE_HEAD_BYTES):
                match = _REQUEST_ID.search(head)
                if match:
                    found.append(json.loads(b'"' + match.group(1) + b'"'))
                rest = head
                while rest and not rest.endswith(b"\n"):
                    rest = lines.readline(_SKIP_BYTES)
    return found


def wait_logged(
    directory: Path, request_ids: Sequence[str], wait_s: float = LOG_WAIT_S
) -> set[str]:
    """Which of `request_ids` the payload log holds, waiting up to `wait_s` for all of them
    (the log is written by a background thread)."""
    deadline = time.monotonic() + wait_s
    while True:
        logged = set(request_ids) & set(logged_request_ids(directory))
        if len(logged) == len(set(request_ids)) or time.monotonic() > deadline:
            return logged
        time.sleep(0.5)


def wait_quiet(directory: Path, quiet_s: float = 1.0, wait_s: float = 60.0) -> int:
    """The directory's size once it stopped changing for `quiet_s` seconds."""
    deadline = time.monotonic() + wait_s
    size = dir_bytes(directory)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = dir_bytes(directory)
        if now == size:
            break
        size = now
    return size


# --- the attacks ---------------------------------------------------------------------------


def compressed_arrow(
    target: Target, *, rows: int = 80_000_000, columns: int = 4, batch_rows: int = 8_000_000
) -> Send:
    """A zstd-compressed Arrow stream of `rows` zero rows in the model's first columns."""
    names = target.model.names[:columns]
    body = zero_rows_stream(names, rows, batch_rows)
    send = post(target, "/predict_batch", body, ARROW_STREAM)
    decoded = rows * columns * 8

    def run() -> Outcome:
        text = f"{len(body) / 1024:.0f} KiB body, {decoded / MIB:,.0f} MiB decoded"
        return summarize(send(), text)

    return run


def compressed_dictionary(target: Target, *, entries: int = 100_000_000) -> Send:
    """One row whose first feature has a compressed dictionary of `entries` values."""
    body = huge_dictionary_stream(target.model, entries)
    send = post(target, "/predict_batch", body, ARROW_STREAM)

    def run() -> Outcome:
        text = f"{len(body) / 1024:.0f} KiB body, {entries:,} dictionary entries"
        return summarize(send(), text)

    return run


def error_amplification(target: Target, *, size_bytes: int = 10 * MIB) -> Send:
    """A JSON body of about `size_bytes` in which every value is invalid."""
    body, rows = invalid_values_json(len(target.model.names), size_bytes)
    send = post(target, "/predict_batch", body)

    def run() -> Outcome:
        outcome = send()
        outcome.details |= {"rows": rows, "invalid_values": rows * len(target.model.names)}
        answer = outcome.details["responses"][0]
        text = f"{len(body) / MIB:.1f} MiB, {rows:,} rows; error body {answer.get('bytes', 0):,} B"
        return summarize(outcome, text)

    return run


def wide_schema(target: Target, *, columns: int = 40_000) -> Send:
    """An Arrow stream of one row in `columns` unknown columns."""
    body = wide_stream(columns)
    send = post(target, "/predict_batch", body, ARROW_STREAM)

    def run() -> Outcome:
        return summarize(send(), f"{columns:,} columns, {len(body) / MIB:.1f} MiB")

    return run


def metrics_cardinality(target: Target, *, paths: int = 3_000, threads: int = 4) -> Send:
    """Requests without a key to `paths` random unknown paths; /metrics before and after."""
    unknown = [f"/abuse-{uuid.uuid4().hex}" for _ in range(paths)]

    def run() -> Outcome:
        before, before_s = scrape_metrics(target.url)
        local = threading.local()

        def get(path: str) -> str:
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            try:
                return str(session.get(f"{target.url}{path}", timeout=30).status_code)
            except requests.RequestException:
                return "error"

        started = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            statuses = list(pool.map(get, unknown))
        seconds = time.monotonic() - started
        after, after_s = scrape_metrics(target.url)
        details = {
            "metrics_before_bytes": before,
            "metrics_after_bytes": after,
            "scrape_before_s": before_s,
            "scrape_after_s": after_s,
        }
        text = f"/metrics {before or 0:,} → {after or 0:,} B, scrape {after_s} s"
        return summarize(Outcome(statuses, seconds, details), text)

    return run


def read_status_line(sock: socket.socket, wait_s: float) -> str | None:
    """The status code of an HTTP response on `sock`, if one arrives within `wait_s`."""
    sock.settimeout(wait_s)
    try:
        head = sock.recv(4096)
    except OSError:
        return None
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return match.group(1).decode() if match else None


def header_flood(target: Target, *, size_bytes: int = 400 * MIB, chunk_bytes: int = MIB) -> Send:
    """One connection sending `size_bytes` of headers (no key), chunk by chunk, until the
    server answers or closes the connection."""
    line = b"X-Abuse-Pad: " + b"a" * 8000 + b"\r\n"
    chunk = line * max(1, chunk_bytes // len(line))
    host = target.url.removeprefix("http://")
    hostname, port = host.rsplit(":", 1)

    def run() -> Outcome:
        started = time.monotonic()
        sent, status, ended = 0, None, "all sent"
        with socket.create_connection((hostname, int(port)), timeout=30) as sock:
            try:
                sock.sendall(f"GET /predict HTTP/1.1\r\nHost: {host}\r\n".encode())
                while sent < size_bytes:
                    if select.select([sock], [], [], 0)[0]:
                        ended = "answered while sending"
                        break
                    sock.sendall(chunk)
                    sent += len(chunk)
                else:
                    sock.sendall(b"\r\n")
            except OSError as exc:
                ended = f"closed while sending ({type(exc).__name__})"
            status = read_status_line(sock, target.request_timeout)
        seconds = time.monotonic() - started
        details = {"header_bytes_sent": sent, "ended": ended, "status_line": status}
        text = f"{ended} after {sent / MIB:,.0f} MiB"
        return summarize(Outcome([status or "closed"], seconds, details), text)

    return run


def open_slow_upload(host: str, port: int, api_key: str, content_length: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(
        (
            f"POST /predict HTTP/1.1\r\nHost: {host}:{port}\r\nX-API-Key: {api_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
        ).encode()
    )
    sock.setblocking(False)
    return sock


class SlowUploads:
    """Connections that sent their headers and trickle their body one byte a second."""

    def __init__(self, target: Target, connections: int, content_length: int) -> None:
        host, port = target.url.removeprefix("http://").rsplit(":", 1)
        self.open = [
            open_slow_upload(host, int(port), target.api_key, content_length)
            for _ in range(connections)
        ]
        self.outcomes: Counter[str] = Counter()
        self.answer_seconds: list[float] = []

    def trickle(self, since: float) -> None:
        """One byte on every open connection; answered or closed ones are counted and dropped."""
        still_open = []
        for sock in self.open:
            status = self._answered(sock)
            if status is None:
                try:
                    sock.send(b" ")
                    still_open.append(sock)
                    continue
                except OSError:
                    status = "closed"
            self.outcomes[status] += 1
            self.answer_seconds.append(time.monotonic() - since)
            sock.close()
        self.open = still_open

    @staticmethod
    def _answered(sock: socket.socket) -> str | None:
        if not select.select([sock], [], [], 0)[0]:
            return None
        try:
            head = sock.recv(4096)
        except OSError:
            return "closed"
        match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
        return match.group(1).decode() if match else "closed"

    def close(self) -> None:
        if self.open:
            self.outcomes["open at the end"] += len(self.open)
        for sock in self.open:
            sock.close()
        self.open = []


def slow_uploads(
    target: Target,
    *,
    connections: int = 300,
    seconds: float = 40.0,
    content_length: int = 1000,
    normal_interval_s: float = 0.2,
) -> Send:
    """`connections` uploads trickling a byte a second for `seconds`, while a normal client
    sends a valid /predict every `normal_interval_s`; statuses are the normal client's."""
    body = instances_json([target.model.row])

    def run() -> Outcome:
        slow = SlowUploads(target, connections, content_length)
        started = time.monotonic()
        normal: list[tuple[str, float]] = []
        next_trickle = started
        try:
            while time.monotonic() - started < seconds:
                if time.monotonic() >= next_trickle:
                    slow.trickle(started)
                    next_trickle += 1.0
                sent_at = time.monotonic()
                status, _, _ = send_request(
                    target, "POST", "/predict", body=body, timeout=NORMAL_CLIENT_TIMEOUT_S
                )
                normal.append((status, time.monotonic() - sent_at))
                time.sleep(max(0.0, normal_interval_s - (time.monotonic() - sent_at)))
        finally:
            slow.close()
        latencies = [latency for _, latency in normal]
        details = {
            "slow_connections": connections,
            "slow_outcomes": dict(slow.outcomes),
            "slow_answered_after_s": _spread(slow.answer_seconds),
            "normal_statuses": dict(Counter(status for status, _ in normal)),
            "normal_latency_s": _spread(latencies),
        }
        statuses = [status for status, _ in normal]
        text = (
            f"slow uploads got {status_text(slow.outcomes)}; normal client {status_text(statuses)}"
        )
        return summarize(Outcome(statuses, time.monotonic() - started, details), text)

    return run


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def big_body(target: Target, *, size_bytes: int = 100 * MIB) -> Send:
    """One uncompressed Arrow body of valid rows, about `size_bytes` (beyond the row limit)."""
    body = valid_rows_stream(target.model, size_bytes)
    rows = size_bytes // (8 * len(target.model.names))
    send = post(target, "/predict_batch", body, ARROW_STREAM)

    def run() -> Outcome:
        return summarize(send(), f"{len(body) / MIB:.0f} MiB, {rows:,} rows")

    return run


def client_5xx(target: Target, *, random_bytes: int = 100_000) -> Send:
    """A uint64 column holding 2**64-1, then `random_bytes` random bytes, both as Arrow."""
    huge = one_row_batch(target.model, pa.array([2**64 - 1], pa.uint64()))
    bodies = {
        "uint64 2**64-1": write_stream(iter([huge]), huge.schema, None),
        f"{random_bytes:,} random bytes": np.random.default_rng(0).bytes(random_bytes),
    }

    def run() -> Outcome:
        started = time.monotonic()
        statuses, answers = [], []
        for label, body in bodies.items():
            status, facts, _ = send_request(
                target, "POST", "/predict_batch", body=body, content_type=ARROW_STREAM
            )
            statuses.append(status)
            answers.append({"body": label, **facts})
        text = "; ".join(f"{a['body']}: {s}" for a, s in zip(answers, statuses, strict=True))
        return summarize(
            Outcome(statuses, time.monotonic() - started, {"responses": answers}), text
        )

    return run


def _predict_with_id(target: Target, body: bytes, request_id: str) -> str:
    status, _, _ = send_request(
        target, "POST", "/predict", body=body, headers={"X-Request-ID": request_id}
    )
    return status


def payload_log_padding(
    target: Target, *, size_bytes: int | None = None, requests_count: int = 21, earlier: int = 5
) -> Send:
    """`earlier` normal /predict requests, then `requests_count` valid 1-row bodies padded
    with spaces to `size_bytes` (default: 4 KiB under the server's MAX_BODY_BYTES).

    21 is one more than the 20 rotated files the payload log kept by default before it
    bounded its lines: enough to rotate the earlier records away if each padded body is
    logged as one line."""
    size = size_bytes or target.max_body_bytes - 4096
    padded = padded_json(target.model, size)
    normal = instances_json([target.model.row])
    earlier_ids = [f"abuse-earlier-{uuid.uuid4().hex[:12]}-{index}" for index in range(earlier)]

    def run() -> Outcome:
        earlier_statuses = [_predict_with_id(target, normal, rid) for rid in earlier_ids]
        logged_before = wait_logged(target.payload_log_dir, earlier_ids)
        log_before = wait_quiet(target.payload_log_dir)
        started = time.monotonic()
        statuses = []
        for index in range(requests_count):
            status, _, _ = send_request(
                target,
                "POST",
                "/predict",
                body=padded,
                headers={"X-Request-ID": f"abuse-padded-{index}"},
            )
            statuses.append(status)
        seconds = time.monotonic() - started
        log_after = wait_quiet(target.payload_log_dir)
        kept = set(earlier_ids) & set(logged_request_ids(target.payload_log_dir))
        details = {
            "body_bytes": len(padded),
            "earlier_statuses": earlier_statuses,
            "earlier_logged_before": len(logged_before),
            "earlier_kept_after": len(kept),
            "log_bytes_before": log_before,
            "log_bytes_after": log_after,
            "log_growth_bytes": log_after - log_before,
            "log_files": len(list(target.payload_log_dir.glob("*.jsonl*"))),
        }
        text = (
            f"{requests_count} bodies of {len(padded) / MIB:.0f} MiB: "
            f"log +{(log_after - log_before) / MIB:,.1f} MiB, "
            f"earlier records kept {len(kept)}/{len(earlier_ids)}"
        )
        return summarize(Outcome(statuses, seconds, details), text)

    return run


def drift_job(target: Target, since: datetime, out: Path) -> subprocess.CompletedProcess[str]:
    """The drift job of the served sources over the payload log, from `since`."""
    command = [
        sys.executable, "-m", "monitoring", "drift", "--model", target.model.tag,
        "--logs", str(target.payload_log_dir), "--since", since.isoformat(),
        "--out", str(out), "--no-html", "--quiet",
    ]  # fmt: skip
    return subprocess.run(
        command,
        cwd=target.working_dir,
        env={**os.environ, "BENTOML_HOME": str(target.models_home)},
        capture_output=True,
        text=True,
        timeout=target.request_timeout,
        check=False,
    )


def drift_poisoning(target: Target, *, text_requests: int = 100, plain_requests: int = 100) -> Send:
    """/predict requests with numbers sent as text ("14.2") and plain ones, then the drift
    job over them: does it read every row the API accepted?"""
    text_body = instances_json([[repr(value) for value in target.model.row]])
    plain_body = instances_json([target.model.row])
    batch = uuid.uuid4().hex[:12]
    plan = [(f"abuse-text-{batch}-{i}", text_body) for i in range(text_requests)]
    plan += [(f"abuse-plain-{batch}-{i}", plain_body) for i in range(plain_requests)]

    def run() -> Outcome:
        since = datetime.now(UTC) - timedelta(seconds=1)
        started = time.monotonic()
        statuses = [_predict_with_id(target, body, rid) for rid, body in plan]
        accepted = [rid for (rid, _), status in zip(plan, statuses, strict=True) if status == "200"]
        logged = wait_logged(target.payload_log_dir, accepted)
        with tempfile.TemporaryDirectory(prefix="abuse-drift-") as out:
            job = drift_job(target, since, Path(out))
            summary_file = Path(out) / "drift.json"
            summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
        counted = summary.get("current_rows")
        details = {
            "text_requests": text_requests,
            "plain_requests": plain_requests,
            "accepted": len(accepted),
            "logged": len(logged),
            "job_exit": job.returncode,
            "job_stderr": job.stderr.strip()[-500:],
            "current_rows": counted,
        }
        text = (
            f"API accepted {len(accepted)}/{len(plan)}; "
            f"drift job exit {job.returncode}, counted {counted} rows"
        )
        outcome = Outcome(
            [*statuses, f"job exit {job.returncode}"], time.monotonic() - started, details
        )
        return summarize(outcome, text)

    return run


def latest_pointer(target: Target, *, pointer: str = "../../x") -> Send:
    """`LATEST` in the report directory naming `pointer`, a run directory made outside it
    holding a marked drift.json and report.html; /drift/latest must not serve them."""
    base = target.report_dir
    outside = (base / pointer).resolve()
    marker = f"abuse-marker-{uuid.uuid4().hex}"

    def run() -> Outcome:
        if outside.exists():
            raise RuntimeError(f"{outside} exists; it is not ours to overwrite")
        base.mkdir(parents=True, exist_ok=True)
        latest = base / "LATEST"
        previous = latest.read_bytes() if latest.is_file() else None
        outside.mkdir(parents=True)
        (outside / "drift.json").write_text(json.dumps({"marker": marker}))
        (outside / "report.html").write_text(f"<html><body>{marker}</body></html>")
        latest.write_text(pointer)
        started = time.monotonic()
        statuses, served = [], {}
        try:
            for route in ("/drift/latest", "/drift/latest.json"):
                status, _, response = send_request(target, "GET", route)
                statuses.append(status)
                served[route] = response is not None and marker in response.text
        finally:
            if previous is None:
                latest.unlink()
            else:
                latest.write_bytes(previous)
            shutil.rmtree(outside)
        details = {"pointer": pointer, "served_outside_file": served}
        text = f"LATEST={pointer}: served the file outside: {any(served.values())}"
        return summarize(Outcome(statuses, time.monotonic() - started, details), text)

    return run


SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def request_id(target: Target) -> Send:
    """/predict with unsafe X-Request-ID values (a tab, `../`, 10 KB) and one safe value."""
    tag = uuid.uuid4().hex[:8]
    sent = {
        "tab": f"abuse\t{tag}",
        "traversal": f"../../abuse-{tag}",
        "10 KB": tag + "r" * 10_240,
        "safe": f"abuse-safe-{tag}.1:2",
    }
    body = instances_json([target.model.row])

    def run() -> Outcome:
        started = time.monotonic()
        answers: dict[str, dict[str, Any]] = {}
        for label, value in sent.items():
            status, _, response = send_request(
                target, "POST", "/predict", body=body, headers={"X-Request-ID": value}
            )
            answered = response.headers.get("x-request-id", "") if response is not None else ""
            answers[label] = {"status": status, "sent": value, "answered": answered}
        seconds = time.monotonic() - started
        answered_ids = [a["answered"] for a in answers.values() if a["status"] == "200"]
        wait_logged(target.payload_log_dir, answered_ids)
        logged = set(logged_request_ids(target.payload_log_dir))
        for answer in answers.values():
            answer |= {
                "echoed": answer["answered"] == answer["sent"],
                "answered_is_safe": bool(SAFE_REQUEST_ID.match(answer["answered"])),
                "logged_as_sent": answer["sent"] in logged,
                "logged_as_answered": answer["answered"] in logged,
            }
        text = "; ".join(
            f"{label}: {'echoed' if a['echoed'] else 'replaced'}"
            + (", logged as sent" if a["logged_as_sent"] else "")
            for label, a in answers.items()
        )
        statuses = [a["status"] for a in answers.values()]
        return summarize(Outcome(statuses, seconds, {"ids": _shortened(answers)}), text)

    return run


# --- the Open Inference Protocol (v2) --------------------------------------------------

V2_HEADER_LENGTH = "Inference-Header-Content-Length"
V2Bodies = dict[str, tuple[bytes, dict[str, str]]]  # label: body, headers


def v2_infer_path(model: ServedModel) -> str:
    return f"/v2/models/{model.tag.partition(':')[0]}/infer"


def v2_body(tensors: list[dict[str, Any]]) -> bytes:
    return json.dumps({"inputs": tensors}).encode()


def v2_matrix(shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": "input", "shape": shape, "datatype": "FP64", "data": data}


def v2_binary(header: dict[str, Any], section: bytes) -> tuple[bytes, dict[str, str]]:
    """A binary-tensor request: the JSON header, then `section`; and its headers."""
    head = json.dumps(header).encode()
    return head + section, {V2_HEADER_LENGTH: str(len(head))}


def v2_claim_bodies(model: ServedModel) -> V2Bodies:
    """v2 requests whose shapes, sizes and nesting claim far more than they hold."""
    width = len(model.names)
    row = list(model.row)
    size_claim = {
        "inputs": [
            {
                "name": "input",
                "shape": [1, width],
                "datatype": "FP64",
                "parameters": {"binary_data_size": 2**40},
            }
        ]
    }
    length_prefix = {
        "inputs": [
            {
                "name": name,
                "shape": [1],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": 8},
            }
            for name in model.names
        ]
    }
    depth = 1_000_000
    nested = b'{"inputs": [{"name": "input", "shape": [1, %d], "datatype": "FP64", "data": ' % width
    return {
        "shape [10**12, F], one row of data": (
            v2_body([v2_matrix([10**12, width], row)]),
            {},
        ),
        "shape [2**31, 2**31, 2**31]": (
            v2_body([v2_matrix([2**31, 2**31, 2**31], row)]),
            {},
        ),
        "binary_data_size 2**40": v2_binary(size_claim, np.array(row).tobytes()),
        f"{V2_HEADER_LENGTH} 2**40": (
            v2_body([v2_matrix([1, width], row)]),
            {V2_HEADER_LENGTH: str(2**40)},
        ),
        "BYTES length prefixes of 2**31-1": v2_binary(
            length_prefix, (struct.pack("<I", 2**31 - 1) + b"abcd") * width
        ),
        f"data nested {depth:,} deep": (nested + b"[" * depth + b"1" + b"]" * depth + b"}]}", {}),
    }


def v2_claims(target: Target) -> Send:
    """v2 infers claiming huge shapes, binary sizes, header lengths, BYTES lengths and
    nesting, each with a few bytes of data."""
    return v2_send_each(target, v2_claim_bodies(target.model))


def v2_invalid_values(model: ServedModel, size_bytes: int, max_rows: int) -> tuple[bytes, int]:
    """A v2 [N, F] FP64 tensor of about `size_bytes` whose every value is "x"; its rows."""
    width = len(model.names)
    rows = min(max_rows, max(1, (size_bytes - 128) // (len('"x", ') * width)))
    head = f'{{"inputs": [{{"name": "input", "shape": [{rows}, {width}], "datatype": "FP64", '
    data = '"data": [' + ", ".join(['"x"'] * (rows * width)) + "]}]}"
    return (head + data).encode(), rows


def v2_error_amplification(target: Target, *, size_bytes: int = 10 * MIB) -> Send:
    """A v2 JSON infer of about `size_bytes` in which every value is invalid."""
    body, rows = v2_invalid_values(target.model, size_bytes, target.max_rows)
    send = post(target, v2_infer_path(target.model), body)

    def run() -> Outcome:
        outcome = send()
        answer = outcome.details["responses"][0]
        text = f"{len(body) / MIB:.1f} MiB, {rows:,} rows; error body {answer.get('bytes', 0):,} B"
        return summarize(outcome, text)

    return run


def v2_largest_bodies(model: ServedModel, max_rows: int, max_body_bytes: int) -> V2Bodies:
    """The largest valid [N, F] FP64 infers the server takes, as JSON and as binary data:
    `max_rows` rows of numbers written with all their digits, fewer if the body limit
    is reached first."""
    width = len(model.names)
    row = np.array(model.row) + np.random.default_rng(0).uniform(0.0, 1.0, width) / 3
    row_bytes = len(json.dumps(row.tolist()))  # its numbers and separators, and 2 more
    rows = min(max_rows, (max_body_bytes - 4096) // row_bytes)
    flat = np.tile(row, rows)
    tensor = {"name": "input", "shape": [rows, width], "datatype": "FP64"}
    binary_tensor = {**tensor, "parameters": {"binary_data_size": flat.size * 8}}
    return {
        "json": (v2_body([{**tensor, "data": flat.tolist()}]), {}),
        "binary": v2_binary({"inputs": [binary_tensor]}, flat.astype("<f8").tobytes()),
    }


def v2_send_each(target: Target, bodies: V2Bodies) -> Send:
    """A step that posts each body to the v2 infer route in turn and reports the answers."""
    path = v2_infer_path(target.model)

    def run() -> Outcome:
        started = time.monotonic()
        statuses, answers = [], []
        for label, (body, headers) in bodies.items():
            status, facts, _ = send_request(target, "POST", path, body=body, headers=headers)
            statuses.append(status)
            answers.append({"body": label, "body_bytes": len(body), **facts})
        text = "; ".join(
            f"{a['body']} ({a['body_bytes'] / MIB:.1f} MiB): {s} in {a.get('seconds', '?')} s"
            for a, s in zip(answers, statuses, strict=True)
        )
        return summarize(
            Outcome(statuses, time.monotonic() - started, {"responses": answers}), text
        )

    return run


def v2_largest(target: Target) -> Send:
    """The largest valid v2 infers, JSON then binary tensors: time, memory and /livez."""
    return v2_send_each(
        target, v2_largest_bodies(target.model, target.max_rows, target.max_body_bytes)
    )


def _shortened(answers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Long ids cut to 200 characters, with their length: the results stay readable."""
    short = {}
    for label, answer in answers.items():
        short[label] = {
            **answer,
            "sent": answer["sent"][:200],
            "sent_length": len(answer["sent"]),
            "answered": answer["answered"][:200],
            "answered_length": len(answer["answered"]),
        }
    return short


Attack = Callable[..., Send]
ATTACKS: dict[str, Attack] = {
    attack.__name__: attack
    for attack in (
        compressed_arrow,
        compressed_dictionary,
        error_amplification,
        wide_schema,
        metrics_cardinality,
        header_flood,
        slow_uploads,
        big_body,
        client_5xx,
        payload_log_padding,
        drift_poisoning,
        latest_pointer,
        request_id,
        v2_claims,
        v2_error_amplification,
        v2_largest,
    )
}
# sends 21 bodies of up to MAX_BODY_BYTES and waits for the log to write them
LONGER_TIMEOUT = {"payload_log_padding": 3.0}


def defaults(attack: Attack) -> dict[str, Any]:
    """The size options of an attack and their defaults (recorded with the results)."""
    parameters = inspect.signature(attack).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


# --- running an attack --------------------------------------------------------------------


@dataclass
class Result:
    attack: str
    statuses: dict[str, int]
    """How many requests got each status, in the order first seen."""
    seconds: float | None
    timed_out: bool
    rss_before_mib: float | None
    rss_after_mib: float | None
    rss_growth_mib: float | None
    peak_growth_mib: float | None
    livez_worst_ms: float | None
    livez_timeouts: int
    livez_failures: int
    livez_probes: int
    metrics_bytes: int | None
    metrics_scrape_s: float
    payload_log_bytes: int
    worker_lost: bool
    details: dict[str, Any] = field(default_factory=dict)
    server_restarted: bool = False


def _mib(value: int | None) -> float | None:
    return None if value is None else round(value / MIB, 1)


def _growth(after: int | None, before: int | None) -> float | None:
    return None if after is None or before is None else round((after - before) / MIB, 1)


def run_attack(target: Target, name: str, send: Send, timeout: float) -> Result:
    """`send` measured: worker memory and /livez during it, then /metrics and the log."""
    pid = worker_pid(target.server_pid)
    before = rss_bytes(pid)
    outcome: list[Outcome] = []
    failure: list[BaseException] = []

    def attack() -> None:
        try:
            outcome.append(send())
        except Exception as exc:
            failure.append(exc)

    with PeakRss(pid) as peak, LivezProbe(target.url) as probe:
        thread = threading.Thread(target=attack, name=f"attack {name}", daemon=True)
        thread.start()
        thread.join(timeout)
    timed_out = thread.is_alive()
    time.sleep(REST_S)
    after = rss_bytes(pid)
    metrics, scrape_s = scrape_metrics(target.url)
    done = outcome[0] if outcome else None
    details = done.details if done else {}
    if failure:
        details["error"] = f"{type(failure[0]).__name__}: {failure[0]}"[:500]
    if timed_out:
        details["summary"] = f"no answer within {timeout:.0f} s"
    return Result(
        attack=name,
        statuses=dict(
            Counter(["timeout"] if timed_out else (done.statuses if done else ["error"]))
        ),
        seconds=round(done.seconds, 3) if done else None,
        timed_out=timed_out,
        rss_before_mib=_mib(before),
        rss_after_mib=_mib(after),
        rss_growth_mib=_growth(after, before),
        peak_growth_mib=_growth(max(peak.peak, after or 0), before),
        livez_worst_ms=round(max(probe.latencies_ms), 1) if probe.latencies_ms else None,
        livez_timeouts=probe.timeouts,
        livez_failures=probe.failures,
        livez_probes=len(probe.latencies_ms) + probe.failures,
        metrics_bytes=metrics,
        metrics_scrape_s=scrape_s,
        payload_log_bytes=dir_bytes(target.payload_log_dir),
        worker_lost=peak.gone or after is None,
        details=details,
    )


def attack_target(
    target: Target, name: str, timeout: float | None = None, **options: Any
) -> Result:
    """One attack by name, sized by `options`, measured against `target`."""
    limit = timeout or target.request_timeout * LONGER_TIMEOUT.get(name, 1.0)
    return run_attack(target, name, ATTACKS[name](target, **options), limit)


def healthy(server: Server, target: Target, worker: int) -> bool:
    """Still the same worker, and it answers /livez at once."""
    if server.process.poll() is not None or worker_pids(target.server_pid) != [worker]:
        return False
    try:
        return requests.get(f"{target.url}/livez", timeout=5).status_code == 200
    except requests.RequestException:
        return False


# --- the command line --------------------------------------------------------------------


def status_text(statuses: Sequence[str] | dict[str, int]) -> str:
    """`["200", "200", "503"]` or `{"200": 2, "503": 1}` as `200 x2, 503`."""
    counts = Counter(statuses)
    return ", ".join(f"{status} x{n}" if n > 1 else status for status, n in counts.items())


def _cell(value: object, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}{unit}"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return str(value)


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Abuse attacks: {report['label']}",
        "",
        f"{report['started_at']}, sources {report['sources']['path']} at "
        f"{report['sources']['commit'][:7]}, model {report['model']}, one worker; "
        f"load average {report['load_average_start']} at start, "
        f"{report['load_average_end']} at end.",
        "",
        "| attack | status | seconds | RSS growth MiB | peak RSS growth MiB | worst /livez ms "
        "| /metrics bytes | payload log bytes | what happened |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for result in report["results"]:
        livez = _cell(result["livez_worst_ms"])
        if timeouts := result["livez_timeouts"]:
            livez += f" ({timeouts} timeout{'s' if timeouts > 1 else ''})"
        note = result["details"].get("summary", "")
        if result.get("server_restarted"):
            note += " (server replaced after it: busy or dead)"
        lines.append(
            f"| {result['attack']} | {status_text(result['statuses'])} "
            f"| {_seconds(result['seconds'])} "
            f"| {_cell(result['rss_growth_mib'])} | {_cell(result['peak_growth_mib'])} | {livez} "
            f"| {_cell(result['metrics_bytes'])} | {_cell(result['payload_log_bytes'])} | {note} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.abuse", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add = parser.add_argument
    add(
        "--working-dir",
        type=Path,
        metavar="DIR",
        help="serve the sources in DIR (default: this checkout)",
    )
    add("--model", metavar="TAG", help="serve this model from the current BENTOML_HOME")
    add("--only", nargs="+", choices=list(ATTACKS), metavar="NAME",
        help=f"run these attacks only: {', '.join(ATTACKS)}")  # fmt: skip
    add("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
        help="seconds an attack may take; then: timeout (default %(default)s)")  # fmt: skip
    add("--fresh-server", action="store_true",
        help="a new server per attack (default: one, replaced if left busy or dead)")  # fmt: skip
    add("--label", default="this checkout", help="what the sources are, for the report")
    add("--out", type=Path, default=RESULTS / "abuse.json", metavar="FILE.json",
        help="results file; FILE.md next to it (default %(default)s)")  # fmt: skip
    add("--keep-work", action="store_true", help="keep the temporary directory")
    return parser.parse_args(argv)


@contextlib.contextmanager
def work_dir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bench-abuse-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}", flush=True)
        else:
            shutil.rmtree(path, ignore_errors=True)


def sources(path: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, timeout=30, check=False
        )
        return done.stdout.strip()

    changed = [line[3:] for line in git("status", "--porcelain").splitlines()]
    return {"path": str(path), "commit": git("rev-parse", "HEAD"), "changed_files": changed}


class Campaign:
    """The attacks in turn against one server, replaced after an attack that left it busy
    or dead; with `fresh`, every attack gets a new server (its own payload log, /metrics
    and worker memory), so no attack pays for what an earlier one left behind."""

    def __init__(
        self,
        models_home: Path,
        work: Path,
        tag: str,
        *,
        working_dir: Path | None,
        timeout: float,
        fresh: bool,
    ) -> None:
        self.models_home, self.work, self.tag = models_home, work, tag
        self.working_dir = working_dir
        self.timeout = timeout
        self.fresh = fresh
        self.starts = 0
        self.server: Server | None = None
        self.target: Target | None = None

    def _start(self) -> tuple[Server, Target]:
        self.close()
        self.starts += 1
        work = self.work / f"server-{self.starts}"
        work.mkdir()
        self.server, self.target = start(
            self.models_home, work, self.tag, working_dir=self.working_dir, timeout=self.timeout
        )
        return self.server, self.target

    def run(self, name: str) -> Result:
        server, target = self.server, self.target
        if server is None or target is None or self.fresh:
            server, target = self._start()
        print(f"{name}: ...", flush=True)
        worker = worker_pid(target.server_pid)
        result = attack_target(target, name)
        summary = result.details.get("summary", "")
        print(f"{name}: {status_text(result.statuses)}, {summary}", flush=True)
        if result.timed_out or not healthy(server, target, worker):
            result.server_restarted = True
            self.close()
        return result

    def close(self) -> None:
        if self.server is not None:
            stop(self.server)
            self.server = None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the server is stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    names = args.only or list(ATTACKS)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    with work_dir(args.keep_work) as work:
        tag, models_home = harness.prepare_model(args.model, work, name="abuse")
        campaign = Campaign(
            models_home,
            work,
            tag,
            working_dir=args.working_dir,
            timeout=args.timeout,
            fresh=args.fresh_server,
        )
        try:
            results = [campaign.run(name) for name in names]
        finally:
            campaign.close()
    target = campaign.target
    assert target is not None
    report = {
        "label": args.label,
        "started_at": started_at,
        "load_average_start": load_at_start,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
        "sources": sources(target.working_dir),
        "model": tag,
        "server_env": {k: v for k, v in server_env(Path("WORK"), tag).items() if k != "API_KEYS"},
        "max_body_bytes": target.max_body_bytes,
        "max_rows": target.max_rows,
        "timeout_s": args.timeout,
        "server_starts": campaign.starts,
        "fresh_server": args.fresh_server,
        "options": {name: defaults(ATTACKS[name]) for name in names},
        "results": [asdict(result) for result in results],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    table = markdown(report)
    args.out.with_suffix(".md").write_text(table)
    print(table, flush=True)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
