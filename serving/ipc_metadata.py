"""The few fields of Arrow IPC message metadata that say what a message costs to decode.

An IPC message is a flatbuffer (`Message.fbs` of the Arrow format) followed by a body.
pyarrow reads the flatbuffer only while decoding, so this module reads the fields that
bound the cost, without decoding anything: a record batch's row count and buffers, a
dictionary batch's id, entry count and whether it is a delta, and whether the buffers are
compressed. `decoded_bytes` then gives what the buffers take once decoded, from the
buffer lengths and, for compressed buffers, the uncompressed length each one declares.

A batch counts as compressed when its metadata names a codec (`BodyCompression`), or when
a version 4 message names one in its custom metadata, as Arrow 0.17 wrote it. pyarrow may
decompress fewer (it reads a version 4 batch as compressed only from the custom
metadata), never more: a size counted from declared lengths can only overstate.

A flatbuffer is read as the format defines it: an offset to the root table; each table
starts with a signed offset back to its vtable, which lists where each field lies in the
table (0: absent, so the field's default). Sub-tables, vectors and strings are reached
through unsigned offsets relative to where the offset is stored. Every read is checked
against the metadata's bounds: malformed metadata raises `MetadataError`.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Final

import numpy as np
from typing_extensions import Buffer

__all__ = [
    "DICTIONARY_BATCH",
    "EXPERIMENTAL_COMPRESSION_KEY",
    "MAX_CUSTOM_METADATA_ENTRIES",
    "RECORD_BATCH",
    "SCHEMA",
    "V4",
    "V5",
    "BatchMetadata",
    "DictionaryMetadata",
    "MessageMetadata",
    "MetadataError",
    "SchemaMetadata",
    "decoded_bytes",
    "read_message",
]

# MessageHeader union types
SCHEMA: Final = 1
DICTIONARY_BATCH: Final = 2
RECORD_BATCH: Final = 3
# MetadataVersion values
V4: Final = 3
V5: Final = 4
# Before V5, compression could be named in the message's custom metadata (Arrow 0.17).
EXPERIMENTAL_COMPRESSION_KEY: Final = b"ARROW:experimental_compression"

# Field indices in each table's vtable (a union takes two: its type, then its value).
_MESSAGE_VERSION, _MESSAGE_HEADER_TYPE, _MESSAGE_HEADER, _MESSAGE_CUSTOM_METADATA = 0, 1, 2, 4
_BATCH_LENGTH, _BATCH_NODES, _BATCH_BUFFERS, _BATCH_COMPRESSION = 0, 1, 2, 3
_DICTIONARY_ID, _DICTIONARY_DATA, _DICTIONARY_IS_DELTA = 0, 1, 2
_KEY = 0
_SCHEMA_ENDIANNESS = 0
_BIG_ENDIAN = 1
# FieldNode {length, null_count} and Buffer {offset, length}: structs of two int64
_PAIR_BYTES: Final = 16
# A compressed buffer starts with its uncompressed length; -1: the rest is not compressed.
_PREFIX_BYTES: Final = 8
_NOT_COMPRESSED: Final = -1
# Writers put one or two entries there; many is only ever a forged message.
MAX_CUSTOM_METADATA_ENTRIES: Final = 1024

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I16 = struct.Struct("<h")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")


class MetadataError(ValueError):
    """IPC message metadata that is not a well-formed flatbuffer of the expected shape."""


@dataclass(frozen=True)
class BatchMetadata:
    """A record batch's metadata (also the data of a dictionary batch)."""

    length: int  # rows (entries, for a dictionary)
    nodes: np.ndarray  # int64, (n, 2): each array's length and null count, depth first
    buffers: np.ndarray  # int64, (n, 2): each buffer's offset and length in the body
    compressed: bool


@dataclass(frozen=True)
class DictionaryMetadata:
    """A dictionary batch's metadata: which dictionary, its entries, replace or append."""

    id: int
    data: BatchMetadata
    is_delta: bool


@dataclass(frozen=True)
class SchemaMetadata:
    """A schema's byte order (its fields are read by pyarrow, which decodes none of the data)."""

    big_endian: bool


