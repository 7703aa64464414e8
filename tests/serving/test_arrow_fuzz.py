"""Random and damaged Arrow IPC bodies: each is read as a frame or refused, nothing else.

Valid streams of several shapes (compressed, dictionaries and their deltas, views,
several batches) are damaged the ways a hostile or broken client could: bits flipped,
cut short, bytes inserted or removed, messages of two streams spliced, lengths in the
metadata or in a compressed buffer's prefix forged. `read_instances` must answer each with
the model's frame or a ValidationError of at most 101 details (the first 100 and a count),
quickly, and without any other exception.
"""

from __future__ import annotations

import json
import struct
from datetime import timedelta

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from serving.arrow_bodies import read_instances
from serving.ipc_metadata import BatchMetadata, DictionaryMetadata, read_message

from .arrow_streams import Frame, frames, joined, write
from .test_instances import SCHEMA

MAX_ROWS = 64
MAX_DECODED_BYTES = 2**20


def table(rows: int, city: pa.Array | None = None) -> pa.Table:
    values = np.linspace(-5.0, 5.0, rows)
    return pa.table(
        {
            "age": pa.array(values).cast(pa.float64()),
            "income level": pa.array(np.arange(rows), pa.int64()),
            "city": city if city is not None else pa.array([f"c{i % 3}" for i in range(rows)]),
        }
    )


def delta_tables() -> list[pa.Table]:
    first = pa.array(["a", "b", "a"]).dictionary_encode()
    later = pa.DictionaryArray.from_arrays(pa.array([2, 0, 3], pa.int32()), ["a", "b", "c", "d"])
    return [table(3, first), table(3, later)]


SEEDS = [
    write(table(3)),
    write(table(3), compression="lz4"),
    write(table(20), compression="zstd"),
    write([table(2), table(5), table(1)]),
    write(table(4, pa.array(["x", None, "y", "x"]).dictionary_encode())),
    write(delta_tables(), deltas=True),
    write(delta_tables(), deltas=True, compression="zstd"),
    write(
        [
            table(0, pa.array([], pa.string_view())),
            table(3, pa.array(["short", "a text longer than twelve", None], pa.string_view())),
        ]
    ),
    write(table(3).replace_schema_metadata({"model": "x"})),
]
INTERESTING = [0, 1, -1, 7, 8, 2**31 - 1, 2**31, 2**32, 2**40, 2**62, 2**63 - 1, -(2**63)]


def bit_flips(raw: bytes, draw: st.DrawFn) -> bytes:
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 16))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


def truncation(raw: bytes, draw: st.DrawFn) -> bytes:
    return raw[: draw(st.integers(0, len(raw) - 1))]


def insertion(raw: bytes, draw: st.DrawFn) -> bytes:
    position = draw(st.integers(0, len(raw)))
    return raw[:position] + draw(st.binary(min_size=1, max_size=64)) + raw[position:]


def deletion(raw: bytes, draw: st.DrawFn) -> bytes:
    start = draw(st.integers(0, len(raw) - 1))
    return raw[:start] + raw[start + draw(st.integers(1, 64)) :]


def splice(raw: bytes, draw: st.DrawFn) -> bytes:
    pool = frames(raw) + frames(draw(st.sampled_from(SEEDS)))
    chosen = draw(st.lists(st.sampled_from(range(len(pool))), min_size=1, max_size=8))
    return joined([pool[index] for index in chosen], end=draw(st.booleans()))


def forged_metadata(raw: bytes, draw: st.DrawFn) -> bytes:
    """An int64 or int32 of a message's metadata (lengths, offsets...) set to a forged value."""
    messages = frames(raw)
    frame = draw(st.sampled_from(messages))
    width = draw(st.sampled_from([4, 8]))
    position = draw(st.integers(0, len(frame.metadata) // width - 1)) * width
    value = draw(st.sampled_from(INTERESTING) | st.integers(-(2**31), 2**31 - 1))
    layout = "<q" if width == 8 else "<i"
    value = value if width == 8 else max(-(2**31), min(value, 2**31 - 1))
    struct.pack_into(layout, frame.metadata, position, value)
    return joined(messages, body_lengths=False)


def forged_prefix(raw: bytes, draw: st.DrawFn) -> bytes:
    """A buffer's first 8 bytes (a compressed buffer's declared length) forged."""
    messages = frames(raw)
    frame = draw(st.sampled_from(messages))
    header = read_message(frame.metadata).header
    if isinstance(header, DictionaryMetadata):
        header = header.data
    if not isinstance(header, BatchMetadata):
        return raw
    offsets = [offset for offset, length in header.buffers.tolist() if length >= 8]
    if not offsets:
        return raw
    data = bytearray(frame.body)
    value = draw(st.sampled_from(INTERESTING) | st.integers(-2, 2**20))
    struct.pack_into("<q", data, draw(st.sampled_from(offsets)), value)
    messages[messages.index(frame)] = Frame(frame.metadata, bytes(data))
    return joined(messages)


# each may follow the ones before it (they read the messages), then any bytes are damaged
FORGERIES = [splice, forged_prefix, forged_metadata]
DAMAGES = [bit_flips, truncation, insertion, deletion]


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=4096))
    raw = draw(st.sampled_from(SEEDS))
    forgeries = [forge for forge in FORGERIES if draw(st.integers(0, 2)) == 0]
    damages = draw(st.lists(st.sampled_from(DAMAGES), min_size=0 if forgeries else 1, max_size=2))
    for forge in forgeries:
        raw = forge(raw, draw)
    for damage in damages:
        raw = damage(raw, draw) if raw else raw
    return raw


def test_the_seeds_are_read():
    for raw in SEEDS:
        assert len(read_instances(raw, SCHEMA, MAX_ROWS)) > 0


@settings(
    max_examples=500,
    deadline=timedelta(seconds=3),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(raw=bodies())
def test_any_body_is_a_frame_or_a_short_validation_error(raw):
    try:
        frame = read_instances(raw, SCHEMA, MAX_ROWS, max_decoded_bytes=MAX_DECODED_BYTES)
    except ValidationError as error:
        details = error.errors(include_context=False, include_input=False)
        assert 1 <= len(details) <= 101
        json.dumps(details)  # as the service answers it
    else:
        assert list(frame.columns) == SCHEMA.names
        assert 1 <= len(frame) <= MAX_ROWS
