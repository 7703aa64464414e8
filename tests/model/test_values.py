"""One rule for a feature value: the scalar, pydantic and Arrow forms give the same verdict.

A verdict is the accepted value (a float or text, None when missing), or the kind of the
refusal (the pydantic error type). Every table case goes through every form that can
carry the value; hypothesis then checks that the forms agree on arbitrary text.
"""

from __future__ import annotations

import decimal
import json
import math
import subprocess
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ConfigDict, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from model import values
from model.values import (
    MAX_ABS_NUMBER,
    MISSING_TEXTS,
    NUMBER_TEXT_PATTERN,
    CategoryValue,
    NumberValue,
    Problem,
    ValueProblem,
    category,
    category_column,
    category_type_accepted,
    number,
    number_column,
    number_type_accepted,
)


class Refused(NamedTuple):
    kind: str


PARSING = Refused("float_parsing")
WRONG_TYPE = Refused("float_type")
NOT_FINITE = Refused("finite_number")
TOO_HIGH = Refused("less_than_equal")
TOO_LOW = Refused("greater_than_equal")
NOT_TEXT = Refused("string_type")
NOT_UTF8 = Refused("string_unicode")

Verdict = tuple[str, str]  # ("accepted", repr(value)) or ("refused", kind)


def verdict(outcome: object) -> Verdict:
    """Comparable: repr tells -0.0 from 0.0 and 1.5 from "1.5"."""
    if isinstance(outcome, Refused):
        return ("refused", outcome.kind)
    return ("accepted", repr(outcome))


def scalar_verdict(check: Callable[[Any], object], value: object) -> Verdict:
    try:
        return verdict(check(value))
    except ValueProblem as problem:
        assert isinstance(problem, ValueError) and str(problem) == problem.message
        return verdict(Refused(problem.kind))


def pydantic_verdict(validate: Callable[[Any], object], value: object) -> Verdict:
    try:
        return verdict(validate(value))
    except ValidationError as error:
        (detail,) = error.errors()  # one error, located at the value itself
        assert detail["loc"] == ()
        return verdict(Refused(detail["type"]))


NUMBERS = TypeAdapter(NumberValue)
CATEGORIES = TypeAdapter(CategoryValue)


def json_text(value: object) -> str | None:
    """The value as a JSON document, None if JSON cannot say it."""
    try:
        return json.dumps(value)  # NaN and Infinity as pydantic's JSON parser reads them
    except TypeError:
        return None


def arrow_types(value: object) -> list[pa.DataType]:
    """Column types that hold the value as it is: text as text, numbers as numbers."""
    if value is None:
        return [pa.null(), pa.float64(), pa.int64(), pa.string(), pa.bool_()]
    if isinstance(value, bool):
        return [pa.bool_()]
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return [pa.int64()] + ([pa.uint64()] if value >= 0 else [])
        return [pa.uint64()] if 0 <= value < 2**64 else []
    if isinstance(value, float):
        return [pa.float64()]
    if isinstance(value, str):
        return [pa.string(), pa.large_string(), pa.dictionary(pa.int32(), pa.string())]
    if isinstance(value, bytes):
        return [pa.binary(), pa.large_binary()]
    return [pa.array([value]).type]  # lists, structs


def arrow_column(value: object, arrow_type: pa.DataType) -> pa.Array:
    """The value at row 1, between two nulls."""
    if pa.types.is_dictionary(arrow_type):
        return pa.array([None, value, None], arrow_type.value_type).dictionary_encode()
    return pa.array([None, value, None], arrow_type)


def arrow_verdict(
    check: Callable[[pa.Array], Any],
    message: Callable[[object], str],
    value: object,
    arrow_type: pa.DataType,
) -> Verdict:
    checked = check(arrow_column(value, arrow_type))
    assert not checked.refused[[0, 2]].any()  # the nulls around it are missing values
    assert checked.values[0] is None or math.isnan(checked.values[0])
    if not checked.refused[1]:
        assert checked.refused_count == 0 and checked.problems == []
        accepted = checked.values.tolist()[1]
        if isinstance(accepted, float) and math.isnan(accepted):
            accepted = None  # NaN in a numeric column: missing
        return verdict(accepted)
    assert checked.refused_count == 1
    (problem,) = checked.problems
    assert problem.row == 1
    assert problem.message == message(value)  # the scalar form's message, word for word
    return verdict(Refused(problem.kind))


