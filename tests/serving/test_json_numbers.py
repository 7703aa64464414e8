"""simdjson's passes over plain numbers: the values msgspec's passes read, or no answer."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving import json_numbers
from serving.inputs import _decoded_rows, _PlainRows
from serving.json_numbers import count_byte, number_list, number_rows

DECODER = msgspec.json.Decoder(_PlainRows)


def read(body: bytes, width: int = 3, max_rows: int = 3) -> np.ndarray | None:
    return number_rows(body, width, max_rows, brackets=count_byte(body, b"["))


NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e-300, max_value=1e-300),
)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.lists(NUMBERS, min_size=3, max_size=3), min_size=1, max_size=8))
def test_numbers_read_are_msgspecs_to_the_bit(rows: list[list[float]]) -> None:
    body = json.dumps({"instances": rows}).encode()
    expected = _decoded_rows(DECODER, body, 3, 8)
    matrix = read(body, 3, 8)
    if matrix is None:  # only integers beyond 64 bits, which msgspec reads as floats
        assert any(abs(v) >= 2**63 for row in rows for v in row if isinstance(v, int))
        return
    assert expected is not None
    assert matrix.tobytes() == expected.tobytes()


def test_written_forms_of_numbers_are_read_exactly() -> None:
    body = b'{"instances": [[-0.0, 1E2, 2e-400], [0.1, 12345678901234567, -7], [1.5e+3, 0, 9]]}'
    matrix = read(body)
    assert matrix is not None and matrix.flags.writeable
    assert matrix.tobytes() == np.array(json.loads(body)["instances"], dtype=float).tobytes()


@pytest.mark.parametrize(
    "text",
    [
        b'{"instances": [[1, null, 3]]}',
        b'{"instances": [[1, true, 3]]}',
        b'{"instances": [[1, "2", 3]]}',
        b'{"instances": [[1, {}, 3]]}',
        b'{"instances": [[1, 2], [3, 4, 5, 6]]}',  # as many values as two rows of three
        b'{"instances": [[1, [2, 3]], [4, 5, 6]]}',
        b'{"instances": [[1, []], [[2, 3], 4]]}',  # each row two items, four numbers in all
        b'{"instances": [1, 2, 3]}',
        b'{"instances": [[1, 2, 3]], "other": 1}',
        b'{"instances": [[1, 2, 3]], "instances": [[4, 5, 6]]}',
        b'{"rows": [[1, 2, 3]]}',
        b"[[1, 2, 3]]",
        b'{"instances": []}',
        b'{"instances": [[1, 2, 3]]} trailing',
        b'{"instances": [[1, 2, 1e400]]}',
        b'{"instances": [[1, 2, 01]]}',
        b'{"instances": [[1, 2, NaN]]}',
        b'{"instances": [[1, 2, 3]]}\xff',
        b"",
    ],
)
def test_anything_else_gets_no_answer(text: bytes) -> None:
    assert read(text) is None


def test_more_rows_than_allowed_get_no_answer() -> None:
    assert read(json.dumps({"instances": [[1, 2, 3]] * 4}).encode()) is None


def test_parsers_are_reused_after_refusals_and_never_shared() -> None:
    bodies = [b'{"instances": [[1, true, 3]]}', b'{"instances": [[1, [2], 3]]}'] * 20
    assert all(read(body) is None for body in bodies)
    matrices = [np.full((50, 3), float(i)) for i in range(64)]

    def read_matrix(matrix: np.ndarray) -> np.ndarray | None:
        return read(json.dumps({"instances": matrix.tolist()}).encode(), 3, 50)

    with ThreadPoolExecutor(8) as pool:
        read_back = list(pool.map(read_matrix, matrices))
    assert all(
        got is not None and np.array_equal(got, sent)
        for got, sent in zip(read_back, matrices, strict=True)
    )


@pytest.mark.parametrize(
    ("text", "count"),
    [
        (b"[1, 2.5, -3e2]", 3),
        (b" [ 1 ,\n 2.5 , -3e2 ] ", 3),
        (b"[0]", 1),
    ],
)
def test_a_flat_list_of_numbers_is_read(text: bytes, count: int) -> None:
    values = number_list(text, count)
    assert values is not None
    assert values.tolist() == json.loads(text)


@pytest.mark.parametrize(
    ("text", "count"),
    [
        (b"[1, 2, 3]", 2),
        (b"[1, 2]", 3),
        (b"[]", 0),
        (b"[1, [2], 3]", 3),
        (b"[[1, 2, 3]]", 3),
        (b"[1, null, 3]", 3),
        (b'[1, "2", 3]', 3),
        (b"[1, true, 3]", 3),
        (b"[1, 2, 1e400]", 3),
        (b'{"a": [1, 2, 3]}', 3),
        (b"[1, 2, 3", 3),
    ],
)
def test_anything_but_that_many_numbers_gets_no_answer(text: bytes, count: int) -> None:
    assert number_list(text, count) is None


def test_parsers_are_kept_only_after_small_documents() -> None:
    while not json_numbers._parsers.empty():
        json_numbers._parsers.get_nowait()
    large = json.dumps([0.5] * (json_numbers.KEEP_AFTER_BYTES // 4)).encode()
    assert number_list(large, json_numbers.KEEP_AFTER_BYTES // 4) is not None
    assert json_numbers._parsers.empty()  # its buffers go with it
    assert number_list(b"[1, 2]", 2) is not None
    assert json_numbers._parsers.qsize() == 1
