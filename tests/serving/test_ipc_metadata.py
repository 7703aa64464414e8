"""The IPC metadata reader against pyarrow: what it reads is what pyarrow decodes."""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving import ipc_metadata
from serving.ipc_metadata import (
    BatchMetadata,
    DictionaryMetadata,
    MetadataError,
    SchemaMetadata,
    decoded_bytes,
    read_message,
)

from .arrow_streams import (
    BATCH_BUFFERS,
    BATCH_COMPRESSION,
    BATCH_LENGTH,
    BATCH_NODES,
    SCHEMA_ENDIANNESS,
    batch_table,
    drop_field,
    frames,
    joined,
    message_table,
    point_field,
    set_int64,
    set_pair,
    write,
)

RNG = np.random.default_rng(7)
TABLES = {
    "numbers": pa.table({"a": [1.0, 2.0, 3.0], "b": pa.array([1, 2, 3], pa.int32())}),
    "nulls": pa.table({"a": [1.0, None, 3.0], "s": ["x", None, "zz"]}),
    "text": pa.table(
        {
            "s": ["a", "bb", "ccc"],
            "l": pa.array(["x", "y", "z"], pa.large_string()),
            "b": pa.array([b"\x00", b"", b"\xff"]),
        }
    ),
    "dictionary": pa.table({"d": pa.array(["p", None, "p"]).dictionary_encode()}),
    "views": pa.table(
        {"v": pa.array(["short", "a text longer than twelve bytes", None], pa.string_view())}
    ),
    "booleans and decimals": pa.table(
        {"t": [True, None, False], "m": pa.array([1, 2, None], pa.decimal128(10, 2))}
    ),
    "no rows": pa.table({"a": pa.array([], pa.float64()), "s": pa.array([], pa.string())}),
    "many rows": pa.table({"a": RNG.random(10_000), "z": np.zeros(10_000), "s": ["x"] * 10_000}),
    "several batches": pa.concat_tables(
        [pa.table({"a": [1.0, None]}), pa.table({"a": [3.0]}), pa.table({"a": [4.0] * 5})]
    ),
}
CODECS = [None, "lz4", "zstd"]
VERSIONS = [pa.ipc.MetadataVersion.V4, pa.ipc.MetadataVersion.V5]


def batch_messages(stream: bytes) -> list[pa.ipc.Message]:
    reader = pa.ipc.MessageReader.open_stream(pa.py_buffer(stream))
    return [message for message in reader if message.type == "record batch"]


def all_buffers(batch: pa.RecordBatch) -> list[pa.Buffer | None]:
    """The batch's buffers in IPC order (depth first), as pyarrow decoded them."""
    return [buffer for column in batch.columns for buffer in column.buffers()]


def decompressed(content: bytes, codec: str | None) -> bytes:
    """A buffer's bytes in the body as they are once decoded."""
    if codec is None or not content:
        return content
    declared = struct.unpack_from("<q", content)[0]
    if declared == -1:
        return content[8:]
    return pa.decompress(content[8:], declared, codec=codec, asbytes=True)


@pytest.mark.parametrize("version", VERSIONS, ids=str)
@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("name", TABLES)
def test_batches_read_as_pyarrow_decodes_them(name, codec, version):
    stream = write(TABLES[name], compression=codec, metadata_version=version)
    decoded = list(pa.ipc.open_stream(stream))
    messages = batch_messages(stream)
    # pyarrow reads a version 4 body as compressed only if its custom metadata says so
    # (it reads these as garbage); the reader counts it as compressed anyway, which can
    # only overstate what it decodes to
    decompresses = codec is not None and version == pa.ipc.MetadataVersion.V5
    assert len(messages) == len(decoded)
    for message, batch in zip(messages, decoded, strict=True):
        header = read_message(message.metadata).header
        assert isinstance(header, BatchMetadata)
        assert header.length == batch.num_rows
        assert header.compressed == (codec is not None)
        assert header.nodes.tolist() == [[len(c), c.null_count] for c in batch.columns]
        body = message.body.to_pybytes()
        expected = all_buffers(batch)
        assert len(header.buffers) == len(expected)
        for (offset, length), buffer in zip(header.buffers.tolist(), expected, strict=True):
            content = body[offset : offset + length]
            if decompresses:
                content = decompressed(content, codec)
            assert content == (b"" if buffer is None else buffer.to_pybytes())
        if codec is None or decompresses:
            sizes = sum(0 if buffer is None else buffer.size for buffer in expected)
            assert decoded_bytes(header, message.body) == sizes


@pytest.mark.parametrize("version", VERSIONS, ids=str)
@pytest.mark.parametrize("codec", CODECS)
def test_dictionary_batches_and_deltas(codec, version):
    first = pa.table({"d": pa.array(["p", "q", "p"]).dictionary_encode()})
    indices = pa.array([0, 2, 3], pa.int32())
    second = pa.table({"d": pa.DictionaryArray.from_arrays(indices, ["p", "q", "r", "s"])})
    stream = write([first, second], compression=codec, metadata_version=version, deltas=True)
    headers = [read_message(m.metadata).header for m in pa.ipc.MessageReader.open_stream(stream)]
    dictionaries = [h for h in headers if isinstance(h, DictionaryMetadata)]
    assert [(d.id, d.is_delta, d.data.length) for d in dictionaries] == [
        (0, False, 2),
        (0, True, 2),
    ]
    assert all(d.data.compressed == (codec is not None) for d in dictionaries)
    assert isinstance(headers[0], SchemaMetadata) and not headers[0].big_endian
    if codec is None or version == pa.ipc.MetadataVersion.V5:  # see above for version 4
        read = pa.ipc.open_stream(stream).read_all()
        assert read.column("d").to_pylist() == ["p", "q", "p", "p", "r", "s"]