def column_verdicts(checked: Any) -> list[Verdict]:
    """A checked column's verdict on each row (every refused row among its problems)."""
    kinds = {problem.row: problem.kind for problem in checked.problems}
    found = []
    for row, value in enumerate(checked.values.tolist()):
        if checked.refused[row]:
            found.append(verdict(Refused(kinds[row])))
        elif isinstance(value, float) and math.isnan(value):
            found.append(verdict(None))  # NaN in a numeric column: missing
        else:
            found.append(verdict(value))
    return found


def scalar_message(check: Callable[[Any], object], value: object) -> str:
    try:
        check(value)
    except ValueProblem as problem:
        return problem.message
    raise AssertionError(f"{value!r} was accepted")


def all_verdicts(
    value: object,
    scalar: Callable[[Any], object],
    adapter: TypeAdapter,
    column: Callable[[pa.Array], Any],
) -> dict[str, Verdict]:
    """The verdict of every form that can carry the value, by form."""
    verdicts = {
        "scalar": scalar_verdict(scalar, value),
        "pydantic python": pydantic_verdict(adapter.validate_python, value),
    }
    document = json_text(value)
    if document is not None:
        verdicts["pydantic json"] = pydantic_verdict(adapter.validate_json, document)
    for arrow_type in arrow_types(value):
        verdicts[f"arrow {arrow_type}"] = arrow_verdict(
            column, lambda v: scalar_message(scalar, v), value, arrow_type
        )
    return verdicts


NUMBER_CASES: list[tuple[object, object]] = [
    ("1.5", 1.5),
    (" 2 ", 2.0),
    ("\t3 \t", 3.0),
    ("-7", -7.0),
    ("1e5", 1e5),
    ("1E+05", 1e5),
    ("+.5", 0.5),
    ("1.", 1.0),
    ("-.5e-3", -0.0005),
    ("007", 7.0),
    ("1e15", 1e15),
    ("-1e15", -1e15),
    (True, WRONG_TYPE),
    (False, WRONG_TYPE),
    ("1_000", PARSING),
    ("\u00a01.5", PARSING),  # a no-break space
    ("1.5\n", PARSING),
    (" nan", PARSING),  # missing texts match exactly
    ("inf", PARSING),
    ("-Infinity", PARSING),
    ("0x10", PARSING),
    ("1,5", PARSING),
    ("\u0661\u0662", PARSING),  # Arabic-Indic digits
    ("\uff11", PARSING),  # a full-width 1
    (".", PARSING),
    ("1e", PARSING),
    ("e5", PARSING),
    ("--1", PARSING),
    ("true", PARSING),
    ("nan", None),
    ("NaN", None),
    ("", None),
    ("NULL", None),
    ("#N/A N/A", None),
    ("-1.#IND", None),
    ("<NA>", None),
    (None, None),
    (float("nan"), NOT_FINITE),
    (float("inf"), NOT_FINITE),
    (float("-inf"), NOT_FINITE),
    ("1e400", NOT_FINITE),  # text whose number overflows float64
    (1e16, TOO_HIGH),
    (-1e16, TOO_LOW),
    ("1e16", TOO_HIGH),
    ("-1e16", TOO_LOW),
    ("1000000000000000.5", TOO_HIGH),
    (1e15, 1e15),
    (-1e15, -1e15),
    (10**15, 1e15),
    (10**15 + 1, TOO_HIGH),
    (2**64 - 1, TOO_HIGH),
    (-(2**63), TOO_LOW),
    (10**400, WRONG_TYPE),  # an int no float can hold
    (0, 0.0),
    (-0.0, -0.0),
    (0.1, 0.1),
    (-42, -42.0),
    ([1], WRONG_TYPE),
    ({"a": 1}, WRONG_TYPE),
    (b"1.5", 1.5),  # bytes are the text they hold
    (b"nan", None),
    (b"1_000", PARSING),
    (b"\xff1", PARSING),  # not UTF-8
]