@dataclass(frozen=True)
class MessageMetadata:
    """A message's version, header type and, for schemas and batches, the header read."""

    version: int
    header_type: int
    header: SchemaMetadata | BatchMetadata | DictionaryMetadata | None  # None: other types


def read_message(metadata: Buffer) -> MessageMetadata:
    """The fields of a message's flatbuffer metadata that bound its decoding cost."""
    data = memoryview(metadata).cast("B")
    message = _Table.root(data)
    version = message.scalar(_MESSAGE_VERSION, _I16, 0)
    header_type = message.scalar(_MESSAGE_HEADER_TYPE, _U8, 0)
    if header_type not in (SCHEMA, RECORD_BATCH, DICTIONARY_BATCH):
        return MessageMetadata(version, header_type, None)
    table = message.table(_MESSAGE_HEADER)
    if table is None:
        raise MetadataError("the message has no header")
    header: SchemaMetadata | BatchMetadata | DictionaryMetadata
    if header_type == SCHEMA:
        header = SchemaMetadata(table.scalar(_SCHEMA_ENDIANNESS, _I16, 0) == _BIG_ENDIAN)
    else:
        experimental = version == V4 and _names_experimental_compression(message)
        if header_type == RECORD_BATCH:
            header = _batch(table, experimental)
        else:
            header = _dictionary(table, experimental)
    return MessageMetadata(version, header_type, header)


def decoded_bytes(batch: BatchMetadata, body: Buffer) -> int:
    """What the batch's buffers take once decoded: each buffer's length, or for compressed
    buffers the uncompressed length it declares (read from the body, not decompressed).

    Raises MetadataError for a buffer outside the body or a compressed buffer that cannot
    be one (shorter than its length prefix, or declaring a negative length).
    """
    size = memoryview(body).nbytes
    if not len(batch.buffers):
        return 0
    offsets, lengths = batch.buffers[:, 0], batch.buffers[:, 1]
    # each within [0, size] first, so that their sum cannot overflow
    if batch.buffers.min() < 0 or batch.buffers.max() > size or (offsets + lengths).max() > size:
        raise MetadataError(f"a buffer lies outside the message body ({size} bytes)")
    if not batch.compressed:
        return _total(lengths, size)
    present = lengths > 0
    offsets, lengths = offsets[present], lengths[present]
    if not len(lengths):
        return 0
    if lengths.min() < _PREFIX_BYTES:
        raise MetadataError("a compressed buffer is shorter than its length prefix")
    body_bytes = np.frombuffer(body, dtype=np.uint8)
    positions = offsets[:, np.newaxis] + np.arange(_PREFIX_BYTES)
    declared = body_bytes[positions].view("<i8").ravel().astype(np.int64, copy=False)
    if declared.min() < _NOT_COMPRESSED:
        raise MetadataError("a compressed buffer declares a negative length")
    sizes = np.where(declared == _NOT_COMPRESSED, lengths - _PREFIX_BYTES, declared)
    return _total(sizes, int(sizes.max()))


def _total(sizes: np.ndarray, largest: int) -> int:
    """The sum of sizes from 0 to `largest`: exact while an int64 sum cannot overflow,
    else approximate (beyond 2**63 bytes, far over any limit)."""
    if len(sizes) * largest < 2**63:
        return int(sizes.sum())
    return int(np.sum(sizes, dtype=np.float64))


def _batch(table: _Table, experimental_compression: bool) -> BatchMetadata:
    length = table.scalar(_BATCH_LENGTH, _I64, 0)
    if length < 0:
        raise MetadataError(f"a batch of {length} rows")
    compressed = table.table(_BATCH_COMPRESSION) is not None or experimental_compression
    return BatchMetadata(
        length=length,
        nodes=table.pairs(_BATCH_NODES),
        buffers=table.pairs(_BATCH_BUFFERS),
        compressed=compressed,
    )


