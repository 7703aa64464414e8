"""JSON numbers read into float64 arrays with no Python object per value.

simdjson validates the whole document, then copies an array's numbers into one buffer.
On 10,000 rows of 30 features that is about a third of the time msgspec's typed decode
and the conversion of its lists take. These passes answer only for the common body: rows
of JSON numbers only (`number_rows`), a flat list of them (`number_list`). Anything else
(a null, text, another key) is left to the passes after them: msgspec's reads a null as
NaN, and the full rule explains what is wrong.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import simdjson

# A parser keeps the buffers of the largest document it read, and a new one costs about as
# much as parsing 10,000 rows: one is kept for reuse, only after a document of at most
# 3 MiB (it then holds 10 MB after 10,000 rows of 30 numbers, 40 MB at most).
KEPT_PARSERS = 1
KEEP_AFTER_BYTES = 3 * 2**20
_parsers: queue.SimpleQueue[simdjson.Parser] = queue.SimpleQueue()
# what simdjson raises for a document or a value it does not take
_REFUSALS = (KeyError, TypeError, ValueError, RuntimeError)


def count_byte(body: bytes, byte: bytes) -> int:
    """How often `byte` is in `body` (numpy's count is several times `bytes.count`'s speed)."""
    return int(np.count_nonzero(np.frombuffer(body, dtype=np.uint8) == ord(byte)))


@contextmanager
def _parser(document_bytes: int) -> Iterator[simdjson.Parser]:
    """A parser of this thread's own; nothing read from its document may outlive the block."""
    try:
        parser = _parsers.get_nowait()
    except queue.Empty:
        parser = simdjson.Parser()
    try:
        yield parser
    finally:
        if document_bytes <= KEEP_AFTER_BYTES and _parsers.qsize() < KEPT_PARSERS:
            _parsers.put(parser)


def number_rows(body: bytes, width: int, max_rows: int, *, brackets: int) -> np.ndarray | None:
    """`{"instances": [[n, ...], ...]}` as a matrix of 1 to `max_rows` rows of `width`
    numbers; None for any other body, whether valid or not. `brackets` is how many `[`
    the body holds (`count_byte`)."""
    with _parser(len(body)) as parser:
        try:
            document = parser.parse(body)
            if not isinstance(document, simdjson.Object) or len(document) != 1:
                return None
            rows = document["instances"]
            if not isinstance(rows, simdjson.Array):
                return None
            count = len(rows)
            # every bracket is the list's or a row's: no row holds an array
            if not 1 <= count <= max_rows or brackets != count + 1:
                return None
            # a row that is not an array has no length, or is text, which the copy refuses
            if set(map(len, rows)) != {width}:
                return None
            numbers = rows.as_buffer(of_type="d")  # refuses anything but numbers
        except _REFUSALS:
            return None
        finally:
            document = rows = None
    return np.frombuffer(numbers, dtype=np.float64).reshape(count, width)


def number_list(text: bytes, count: int) -> np.ndarray | None:
    """`[n, ...]`, exactly `count` JSON numbers; None for anything else. The commas are
    counted before anything is parsed, so the work is bounded by `count`."""
    if count_byte(text, b"[") != 1 or count_byte(text, b",") != count - 1:
        return None
    with _parser(len(text)) as parser:
        try:
            document = parser.parse(text)
            if not isinstance(document, simdjson.Array) or len(document) != count:
                return None
            numbers = document.as_buffer(of_type="d")
        except _REFUSALS:
            return None
        finally:
            document = None
    return np.frombuffer(numbers, dtype=np.float64)
