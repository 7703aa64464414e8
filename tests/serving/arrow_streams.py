"""Arrow IPC streams for tests: written with options, split into messages, forged, joined.

A stream is a sequence of framed messages: 0xFFFFFFFF, the metadata's length (int32), the
flatbuffer metadata padded to 8 bytes, then the body; an end marker closes it. Forging
edits a message's metadata in place, at the field positions `ipc_metadata` finds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pyarrow as pa

from serving.ipc_metadata import DICTIONARY_BATCH, _Table

CONTINUATION = 0xFFFFFFFF
END_OF_STREAM = struct.pack("<Ii", CONTINUATION, 0)
# Message fields, and those of the headers, by vtable index (Message.fbs)
MESSAGE_HEADER_TYPE, MESSAGE_HEADER, MESSAGE_BODY_LENGTH = 1, 2, 3
BATCH_LENGTH, BATCH_NODES, BATCH_BUFFERS, BATCH_COMPRESSION = 0, 1, 2, 3
DICTIONARY_DATA = 1
SCHEMA_ENDIANNESS = 0


@dataclass
class Frame:
    """One message of a stream: its metadata (editable) and body."""

    metadata: bytearray
    body: bytes


def write(
    tables: list[pa.Table] | pa.Table,
    *,
    compression: str | None = None,
    metadata_version: pa.ipc.MetadataVersion = pa.ipc.MetadataVersion.V5,
    deltas: bool = False,
    custom_metadata: dict[str, str] | None = None,
) -> bytes:
    """Tables (one schema) as one stream, each batch with `custom_metadata` if given."""
    tables = tables if isinstance(tables, list) else [tables]
    options = pa.ipc.IpcWriteOptions(
        compression=compression,
        metadata_version=metadata_version,
        emit_dictionary_deltas=deltas,
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, tables[0].schema, options=options) as writer:
        for table in tables:
            for batch in table.to_batches():
                writer.write_batch(batch, custom_metadata=custom_metadata)
    return sink.getvalue().to_pybytes()


def frames(stream: bytes) -> list[Frame]:
    messages = []
    for message in pa.ipc.MessageReader.open_stream(pa.py_buffer(stream)):
        body = message.body.to_pybytes() if message.body is not None else b""
        messages.append(Frame(bytearray(message.metadata.to_pybytes()), body))
    return messages


def joined(messages: list[Frame], *, end: bool = True, body_lengths: bool = True) -> bytes:
    """Frames as a stream; each body's length is written into its metadata, unless not
    `body_lengths` (for metadata that is forged already)."""
    parts = []
    for frame in messages:
        if frame.body and body_lengths:
            set_int64(message_table(frame.metadata), MESSAGE_BODY_LENGTH, len(frame.body))
        metadata = bytes(frame.metadata) + b"\0" * (-len(frame.metadata) % 8)
        parts += [struct.pack("<Ii", CONTINUATION, len(metadata)), metadata, frame.body]
    return b"".join(parts) + (END_OF_STREAM if end else b"")


def message_table(metadata: bytearray) -> _Table:
    return _Table.root(memoryview(metadata))


def batch_table(metadata: bytearray) -> _Table:
    """The RecordBatch table of a record batch or dictionary batch message."""
    message = message_table(metadata)
    header = message.table(MESSAGE_HEADER)
    assert header is not None
    if message.scalar(MESSAGE_HEADER_TYPE, struct.Struct("<B"), 0) == DICTIONARY_BATCH:
        header = header.table(DICTIONARY_DATA)
        assert header is not None
    return header


def set_int64(table: _Table, index: int, value: int) -> None:
    position = table.field_position(index)
    assert position is not None, f"field {index} is absent: it cannot be edited in place"
    struct.pack_into("<q", table.data, position, value)


def set_pair(metadata: bytearray, vector: int, index: int, first: int, second: int) -> None:
    """Sets a node (length, null count) or buffer (offset, length) of a batch's metadata."""
    located = batch_table(metadata).vector(vector)
    assert located is not None
    start, count = located
    assert index < count
    struct.pack_into("<qq", metadata, start + 16 * index, first, second)


def drop_field(table: _Table, index: int) -> None:
    """Marks a field absent (its vtable slot 0), as if it had never been written."""
    vtable = table.position - struct.unpack_from("<i", table.data, table.position)[0]
    struct.pack_into("<H", table.data, vtable + 4 + 2 * index, 0)


def point_field(table: _Table, index: int, value: bytes) -> None:
    """Makes an absent scalar field read `value`: flatbuffers let a field lie anywhere after
    its table, so its vtable slot is pointed at an aligned copy of `value` found there."""
    vtable = table.position - struct.unpack_from("<i", table.data, table.position)[0]
    data = bytes(table.data)
    start = table.position
    while (start := data.find(value, start + 1)) != -1:
        if start % len(value) == 0:
            struct.pack_into("<H", table.data, vtable + 4 + 2 * index, start - table.position)
            return
    raise AssertionError(f"no aligned {value!r} after the table")