def _dictionary(table: _Table, experimental_compression: bool) -> DictionaryMetadata:
    data = table.table(_DICTIONARY_DATA)
    if data is None:
        raise MetadataError("a dictionary batch without data")
    return DictionaryMetadata(
        id=table.scalar(_DICTIONARY_ID, _I64, 0),
        data=_batch(data, experimental_compression),
        is_delta=bool(table.scalar(_DICTIONARY_IS_DELTA, _U8, 0)),
    )


def _names_experimental_compression(message: _Table) -> bool:
    """Whether the message's custom metadata has the key naming a compression codec."""
    entries = message.vector(_MESSAGE_CUSTOM_METADATA)
    if entries is None:
        return False
    start, count = entries
    if count > MAX_CUSTOM_METADATA_ENTRIES:
        raise MetadataError(f"{count} custom metadata entries in one message")
    for index in range(count):
        entry = message.table_at(start + 4 * index)
        key = entry.string(_KEY)
        if key == EXPERIMENTAL_COMPRESSION_KEY:
            return True
    return False


class _Table:
    """A flatbuffer table: its fields located through its vtable, every read bounds-checked."""

    def __init__(self, data: memoryview, position: int) -> None:
        self.data = data
        self.position = position
        vtable = position - _read(data, _I32, position)
        vtable_size = _read(data, _U16, vtable)
        if vtable_size < 4 or vtable_size % 2:
            raise MetadataError(f"a vtable of {vtable_size} bytes")
        layout = _vtable_layout((vtable_size - 4) // 2)
        self.field_offsets: tuple[int, ...] = _unpack(data, layout, vtable + 4)

    @classmethod
    def root(cls, data: memoryview) -> _Table:
        return cls(data, _read(data, _U32, 0))

    def field_position(self, index: int) -> int | None:
        """Where a field's value lies in the metadata, None when absent."""
        offset = self.field_offsets[index] if index < len(self.field_offsets) else 0
        return self.position + offset if offset else None

    def scalar(self, index: int, kind: struct.Struct, default: int) -> int:
        position = self.field_position(index)
        return default if position is None else _read(self.data, kind, position)

    def table(self, index: int) -> _Table | None:
        position = self.field_position(index)
        return None if position is None else self.table_at(position)

    def table_at(self, position: int) -> _Table:
        """The table an offset stored at `position` points to."""
        return _Table(self.data, position + _read(self.data, _U32, position))

    def vector(self, index: int) -> tuple[int, int] | None:
        """Where a vector's elements start, and how many there are; None when absent."""
        position = self.field_position(index)
        if position is None:
            return None
        start = position + _read(self.data, _U32, position)
        return start + 4, _read(self.data, _U32, start)

    def string(self, index: int) -> bytes | None:
        vector = self.vector(index)
        if vector is None:
            return None
        start, count = vector
        if start + count > len(self.data):
            raise MetadataError(f"a string of {count} bytes at {start} runs past the metadata")
        return bytes(self.data[start : start + count])

    def pairs(self, index: int) -> np.ndarray:
        """A vector of structs of two int64 (FieldNode, Buffer) as an (n, 2) array."""
        vector = self.vector(index)
        if vector is None:
            return np.empty((0, 2), dtype=np.int64)
        start, count = vector
        if start + count * _PAIR_BYTES > len(self.data):
            raise MetadataError(f"a vector of {count} pairs at {start} runs past the metadata")
        return np.frombuffer(self.data, dtype="<i8", count=2 * count, offset=start).reshape(
            count, 2
        )


def _read(data: memoryview, kind: struct.Struct, position: int) -> int:
    if position < 0:  # unpack_from counts a negative position from the end
        raise MetadataError(f"a metadata read at {position}")
    try:
        return kind.unpack_from(data, position)[0]
    except struct.error:
        raise MetadataError(f"a metadata read at {position} runs past its end") from None


@functools.cache
def _vtable_layout(field_count: int) -> struct.Struct:
    return struct.Struct(f"<{field_count}H")


def _unpack(data: memoryview, layout: struct.Struct, position: int) -> tuple[int, ...]:
    try:
        return layout.unpack_from(data, position)
    except struct.error:
        raise MetadataError(f"a vtable at {position} runs past the metadata") from None