@pytest.mark.parametrize(("value", "expected"), NUMBER_CASES, ids=repr)
def test_numeric_verdict_is_the_same_in_every_form(value, expected):
    verdicts = all_verdicts(value, number, NUMBERS, number_column)
    assert verdicts == dict.fromkeys(verdicts, verdict(expected))


CATEGORY_CASES: list[tuple[object, object]] = [
    ("red", "red"),
    (" red ", " red "),  # text is kept as it is
    ("nan ", "nan "),
    ("\u00e9t\u00e9", "\u00e9t\u00e9"),
    ("", None),
    ("nan", None),
    ("NULL", None),
    ("N/A", None),
    ("None", None),
    (None, None),
    (3, "3"),
    (0, "0"),
    (-12, "-12"),
    (2**64 - 1, "18446744073709551615"),
    (-(2**63), "-9223372036854775808"),
    (1.5, "1.5"),
    (2.0, "2.0"),
    (-0.0, "-0.0"),
    (1e16, "1e+16"),
    (0.1, "0.1"),
    (True, "True"),
    (False, "False"),
    (float("nan"), NOT_FINITE),
    (float("inf"), NOT_FINITE),
    ([1], NOT_TEXT),
    ({"a": 1}, NOT_TEXT),
    (b"blue", "blue"),
    (b"NA", None),
    (b"\xff", NOT_UTF8),
]


@pytest.mark.parametrize(("value", "expected"), CATEGORY_CASES, ids=repr)
def test_categorical_verdict_is_the_same_in_every_form(value, expected):
    verdicts = all_verdicts(value, category, CATEGORIES, category_column)
    assert verdicts == dict.fromkeys(verdicts, verdict(expected))


def test_every_missing_text_is_missing_in_every_form():
    column = pa.array(list(MISSING_TEXTS))
    assert np.isnan(number_column(column).values).all()
    assert all(value is None for value in category_column(column).values)
    for text in MISSING_TEXTS:
        assert number(text) is None and category(text) is None
        assert NUMBERS.validate_json(json.dumps(text)) is None
        assert CATEGORIES.validate_json(json.dumps(text)) is None


def test_value_problem_carries_kind_message_and_value():
    with pytest.raises(ValueProblem) as caught:
        number("1_000")
    assert (caught.value.kind, caught.value.message, caught.value.value) == (
        "float_parsing",
        "not a number: '1_000'",
        "1_000",
    )
    assert str(caught.value) == "not a number: '1_000'"
    messages = {}
    for value in (True, 1e16, -1e16, float("nan"), [1]):
        with pytest.raises(ValueProblem) as caught:
            number(value)
        messages[repr(value)] = caught.value.message
    assert messages == {
        "True": "a boolean is not a number",
        "1e+16": "beyond ±1e15",
        "-1e+16": "beyond ±1e15",
        "nan": "not finite",
        "[1]": "a list is not a number",
    }


def test_long_text_is_shortened_in_messages():
    with pytest.raises(ValueProblem) as caught:
        number("x" * 10_000)
    assert len(caught.value.message) < 100 and caught.value.value == "x" * 10_000