def test_a_length_edited_in_place_is_what_pyarrow_reads():
    messages = frames(write(pa.table({"a": [1.0, 2.0, 3.0]})))
    set_int64(batch_table(messages[1].metadata), BATCH_LENGTH, 2)
    set_pair(messages[1].metadata, BATCH_NODES, 0, 2, 0)  # the column's length too
    stream = joined(messages)
    assert pa.ipc.open_stream(stream).read_all().column("a").to_pylist() == [1.0, 2.0]
    assert read_message(messages[1].metadata).header.length == 2


def test_compression_named_in_custom_metadata_as_arrow_0_17_wrote_it():
    table = pa.table({"a": np.zeros(1_000)})
    stream = write(
        table,
        compression="zstd",
        metadata_version=pa.ipc.MetadataVersion.V4,
        custom_metadata={ipc_metadata.EXPERIMENTAL_COMPRESSION_KEY.decode(): "zstd"},
    )
    messages = frames(stream)
    drop_field(batch_table(messages[1].metadata), BATCH_COMPRESSION)
    forged = joined(messages)
    # pyarrow still decompresses: the custom metadata alone says the body is compressed
    assert pa.ipc.open_stream(forged).read_all().equals(table)
    header = read_message(messages[1].metadata).header
    assert header.compressed
    assert decoded_bytes(header, messages[1].body) == 8_000


def test_custom_metadata_names_no_compression_in_version_5():
    stream = write(
        pa.table({"a": [1.0]}),
        custom_metadata={ipc_metadata.EXPERIMENTAL_COMPRESSION_KEY.decode(): "zstd"},
    )
    assert not read_message(frames(stream)[1].metadata).header.compressed


def test_a_big_endian_schema_is_told():
    messages = frames(write(pa.table({"a": pa.array([1], pa.int64())})))
    schema = message_table(messages[0].metadata).table(2)
    point_field(schema, SCHEMA_ENDIANNESS, struct.pack("<h", 1))
    assert read_message(messages[0].metadata).header == SchemaMetadata(big_endian=True)
    swapped = pa.ipc.open_stream(joined(messages)).read_all()
    assert swapped.column("a").to_pylist() == [2**56]  # pyarrow swapped the bytes


def test_buffers_outside_the_body_are_refused():
    messages = frames(write(pa.table({"a": [1.0, 2.0]})))
    body_size = len(messages[1].body)
    for offset, length in [(0, body_size + 1), (body_size, 1), (-8, 8), (8, -1), (2**62, 2**62)]:
        set_pair(messages[1].metadata, BATCH_BUFFERS, 1, offset, length)
        header = read_message(messages[1].metadata).header
        with pytest.raises(MetadataError, match="outside the message body"):
            decoded_bytes(header, messages[1].body)


def compressed_batch(prefix: int, length: int = 16) -> tuple[BatchMetadata, bytes]:
    body = struct.pack("<q", prefix) + b"\0" * (length - 8)
    buffers = np.array([[0, 0], [0, length]], dtype=np.int64)
    return BatchMetadata(1, np.zeros((1, 2), np.int64), buffers, compressed=True), body


def test_compressed_buffers_count_the_length_they_declare():
    assert decoded_bytes(*compressed_batch(2**40)) == 2**40
    assert decoded_bytes(*compressed_batch(-1, length=24)) == 16  # stored as is
    assert decoded_bytes(*compressed_batch(0)) == 0


def test_compressed_buffers_that_cannot_be_are_refused():
    with pytest.raises(MetadataError, match="negative length"):
        decoded_bytes(*compressed_batch(-2))
    short = np.array([[0, 7]], dtype=np.int64)
    batch = BatchMetadata(1, np.zeros((1, 2), np.int64), short, compressed=True)
    with pytest.raises(MetadataError, match="shorter than its length prefix"):
        decoded_bytes(batch, b"\0" * 8)


def test_declared_lengths_add_up_without_wrapping_around():
    buffers = np.array([[0, 16]] * 4, dtype=np.int64)
    body = struct.pack("<q", 2**62) + b"\0" * 8
    batch = BatchMetadata(1, np.zeros((1, 2), np.int64), buffers, compressed=True)
    assert decoded_bytes(batch, body) >= 2**64 - 2**50


VALID_METADATA = [
    bytes(frame.metadata)
    for name in ("numbers", "dictionary", "views")
    for codec in CODECS
    for frame in frames(write(TABLES[name], compression=codec))
]


@st.composite
def damaged_metadata(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID_METADATA)))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@settings(max_examples=400, deadline=None)
@given(metadata=st.binary(max_size=300) | damaged_metadata(), body=st.binary(max_size=64))
def test_any_metadata_is_read_or_refused_as_malformed(metadata, body):
    try:
        header = read_message(metadata).header
        if isinstance(header, DictionaryMetadata):
            header = header.data
        if isinstance(header, BatchMetadata):
            assert decoded_bytes(header, body) >= 0
    except MetadataError:
        pass
