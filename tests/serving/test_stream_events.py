"""Stream events checked by the API's rule, their errors located as the API locates them,
and the shapes of results, dead letters and payload log records, without Redis."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from model.outputs import Outputs
from monitoring.payloads import to_record
from serving.capture import BatchCapture
from serving.errors import MAX_REPORTED_ERRORS
from serving.inputs import instances_input
from serving.payload_log import sample_line
from serving.stream.events import Event, EventChecker
from serving.stream.results import event_text, result_values
from tests.serving.test_instances import SCHEMA, VALID


def event(number: int, instance: object = VALID, **fields: bytes) -> Event:
    raw = {b"instance": json.dumps(instance).encode(), **{k.encode(): v for k, v in fields.items()}}
    return Event(f"{1000 + number}-0", raw)


def api_errors(instance: object) -> list[dict]:
    """The API's located errors for the same instance, sent alone in a /predict body."""
    spec = instances_input(SCHEMA, max_rows=10)
    with pytest.raises(ValidationError) as caught:
        spec.from_json(json.dumps({"instances": [instance]}).encode())
    return caught.value.errors()


@pytest.fixture
def checker() -> EventChecker:
    return EventChecker(SCHEMA, max_event_bytes=4096)


def test_good_events_keep_their_order_and_values(checker):
    events = [event(0), event(1, [41, "7.5", None]), event(2, {**VALID, "city": 75})]
    checked = checker.check(events)
    assert checked.good == events and checked.bad == []
    assert checked.instances[0] == {"age": 40.0, "income level": 1200.5, "city": "paris"}
    assert checked.instances[1] == (41.0, 7.5, None)
    assert checked.instances[2]["city"] == "75"


@pytest.mark.parametrize(
    "instance",
    [
        {**VALID, "age": "forty"},
        {**VALID, "income level": 2e15},
        {**VALID, "age": True},
        {**VALID, "city": [1]},
        {"age": 40, "city": "paris"},
        {**VALID, "colour": "red"},
        [40, 1200.5],
        [40, "x", "paris"],
        "not an instance",
    ],
)
def test_a_bad_event_gets_the_apis_errors_located_from_its_field(checker, instance):
    checked = checker.check([event(0), event(1, instance), event(2)])
    assert [e.id for e in checked.good] == ["1000-0", "1002-0"]
    ((bad, body),) = checked.bad
    assert bad.id == "1001-0"
    expected = api_errors(instance)
    assert body["error_count"] == len(expected)
    assert body["error"].startswith(f"{len(expected)} validation error")
    assert [(d["type"], d["msg"]) for d in body["detail"]] == [
        (e["type"], e["msg"]) for e in expected
    ]
    # the API's ["instances", 0, ...] is the event's ["instance", ...]
    assert [d["loc"] for d in body["detail"]] == [["instance", *e["loc"][2:]] for e in expected]


def test_events_without_an_instance_or_with_broken_json_or_too_large(checker):
    events = [
        Event("1-0", {b"other": b"1"}),
        Event("2-0", {b"instance": b"{not json"}),
        Event("3-0", {b"instance": json.dumps({**VALID, "city": "x" * 5000}).encode()}),
        event(4),
    ]
    checked = checker.check(events)
    assert [e.id for e in checked.good] == ["1004-0"]
    problems = {e.id: body["detail"][0] for e, body in checked.bad}
    assert problems["1-0"] == {"type": "missing", "loc": ["instance"], "msg": "Field required"}
    assert problems["2-0"]["type"] == "json_invalid"
    assert problems["3-0"]["type"] == "event_too_large"
    assert "STREAM_MAX_EVENT_BYTES" in problems["3-0"]["msg"]


def test_many_errors_in_one_event_list_the_first_hundred_and_count_all(checker):
    wide = {**VALID, **{f"extra {n}": n for n in range(150)}}
    ((_, body),) = checker.check([event(0, wide)]).bad
    assert body["error_count"] == 150
    assert len(body["detail"]) == MAX_REPORTED_ERRORS
    assert body["error"] == "150 validation errors for Event; the first 100 are listed"


def test_results_carry_the_model_prediction_and_probabilities_as_json():
    outputs = Outputs(np.array([1, 0]), np.array([[0.25, 0.75], [0.9, 0.1]]), ["0", "1"])
    first, second = result_values("m:1", outputs)
    assert first == ("m:1", "1", '{"0":0.25,"1":0.75}')
    assert json.loads(second[2]) == {"0": 0.9, "1": 0.1}
    regression = Outputs(np.array([1.5]), None, [])
    assert result_values("m:1", regression) == [("m:1", "1.5", "null")]


def test_the_dead_letter_keeps_the_event_fields_for_replay():
    kept = json.loads(event_text(event(0, key=b"customer-7")))
    assert kept == {"instance": json.dumps(VALID), "key": "customer-7"}


def test_sampled_stream_rows_read_back_as_logged_requests():
    import pandas as pd

    frame = pd.DataFrame([[40.0, 1.0, "paris"], [50.0, 2.0, None]], columns=SCHEMA.names)
    outputs = Outputs(np.array([1, 0]), np.array([[0.2, 0.8], [0.7, 0.3]]), ["0", "1"])
    submitted = []
    capture = BatchCapture(submit=submitted.append, sample_rate=1.0, max_rows=1, model="m:1")
    capture.sample("1000-0", "stream:in", frame, outputs)
    (sample,) = submitted
    record = to_record(json.loads(sample_line(sample)))
    assert record["endpoint"] == "stream:in" and record["request_id"] == "1000-0"
    assert record["rows"] == 2 and len(record["instances"]) == 1
    assert record["model"] == "m:1"
    BatchCapture(submit=submitted.append, sample_rate=0.0, max_rows=0, model="m:1").sample(
        "1001-0", "stream:in", frame, outputs
    )
    assert len(submitted) == 1