def test_numpy_scalars_are_numbers_but_numpy_booleans_are_not():
    assert number(np.float32(1.5)) == 1.5 and number(np.int8(-3)) == -3.0
    with pytest.raises(ValueProblem, match="beyond"):
        number(np.uint64(2**64 - 1))
    for value in (np.bool_(True), np.bool_(False)):
        with pytest.raises(ValueProblem) as caught:
            number(value)
        assert caught.value.kind == "float_type"
        assert pydantic_verdict(NUMBERS.validate_python, value) == verdict(WRONG_TYPE)
        assert category(value) == str(bool(value))
    assert pydantic_verdict(NUMBERS.validate_python, np.float32(1.5)) == verdict(1.5)
    assert pydantic_verdict(NUMBERS.validate_python, np.int64(7)) == verdict(7.0)
    assert category(np.int64(7)) == "7" and category(np.float64(2.0)) == "2.0"
    assert number(decimal.Decimal("2.5")) == 2.5
    assert pydantic_verdict(NUMBERS.validate_python, decimal.Decimal("2.5")) == verdict(2.5)


# ---------------------------------------------------------------- pydantic: locations


class Instance(TypedDict):
    size: NumberValue
    colour: CategoryValue


Instance.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
ROW = tuple[NumberValue, CategoryValue, NumberValue]


def error_list(adapter: TypeAdapter, document: object) -> list[tuple[str, tuple]]:
    with pytest.raises(ValidationError) as caught:
        adapter.validate_json(json.dumps(document))
    return [(detail["type"], detail["loc"]) for detail in caught.value.errors()]


def test_errors_inside_a_tuple_are_located_by_position_only():
    rows = TypeAdapter(list[ROW])
    assert rows.validate_json('[[1, "a", " 2.5 "], ["nan", 3, null]]') == [
        (1.0, "a", 2.5),
        (None, "3", None),
    ]
    assert error_list(rows, [[1, "a", 2], ["1_000", [1], True], [1e16, None, "-1e16"]]) == [
        ("float_parsing", (1, 0)),
        ("string_type", (1, 1)),
        ("float_type", (1, 2)),
        ("less_than_equal", (2, 0)),
        ("greater_than_equal", (2, 2)),
    ]


def test_errors_inside_a_typed_dict_are_located_by_key_only():
    instances = TypeAdapter(list[Instance])
    assert instances.validate_json('[{"size": "1e3", "colour": 2.0}]') == [
        {"size": 1000.0, "colour": "2.0"}
    ]
    assert error_list(instances, [{"size": False, "colour": float("nan")}]) == [
        ("float_type", (0, "size")),
        ("finite_number", (0, "colour")),
    ]


def test_error_messages_are_pydantics_own():
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(list[ROW]).validate_json('[["x", "a", 1e16]]')
    messages = [detail["msg"] for detail in caught.value.errors()]
    assert messages == [
        "Input should be a valid number, unable to parse string as a number",
        "Input should be less than or equal to 1000000000000000",
    ]


def python_calls(validate: Callable[[], object]) -> list[str]:
    """The functions of model/values.py that run while validating."""
    called: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename == values.__file__:
            called.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        validate()
    finally:
        sys.setprofile(None)
    return called


def test_numbers_and_null_never_call_python():
    adapter = TypeAdapter(list[tuple[NumberValue, NumberValue, NumberValue]])
    document = json.dumps([[1.5, -2, None], [0, 1e15, 3.25], [10**15, -0.0, 7]])
    assert python_calls(lambda: adapter.validate_json(document)) == []
    assert python_calls(lambda: adapter.validate_python(json.loads(document))) == []
    # the probe does see the rule's Python, which runs for missing texts
    assert python_calls(lambda: adapter.validate_json('[["nan", 1, 2]]')) == ["_missing"]


def test_json_schema_describes_both_rules():
    schema = TypeAdapter(Instance).json_schema()
    size = schema["properties"]["size"]
    assert {"type": "number", "minimum": -MAX_ABS_NUMBER, "maximum": MAX_ABS_NUMBER} in (
        size["anyOf"]
    )
    assert {"type": "string", "pattern": NUMBER_TEXT_PATTERN} in size["anyOf"]
    assert {"type": "null"} in schema["properties"]["colour"]["anyOf"]
    json.dumps(schema)


def test_validated_values_serialize():
    instance = TypeAdapter(Instance).validate_python({"size": "2", "colour": 3})
    assert TypeAdapter(Instance).dump_json(instance) == b'{"size":2.0,"colour":"3"}'


