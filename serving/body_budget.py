"""Body limits that fit the container: read the cgroup memory limit, clamp what cannot fit.

While a request is answered its body costs several times its size (parsed values, the
model's frame, the answer): `DECODE_OVERHEAD`, measured with maximum-size JSON and Arrow
bodies (docs/operations.md). Each worker may hold `MAX_BODY_BYTES_IN_FLIGHT` of bodies,
so the workers of one container need that many bytes times the overhead, on top of what
the model and the server take at rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from model.settings import Settings

logger = logging.getLogger(__name__)

# peak worker memory growth per body byte, measured on 100,000-row bodies: Arrow 6.1,
# JSON objects 6.9, JSON lists of numbers 12.7, JSON lists of numeric text 15.5
DECODE_OVERHEAD = 16
# a worker at rest: Python, BentoML, the model and its libraries (330 MiB measured for
# one worker with its share of BentoML's arbiter, after start-up and 50 predictions)
RESTING_BYTES = 350 * 2**20
# the peak of one drift run in a child process of the service (372 MiB measured for
# 100,000 rows); it runs beside the first worker when the service runs the drift job
DRIFT_RUN_BYTES = 400 * 2**20
# what is left for bodies is never clamped below this: a worker must accept something
SMALLEST_BUDGET = 2**20
CGROUP = Path("/sys/fs/cgroup")
# cgroup v1 reports "no limit" as a huge page-aligned number
_UNLIMITED_V1 = 2**60


@dataclass(frozen=True)
class BodyLimits:
    max_body_bytes: int
    max_body_bytes_in_flight: int


def memory_limit(cgroup: Path = CGROUP) -> int | None:
    """The container's memory limit in bytes, or None when it has none (or none is readable)."""
    for path in (cgroup / "memory.max", cgroup / "memory" / "memory.limit_in_bytes"):
        try:
            raw = path.read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < _UNLIMITED_V1:
            return int(raw)
        return None
    return None


def fit(
    wanted: BodyLimits, workers: int, limit: int | None, reserved: int = 0
) -> tuple[BodyLimits, list[str]]:
    """`wanted`, clamped so bodies in flight fit `limit` less `reserved` bytes for other
    work; and a line for each clamp made."""
    notes: list[str] = []
    in_flight = wanted.max_body_bytes_in_flight
    if in_flight < wanted.max_body_bytes:
        notes.append(
            f"MAX_BODY_BYTES_IN_FLIGHT={in_flight} is less than one body of MAX_BODY_BYTES="
            f"{wanted.max_body_bytes}: using {wanted.max_body_bytes}"
        )
        in_flight = wanted.max_body_bytes
    if limit is not None:
        spare = limit - reserved - workers * RESTING_BYTES
        fits = max(spare // (workers * DECODE_OVERHEAD), 0)
        if in_flight > fits:
            clamped = max(fits, SMALLEST_BUDGET)
            notes.append(
                f"MAX_BODY_BYTES_IN_FLIGHT={in_flight} cannot fit the container's memory limit "
                f"of {limit} bytes with {workers} worker(s) ({DECODE_OVERHEAD}x decode overhead, "
                f"{RESTING_BYTES} bytes per worker at rest, {reserved} for the drift job): "
                f"using {clamped}"
            )
            in_flight = clamped
    body = wanted.max_body_bytes
    if body > in_flight:
        notes.append(
            f"MAX_BODY_BYTES={body} is more than the {in_flight} bytes a worker may hold in "
            f"flight: using {in_flight}"
        )
        body = in_flight
    return BodyLimits(body, in_flight), notes


def fitted(settings: Settings) -> Settings:
    """`settings` with body limits that fit this container's memory, logging each clamp."""
    serving = settings.serving
    wanted = BodyLimits(serving.max_body_bytes, serving.max_body_bytes_in_flight)
    drift = settings.drift
    runs_drift = drift.runner == "service" and drift.interval_minutes > 0
    reserved = DRIFT_RUN_BYTES if runs_drift else 0
    limits, notes = fit(wanted, serving.workers, memory_limit(), reserved)
    for note in notes:
        logger.warning(note)
    return replace(
        settings,
        serving=replace(
            serving,
            max_body_bytes=limits.max_body_bytes,
            max_body_bytes_in_flight=limits.max_body_bytes_in_flight,
        ),
    )
