"""Stream events in, checked instances out: the API's rule for each event, errors located.

An event is a stream entry whose field `instance` holds one instance as JSON: an object
keyed by feature name, or a list of values in schema order, exactly as one item of the
API's `{"instances": [...]}`. Every value follows `model.values`, through the API's own
instance type (`serving.instances`). A refused event gets the API's error shape
(`{"error", "detail", "error_count"}`, `serving.errors`), with each `loc` starting at the
event field: `["instance", "mean radius"]` where the API says
`["instances", 3, "mean radius"]`, `["instance"]` for the whole instance, `[]` for the
event itself.

Most batches hold good events only: their instances are joined into one JSON array and
checked in one call of pydantic's compiled validator with plain numbers. Only a batch it
refuses is read again event by event under the full rule, which keeps the good events
and reports the bad ones; one bad event never refuses the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic_core
from pydantic import TypeAdapter, ValidationError
from pydantic_core import InitErrorDetails

from model.schema import FeatureSchema

from ..errors import MAX_REPORTED_ERRORS
from ..instances import PlainNumber, instance_type, locate_errors

INSTANCE_FIELD = "instance"
EVENT_TOO_LARGE = "event_too_large"
PREDICTION_FAILED = "prediction_failed"


@dataclass(frozen=True)
class Event:
    """One stream entry as read: its id and its fields, both as Redis returned them."""

    id: str
    fields: Mapping[bytes, bytes]


@dataclass
class CheckedBatch:
    """The events of a batch split in two: good ones with their instances, refused ones
    with their error bodies; each list keeps the batch's order."""

    good: list[Event] = field(default_factory=list)
    instances: list[Any] = field(default_factory=list)
    bad: list[tuple[Event, dict[str, Any]]] = field(default_factory=list)


def error_body(details: Sequence[Mapping[str, Any]], total: int | None = None) -> dict[str, Any]:
    """The API's error shape for one event: the first 100 details and the total."""
    count = len(details) if total is None else total
    listed = [
        {"type": d["type"], "loc": list(d["loc"]), "msg": d["msg"]}
        for d in details[:MAX_REPORTED_ERRORS]
    ]
    error = f"{count} validation error{'s' if count != 1 else ''} for Event"
    if count > len(listed):
        error += f"; the first {len(listed)} are listed"
    return {"error": error, "detail": listed, "error_count": count}


def event_problem(kind: str, message: str, loc: Sequence[str] = ()) -> dict[str, Any]:
    """An error body for a problem of the event itself, not of a value."""
    return error_body([{"type": kind, "loc": loc, "msg": message}])


class EventChecker:
    """Checks the events of one batch against a model's schema."""

    def __init__(self, schema: FeatureSchema, max_event_bytes: int) -> None:
        self.names = schema.names
        self.max_event_bytes = max_event_bytes
        self._plain = TypeAdapter(list[instance_type(schema, PlainNumber)])  # type: ignore[misc]
        self._full = TypeAdapter(list[instance_type(schema)])  # type: ignore[misc]

    def check(self, events: Sequence[Event]) -> CheckedBatch:
        raws = [event.fields.get(INSTANCE_FIELD.encode()) for event in events]
        if all(raw is not None and len(raw) <= self.max_event_bytes for raw in raws):
            try:
                instances = self._plain.validate_json(b"[" + b",".join(raws) + b"]")  # type: ignore[arg-type]
            except ValueError:
                pass  # a bad event, or text the full rule reads: decided event by event
            else:
                return CheckedBatch(good=list(events), instances=instances)
        return self._one_by_one(events, raws)

    def _one_by_one(self, events: Sequence[Event], raws: Sequence[bytes | None]) -> CheckedBatch:
        checked = CheckedBatch()
        parsed: list[tuple[Event, Any]] = []
        for event, raw in zip(events, raws, strict=True):
            problem = self._envelope_problem(raw)
            if problem is not None:
                checked.bad.append((event, problem))
                continue
            try:
                parsed.append((event, pydantic_core.from_json(raw)))  # type: ignore[arg-type]
            except ValueError as error:
                checked.bad.append(
                    (
                        event,
                        event_problem("json_invalid", f"Invalid JSON: {error}", [INSTANCE_FIELD]),
                    )
                )
        refused = self._refused(parsed)
        kept = [
            (event, value) for index, (event, value) in enumerate(parsed) if index not in refused
        ]
        checked.good = [event for event, _ in kept]
        checked.instances = self._full.validate_python([value for _, value in kept])
        order = {event.id: position for position, event in enumerate(events)}
        checked.bad += [(parsed[index][0], body) for index, body in refused.items()]
        checked.bad.sort(key=lambda pair: order[pair[0].id])
        return checked

    def _envelope_problem(self, raw: bytes | None) -> dict[str, Any] | None:
        if raw is None:
            return event_problem("missing", "Field required", [INSTANCE_FIELD])
        if len(raw) > self.max_event_bytes:
            return event_problem(
                EVENT_TOO_LARGE,
                f"the instance is {len(raw)} bytes, more than STREAM_MAX_EVENT_BYTES "
                f"({self.max_event_bytes})",
                [INSTANCE_FIELD],
            )
        return None

    def _refused(self, parsed: Sequence[tuple[Event, Any]]) -> dict[int, dict[str, Any]]:
        """Error bodies of the parsed instances the full rule refuses, by position."""
        try:
            self._full.validate_python([value for _, value in parsed])
        except ValidationError as error:
            by_index: dict[int, list[InitErrorDetails]] = {}
            for detail in error.errors():
                index = detail["loc"][0]
                assert isinstance(index, int)
                by_index.setdefault(index, []).append(
                    {
                        "type": detail["type"],
                        "loc": ("instances", *detail["loc"]),
                        "input": detail["input"],
                        "ctx": detail.get("ctx", {}),
                    }
                )
            return {index: self._located(details) for index, details in by_index.items()}
        return {}

    def _located(self, details: list[InitErrorDetails]) -> dict[str, Any]:
        """One event's errors, located as the API locates them, then from the event field."""
        located = locate_errors(ValidationError.from_exception_data("Event", details), self.names)
        return error_body(
            [
                {"type": d["type"], "loc": (INSTANCE_FIELD, *d["loc"][2:]), "msg": d["msg"]}
                for d in located.errors()
            ]
        )