# ------------------------------------------------------------------ Arrow: column types


@pytest.mark.parametrize(
    ("arrow_type", "numbers", "categories"),
    [
        (pa.null(), True, True),
        (pa.int8(), True, True),
        (pa.uint64(), True, True),
        (pa.float16(), True, True),
        (pa.float64(), True, True),
        (pa.decimal128(10, 2), True, False),
        (pa.decimal256(40, 2), True, False),
        (pa.string(), True, True),
        (pa.large_string(), True, True),
        (pa.binary(), True, True),
        (pa.large_binary(), True, True),
        (pa.dictionary(pa.int8(), pa.string()), True, True),
        (pa.dictionary(pa.int8(), pa.int64()), True, True),
        (pa.bool_(), False, True),
        (pa.list_(pa.int64()), False, False),
        (pa.struct([("a", pa.int64())]), False, False),
        (pa.timestamp("s"), False, False),
        (pa.date32(), False, False),
    ],
    ids=str,
)
def test_which_column_types_can_hold_values(arrow_type, numbers, categories):
    assert number_type_accepted(arrow_type) is numbers
    assert category_type_accepted(arrow_type) is categories


@pytest.mark.parametrize(
    "arrow_type",
    [
        *(pa.int8(), pa.int16(), pa.int32(), pa.int64()),
        *(pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()),
        *(pa.float16(), pa.float32(), pa.float64()),
        *(pa.decimal128(12, 3), pa.decimal256(50, 3)),
    ],
    ids=str,
)
def test_every_number_type_is_read_as_float64(arrow_type):
    checked = number_column(pa.array([1, None, 100], arrow_type))
    assert checked.values.dtype == np.float64
    assert checked.values[[0, 2]].tolist() == [1.0, 100.0] and math.isnan(checked.values[1])
    assert checked.refused_count == 0 and not checked.refused.any()


def test_decimals_beyond_the_limit_are_refused():
    big = decimal.Decimal("1" + "0" * 20)
    checked = number_column(pa.array([big, decimal.Decimal("-3.5")], pa.decimal256(40, 1)))
    assert checked.refused.tolist() == [True, False] and checked.values[1] == -3.5
    assert checked.problems == [Problem(0, "less_than_equal", "beyond ±1e15", big)]


def test_types_without_numbers_are_refused_value_by_value():
    column = pa.array([None, [1, 2], []], pa.list_(pa.int64()))
    checked = number_column(column)
    assert checked.refused.tolist() == [False, True, True]
    assert [problem.kind for problem in checked.problems] == ["float_type"] * 2
    assert checked.problems[0].message == "a list is not a number"
    timestamps = category_column(pa.array([0, None], pa.timestamp("s")))
    assert timestamps.refused.tolist() == [True, False]
    assert timestamps.problems[0].message == "a datetime is neither text nor a number"
    decimals = category_column(pa.array([decimal.Decimal("1.5")]))
    assert decimals.problems[0].kind == "string_type"


def test_bytes_that_are_not_utf8_are_refused_row_by_row():
    column = pa.array([b"1.5", b"\xff\xfe", None, b" nan", b"NA"], pa.binary())
    numbers = number_column(column)
    assert numbers.refused.tolist() == [False, True, False, True, False]
    assert [(p.row, p.kind, p.value) for p in numbers.problems] == [
        (1, "float_parsing", b"\xff\xfe"),
        (3, "float_parsing", b" nan"),
    ]
    categories = category_column(column)
    assert categories.values.tolist() == ["1.5", None, None, " nan", None]
    assert [(p.row, p.kind, p.value) for p in categories.problems] == [
        (1, "string_unicode", b"\xff\xfe")
    ]


