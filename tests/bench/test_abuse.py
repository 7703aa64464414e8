"""The abuse harness's parts that need no server: bodies, the /proc walk, the log reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from bench import abuse
from bench.abuse import MIB, ServedModel
from model.settings import Settings

MODEL = ServedModel(tag="m:1", names=("a", "b", "c"), row=(1.5, 2.0, 3.25))


def read(body: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(body)).read_all()


def test_zero_rows_are_tiny_on_the_wire_and_whole_when_decoded() -> None:
    body = abuse.zero_rows_stream(["a", "b"], rows=2_500_000, batch_rows=1_000_000)
    table = read(body)
    assert table.column_names == ["a", "b"] and table.num_rows == 2_500_000
    assert table.column("a").type == pa.float64()
    assert len(body) < 2_500_000 * 2 * 8 / 1000


def test_the_dictionary_is_huge_and_the_row_single() -> None:
    table = read(abuse.huge_dictionary_stream(MODEL, entries=1_000_000))
    assert table.num_rows == 1 and table.column_names == list(MODEL.names)
    first = table.column("a").chunk(0)
    assert pa.types.is_dictionary(first.type) and len(first.dictionary) == 1_000_000
    assert table.column("c").to_pylist() == [3.25]


def test_the_big_body_holds_valid_rows_of_about_its_size() -> None:
    body = abuse.valid_rows_stream(MODEL, 3 * MIB)
    table = read(body)
    assert abs(len(body) - 3 * MIB) < 64 * 1024
    assert table.num_rows == 3 * MIB // 24
    assert table.slice(0, 1).to_pylist() == [dict(zip(MODEL.names, MODEL.row, strict=True))]


def test_the_invalid_body_fits_the_default_row_limit() -> None:
    body, rows = abuse.invalid_values_json(features=30, size_bytes=10 * MIB)
    instances = json.loads(body)["instances"]
    assert len(instances) == rows < Settings.from_env({}).serving.predict_batch_max_rows
    assert 9.5 * MIB < len(body) <= 10 * MIB
    assert {value for row in instances for value in row} == {"x"}


def test_a_padded_body_is_the_valid_row_at_the_exact_size() -> None:
    body = abuse.padded_json(MODEL, 2 * MIB)
    assert len(body) == 2 * MIB
    assert json.loads(body) == {"instances": [list(MODEL.row)]}


def test_the_wide_schema_has_no_column_of_the_model() -> None:
    table = read(abuse.wide_stream(500))
    assert table.num_columns == 500 and len(set(table.column_names)) == 500
    assert not set(table.column_names) & set(MODEL.names)


def test_request_ids_are_read_from_each_line_even_after_a_huge_one(tmp_path: Path) -> None:
    lines = [
        json.dumps({"ts": "t", "request_id": "first\there", "request": {}}).encode(),
        b'{"ts": "t", "request_id": "padded", "request": {"instances": [[1]]'
        + b" " * (20 * MIB)
        + b"}}",
        json.dumps({"ts": "t", "request_id": "last", "request": {}}).encode(),
    ]
    (tmp_path / "payloads-1.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "payloads-1.jsonl.1").write_bytes(lines[2].replace(b"last", b"rotated") + b"\n")
    assert abuse.logged_request_ids(tmp_path) == ["first\there", "padded", "last", "rotated"]


@pytest.fixture
def fake_server() -> Iterator[subprocess.Popen[bytes]]:
    """A process whose child runs a program named like BentoML's worker module."""
    child = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', " + (
        "'import time; time.sleep(60)', '_bentoml_impl.worker.service']); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", child], start_new_session=True)
    try:
        yield parent
    finally:
        os.killpg(parent.pid, 9)
        parent.wait()


def test_the_worker_is_found_among_the_descendants(fake_server) -> None:
    worker = abuse.worker_pid(fake_server.pid, wait_s=10)
    assert worker in abuse.descendant_pids(fake_server.pid)
    assert worker != fake_server.pid
    assert "_bentoml_impl.worker" in abuse.cmdline(worker)
    assert abuse.rss_bytes(worker) > 1 * MIB


def test_the_memory_of_a_finished_process_is_none() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert abuse.rss_bytes(gone.pid) is None


def test_the_peak_sampler_sees_memory_that_is_freed_again() -> None:
    with abuse.PeakRss(os.getpid()) as peak:
        before = peak.peak
        block = np.ones(200 * MIB // 8)
        time.sleep(0.3)
        del block
    assert peak.peak - before > 150 * MIB


def test_statuses_are_counted_in_the_order_first_seen() -> None:
    assert abuse.status_text(["503", "200", "503"]) == "503 x2, 200"
    assert abuse.status_text({"timeout": 1}) == "timeout"


def test_the_invalid_v2_tensor_holds_its_shape_in_text_values() -> None:
    body, rows = abuse.v2_invalid_values(MODEL, size_bytes=MIB, max_rows=100_000)
    (tensor,) = json.loads(body)["inputs"]
    assert tensor["shape"] == [rows, 3] and len(tensor["data"]) == rows * 3
    assert set(tensor["data"]) == {"x"}
    assert 0.9 * MIB < len(body) <= MIB
    _, capped = abuse.v2_invalid_values(MODEL, size_bytes=MIB, max_rows=10)
    assert capped == 10


def test_the_largest_v2_bodies_are_the_same_rows_within_both_limits() -> None:
    bodies = abuse.v2_largest_bodies(MODEL, max_rows=1_000, max_body_bytes=10 * MIB)
    json_body, json_headers = bodies["json"]
    binary_body, binary_headers = bodies["binary"]
    assert json_headers == {}
    (tensor,) = json.loads(json_body)["inputs"]
    assert tensor["shape"] == [1_000, 3]
    cut = int(binary_headers[abuse.V2_HEADER_LENGTH])
    (binary_tensor,) = json.loads(binary_body[:cut])["inputs"]
    section = binary_body[cut:]
    assert binary_tensor["parameters"]["binary_data_size"] == len(section) == 3_000 * 8
    assert np.frombuffer(section, "<f8").tolist() == tensor["data"]
    small = abuse.v2_largest_bodies(MODEL, max_rows=1_000_000, max_body_bytes=MIB)
    assert MIB - 8192 < len(small["json"][0]) <= MIB


def test_the_v2_claims_hold_a_few_bytes_each() -> None:
    bodies = abuse.v2_claim_bodies(MODEL)
    for label, (body, headers) in bodies.items():
        if label.startswith("data nested"):
            continue
        assert len(body) < 1024, label
        length = headers.get(abuse.V2_HEADER_LENGTH)
        if length is not None and int(length) < len(body):  # the header itself is whole JSON
            json.loads(body[: int(length)])
