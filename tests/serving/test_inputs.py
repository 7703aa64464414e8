"""JSON request bodies: the plain pass, the full rule in chunks, at most 100 errors listed."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from typing import ClassVar

import pytest
from pydantic import ValidationError

from model.schema import Feature, FeatureSchema
from serving import inputs
from serving.errors import MAX_REPORTED_ERRORS, TOO_MANY_ERRORS, shape_error
from serving.inputs import instances_input

SCHEMA = FeatureSchema(
    features=[
        Feature(name="x", kind="numeric", min=0, max=10),
        Feature(name="y", kind="numeric", min=0, max=10),
        Feature(name="c", kind="categorical", categories=["a", "b"]),
    ],
    target="t",
    task="classification",
    classes=[0, 1],
)
SPEC = instances_input(SCHEMA, 100_000)


def _body(instances: list) -> bytes:
    return json.dumps({"instances": instances}).encode()


def _refusal(body: bytes) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        SPEC.from_json(body)
    return caught.value


def test_the_full_rule_accepts_what_the_one_rule_accepts_across_chunks():
    rows = [[str(i % 10), i % 7, "a" if i % 2 else None] for i in range(5_000)]
    got = SPEC.from_json(_body(rows)).instances
    assert len(got) == 5_000
    assert got[1233] == (3.0, 1.0, "a") and got[4_000] == (0.0, 3.0, None)


def test_at_most_100_errors_are_listed_with_the_total_and_true_locations():
    rows = [[1, 2, "a"]] * 3_000 + [["x", "y", "a"]] * 2_000
    error = _refusal(_body(rows))
    details = error.errors()
    assert len(details) == MAX_REPORTED_ERRORS + 1
    assert details[0]["loc"] == ("instances", 3_000, "x")
    assert details[1]["loc"] == ("instances", 3_000, "y")
    assert details[99]["loc"] == ("instances", 3_049, "y")
    assert details[-1]["type"] == TOO_MANY_ERRORS and details[-1]["ctx"]["total"] == 4_000

    raw = json.dumps(
        {"error": "x", "detail": error.errors(include_context=False, include_input=False)}
    ).encode()
    status, shaped, _ = shape_error(400, raw)
    assert status == 400 and shaped["error_count"] == 4_000
    assert len(shaped["detail"]) == MAX_REPORTED_ERRORS
    assert shaped["error"] == "4000 validation errors for Input; the first 100 are listed"


def test_few_errors_are_all_listed_by_feature_name():
    error = _refusal(_body([[1, 2, "a"], [1, 1e20, "a"], {"x": 1, "y": 2}]))
    assert [(d["loc"], d["type"]) for d in error.errors()] == [
        (("instances", 1, "y"), "less_than_equal"),
        (("instances", 2, "c"), "missing"),
    ]


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        (b"{not json", (), "json_invalid"),
        (b"[]", (), "model_type"),
        (b'{"instances": 5}', ("instances",), "list_type"),
        (b'{"instances": []}', ("instances",), "too_short"),
    ],
)
def test_body_shape_errors(body, loc, kind):
    details = _refusal(body).errors()
    assert [(d["loc"], d["type"]) for d in details] == [(loc, kind)]


def test_too_many_instances_is_refused_before_any_value_is_checked():
    spec = instances_input(SCHEMA, 10)
    with pytest.raises(ValidationError) as caught:
        spec.from_json(_body([["bad"] * 3] * 11))
    assert [d["type"] for d in caught.value.errors()] == ["too_long"]


def test_a_large_refused_body_leaves_the_event_loop_free():
    body = _body([["x", "y", 3]] * 60_000)  # about 1 MB, 120,000 errors (3 reads as "3")

    class Request:
        scope: ClassVar = {"type": "http", "headers": [(b"content-type", b"application/json")]}

        async def body(self) -> bytes:
            return body

    async def parse_while_ticking() -> tuple[float, float, int]:
        gaps: list[float] = []

        async def tick() -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        started = time.perf_counter()
        with pytest.raises(ValidationError) as caught:
            await SPEC.from_http_request(Request(), None)
        took = time.perf_counter() - started
        ticker.cancel()
        return max(gaps), took, caught.value.errors()[-1]["ctx"]["total"]

    gc.freeze()  # as the service does once loaded: the collector skips what was there before
    try:
        worst_gap, took, total = asyncio.run(parse_while_ticking())
    finally:
        gc.unfreeze()
    assert total == 120_000
    # on the loop, the parse would be one gap as long as itself; in a thread, many short ones
    assert worst_gap < took / 4, (worst_gap, took)


def test_small_bodies_stay_on_the_event_loop(monkeypatch):
    async def no_thread(*args, **kwargs):
        raise AssertionError("a small body went to a thread")

    monkeypatch.setattr(inputs.anyio.to_thread, "run_sync", no_thread)

    class Request:
        scope: ClassVar = {"type": "http", "headers": [(b"content-type", b"application/json")]}

        async def body(self) -> bytes:
            return _body([[1, 2, "a"]])

    spec = asyncio.run(SPEC.from_http_request(Request(), None))
    assert spec.instances == [(1.0, 2.0, "a")]


@pytest.mark.parametrize("extra_keys", [3, 50_000])
def test_keys_that_are_no_feature_are_refused_and_counted(extra_keys):
    """A body over the thread size is parsed first: its wide objects skip the plain pass."""
    instance = {"x": 1, "y": 2, "c": "a", **{f"k{i}": i for i in range(extra_keys)}}
    body = _body([{"x": 1, "y": 2, "c": "b"}, instance, {"x": "bad", "y": 2, "c": "a"}])
    assert (len(body) > inputs.THREAD_BODY_BYTES) == (extra_keys > 3)
    details = _refusal(body).errors()
    listed = [d for d in details if d["type"] == "extra_forbidden"]
    assert listed[0]["loc"] == ("instances", 1, "k0") and listed[0]["input"] == 0
    assert ("instances", 2, "x") in [d["loc"] for d in details]
    if extra_keys > MAX_REPORTED_ERRORS:
        assert len(details) == MAX_REPORTED_ERRORS + 1
        assert details[-1]["ctx"]["total"] == extra_keys + 1
    else:
        assert len(listed) == extra_keys and len(details) == extra_keys + 1


def test_large_and_small_bodies_give_the_same_instances():
    rows = [[i % 10, str(i % 7), "a"] for i in range(6_000)]
    large = _body(rows)
    assert len(large) > inputs.THREAD_BODY_BYTES
    assert SPEC.from_json(large).instances[:50] == SPEC.from_json(_body(rows[:50])).instances