def test_chunked_and_dictionary_columns_read_as_one_plain_column():
    texts = ["1", "x", None, "nan", "2e3", "1e16", "y"]
    chunked = pa.chunked_array(
        [pa.array(texts[:3]).dictionary_encode(), pa.array(texts[3:]).dictionary_encode()]
    )
    plain = number_column(pa.array(texts))
    for checked in (number_column(chunked), number_column(pa.chunked_array([texts]))):
        np.testing.assert_array_equal(checked.values, plain.values)
        assert checked.refused.tolist() == plain.refused.tolist()
        assert checked.problems == plain.problems
    assert [p.row for p in plain.problems] == [1, 5, 6]
    empty = number_column(pa.chunked_array([], pa.float64()))
    assert len(empty.values) == 0 and empty.problems == [] and empty.refused_count == 0
    categories = category_column(pa.chunked_array([["a", "nan"], ["b"]]))
    assert categories.values.tolist() == ["a", None, "b"]


@pytest.mark.skipif(not hasattr(pa, "string_view"), reason="pyarrow without view types")
def test_view_columns_are_read_as_text():
    checked = number_column(pa.array(["1.5", "x", None], pa.string_view()))
    assert checked.refused.tolist() == [False, True, False] and checked.values[0] == 1.5
    assert category_column(pa.array([b"a", b"NA"], pa.binary_view())).values.tolist() == [
        "a",
        None,
    ]


def test_values_are_writable_arrays_with_refused_rows_blanked():
    numbers = number_column(pa.array([1.0, float("inf"), 3.0]))
    assert numbers.values.flags.writeable and math.isnan(numbers.values[1])
    categories = category_column(pa.array([1.0, float("nan"), None]))
    assert categories.values.dtype == object and categories.values.tolist() == ["1.0", None, None]


def test_a_large_clean_column_is_accepted_whole():
    floats = np.random.default_rng(0).uniform(-MAX_ABS_NUMBER, MAX_ABS_NUMBER, 100_000)
    checked = number_column(pa.array(floats))
    assert checked.refused_count == 0
    np.testing.assert_array_equal(checked.values, floats)
    text = number_column(pa.array([repr(value) for value in floats.tolist()]))
    np.testing.assert_array_equal(text.values, floats)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), 1e16, -1e16])
@pytest.mark.parametrize("at", [0, 5, 9])
def test_one_bad_float_among_accepted_ones_is_refused(bad, at):
    """A float64 column without nulls takes a quicker check; one bad value still fails it."""
    floats = np.linspace(-5.0, 5.0, 10)
    floats[at] = bad
    checked = number_column(pa.array(floats))
    assert checked.refused_count == 1 and [p.row for p in checked.problems] == [at]
    assert math.isnan(checked.values[at]) and checked.values.flags.writeable


# --------------------------------------------------------------- Arrow: problems bounded


def test_problems_are_bounded_and_the_refused_rows_counted():
    texts = ["1"] * 50 + ["bad"] * 250 + [None] * 10 + ["1e99"] * 5
    checked = number_column(pa.array(texts))
    assert checked.refused_count == 255 and int(checked.refused.sum()) == 255
    assert len(checked.problems) == 100
    assert [p.row for p in checked.problems] == list(range(50, 150))
    assert {p.kind for p in checked.problems} == {"float_parsing"}
    assert len(number_column(pa.array(texts), max_problems=300).problems) == 255
    assert number_column(pa.array(texts), max_problems=0).problems == []
    assert number_column(pa.array(texts), max_problems=0).refused_count == 255
    floats = number_column(pa.array([float("nan")] * 7 + [1e16] * 3), max_problems=2)
    assert [(p.row, p.kind) for p in floats.problems] == [
        (0, "finite_number"),
        (1, "finite_number"),
    ]
    assert floats.refused_count == 10
    categories = category_column(pa.array([[1]] * 20), max_problems=5)
    assert len(categories.problems) == 5 and categories.refused_count == 20
    with pytest.raises(ValueError, match="max_problems"):
        number_column(pa.array([1.0]), max_problems=-1)


def test_problems_come_in_row_order_whatever_their_kind():
    checked = number_column(pa.array([1e16, float("nan"), -1e16, float("-inf"), 2.0]))
    assert [(p.row, p.kind) for p in checked.problems] == [
        (0, "less_than_equal"),
        (1, "finite_number"),
        (2, "greater_than_equal"),
        (3, "finite_number"),
    ]


# --------------------------------------------------------------------- hypothesis


NUMBERISH_TEXT = st.one_of(
    st.text(),
    st.from_regex(NUMBER_TEXT_PATTERN, fullmatch=True),
    st.from_regex(NUMBER_TEXT_PATTERN, fullmatch=True).map(lambda text: text + "\n"),
    st.floats(min_value=-2 * MAX_ABS_NUMBER, max_value=2 * MAX_ABS_NUMBER).map(repr),
    st.sampled_from(MISSING_TEXTS),
    st.floats().map(repr),
    st.floats().map(lambda value: f"{value:e}"),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.text(alphabet=" \t\n\r\u00a0+-._eE0123456789", max_size=12),
    st.text(alphabet="0123456789", min_size=14, max_size=400),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(NUMBERISH_TEXT, min_size=1, max_size=8))
def test_any_text_gets_one_numeric_verdict(texts):
    expected = [scalar_verdict(number, text) for text in texts]
    as_text = number_column(pa.array(texts))
    as_bytes = number_column(pa.array([text.encode() for text in texts], pa.binary()))
    assert column_verdicts(as_text) == expected
    assert column_verdicts(as_bytes) == expected
    for text, wanted in zip(texts, expected, strict=True):
        assert pydantic_verdict(NUMBERS.validate_python, text) == wanted
        assert pydantic_verdict(NUMBERS.validate_json, json.dumps(text)) == wanted


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(st.one_of(st.text(), st.sampled_from(MISSING_TEXTS)), max_size=8))
def test_any_text_gets_one_categorical_verdict(texts):
    expected = [scalar_verdict(category, text) for text in texts]
    assert column_verdicts(category_column(pa.array(texts, pa.string()))) == expected
    binary = pa.array([text.encode() for text in texts], pa.binary())
    assert column_verdicts(category_column(binary)) == expected
    for text, wanted in zip(texts, expected, strict=True):
        assert pydantic_verdict(CATEGORIES.validate_python, text) == wanted
        assert pydantic_verdict(CATEGORIES.validate_json, json.dumps(text)) == wanted


@settings(max_examples=200, deadline=None)
@given(
    numbers=st.lists(
        st.one_of(
            st.floats(),
            st.floats(min_value=-2 * MAX_ABS_NUMBER, max_value=2 * MAX_ABS_NUMBER),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_any_number_gets_one_verdict(numbers):
    floats = [float(value) for value in numbers]
    expected = [scalar_verdict(number, value) for value in floats]
    assert column_verdicts(number_column(pa.array(floats, pa.float64()))) == expected
    as_categories = [scalar_verdict(category, value) for value in floats]
    assert column_verdicts(category_column(pa.array(floats, pa.float64()))) == as_categories
    for value, wanted, wanted_category in zip(floats, expected, as_categories, strict=True):
        assert pydantic_verdict(NUMBERS.validate_python, value) == wanted
        assert pydantic_verdict(NUMBERS.validate_json, json.dumps(value)) == wanted
        assert pydantic_verdict(CATEGORIES.validate_json, json.dumps(value)) == wanted_category
    integers = [value for value in numbers if isinstance(value, int)]
    expected = [scalar_verdict(number, value) for value in integers]
    assert column_verdicts(number_column(pa.array(integers, pa.int64()))) == expected
    for value, wanted in zip(integers, expected, strict=True):
        assert pydantic_verdict(NUMBERS.validate_json, json.dumps(value)) == wanted
    texts = category_column(pa.array(integers, pa.int64())).values.tolist()
    assert texts == [category(value) for value in integers]


# ------------------------------------------------------------------------ import cost


def test_importing_the_rule_imports_neither_pandas_nor_arrow_compute():
    code = (
        "import sys, model.values; print('pandas' in sys.modules, 'pyarrow.compute' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == ["False", "False"]
