"""The one rule for a feature value, in three forms that give the same verdict.

The rule
--------
A **numeric** feature takes:

- a missing value: null (None), or text that is empty or one of pandas' default
  missing-value texts, matched exactly (`MISSING_TEXTS`: "", "#N/A", "#N/A N/A", "#NA",
  "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL",
  "NaN", "None", "n/a", "nan", "null"). So the text "nan" is missing, as when pandas reads
  a CSV file; it is imputed as in training.
- a number (an int or a float, never a boolean) that is finite and within ±1e15
  (`MAX_ABS_NUMBER`). A NaN or infinite *number* is refused: only null and the missing
  texts are missing.
- text spelling a plain decimal number in ASCII (`NUMBER_TEXT_PATTERN`): optional spaces
  or tabs around it, an optional sign, digits with an optional fraction (or a fraction
  alone, ".5"), an optional exponent. Its value must then be finite and within ±1e15.
  "1.5", " 2 ", "+.5" and "1e5" are numbers; "1_000", "\\u00a01.5" (a no-break space),
  "inf", "0x10", "1,5" and non-ASCII digits are not.

Anything else is refused: booleans, lists, objects.

A **categorical** feature takes:

- a missing value: null (None), or empty or missing-value text, as above;
- text, kept as it is;
- a number or a boolean, as Python's `str()` gives it, the way training casts
  categories: an int as its decimal text ("3"), a float as the text of its float64
  value ("1.5", "2.0"; a NaN or infinite number is refused), a boolean as "True" or
  "False".

Anything else is refused.

Bytes (a binary Arrow column, or a Python `bytes` value) are the UTF-8 text they hold;
bytes that are not UTF-8 are refused.

Details. A number is what pydantic's strict float takes: Python and numpy ints and floats,
Decimal, anything with `__float__`, but never a boolean (numpy's included); an int too
large for a float64 (beyond about 1.8e308) is refused as not a number (float_type). For a
categorical feature, a float is written as its float64 value is (a float32 0.1 becomes
"0.10000000149011612", as pandas' str() of that value did in training).

The three forms
---------------
- scalar: `number(value)` and `category(value)` return the value the model gets (None
  when missing) or raise `ValueProblem`;
- pydantic: `NumberValue` and `CategoryValue`, annotated types for request bodies.
  `NumberValue` validates ints, floats and null in pydantic-core alone (no Python call),
  number text with its regex and float(); Python code runs only for missing texts, for
  values JSON cannot hold, and for refused text. `CategoryValue` runs the scalar form
  once per value that is not null;
- Arrow, vectorised: `number_column` and `category_column` check a whole column with a few
  compute kernels (text included), and report the first refused rows.

A refused value has a `kind`, the pydantic error type the JSON path reports for it:
"float_parsing" (text that is not a number), "float_type" (a boolean, or no number at
all), "finite_number", "less_than_equal" and "greater_than_equal" (beyond ±1e15) for
numeric features; "string_type" (neither text nor a number), "finite_number" and
"string_unicode" (bytes that are not UTF-8) for categorical ones. Messages are short and
say what is wrong, not where: callers add the location.
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final, NamedTuple

import numpy as np
import pyarrow as pa
from pydantic_core import PydanticKnownError, core_schema

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue

__all__ = [
    "MAX_ABS_NUMBER",
    "MISSING_TEXTS",
    "NOT_A_CATEGORY",
    "NOT_A_NUMBER",
    "NOT_FINITE",
    "NOT_UTF8",
    "NUMBER_TEXT_PATTERN",
    "TOO_HIGH",
    "TOO_LOW",
    "WRONG_TYPE",
    "CategoryColumn",
    "CategoryValue",
    "NumberColumn",
    "NumberValue",
    "Problem",
    "ValueProblem",
    "category",
    "category_column",
    "category_type_accepted",
    "number",
    "number_column",
    "number_type_accepted",
]

# Far beyond any real measurement, and far below where scaling overflows float64.
MAX_ABS_NUMBER: Final = 1e15
# pandas' default missing-value texts (read_csv's na_values), matched exactly.
MISSING_TEXTS: Final = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip
# A plain decimal number in ASCII. `^` and `$` are the ends of the text (RE2, Rust regex);
# Python must use fullmatch, as its `$` also matches before a final newline.
NUMBER_TEXT_PATTERN: Final = (
    r"^[ \t]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t]*$"
)

# The kinds of refusal: pydantic's error types for the same value.
NOT_A_NUMBER: Final = "float_parsing"
WRONG_TYPE: Final = "float_type"
NOT_FINITE: Final = "finite_number"
TOO_HIGH: Final = "less_than_equal"
TOO_LOW: Final = "greater_than_equal"
NOT_A_CATEGORY: Final = "string_type"
NOT_UTF8: Final = "string_unicode"

_MISSING: Final = frozenset(MISSING_TEXTS)
_NUMBER_TEXT: Final = re.compile(NUMBER_TEXT_PATTERN)
_BEYOND: Final = "beyond ±1e15"
_SHOWN_CHARACTERS: Final = 60


class ValueProblem(ValueError):
    """A refused value: `kind` is the pydantic error type, `message` says what is wrong."""

    def __init__(self, kind: str, message: str, value: object = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.value = value


# --------------------------------------------------------------------------- scalar form


def number(value: object) -> float | None:
    """A numeric feature's value as a float, None if missing; raises ValueProblem."""
    if value is None:
        return None
    if isinstance(value, str):
        return _checked(_text_number(value, value), value)
    if isinstance(value, bytes | bytearray):  # bytes that are not UTF-8 spell no number
        return _checked(_text_number(bytes(value).decode(errors="replace"), value), value)
    return _checked(_number_of(value), value)


def category(value: object) -> str | None:
    """A categorical feature's value as text, None if missing; raises ValueProblem."""
    if value is None:
        return None
    if isinstance(value, str):
        return None if value in _MISSING else value
    if isinstance(value, bytes | bytearray):
        try:
            text = bytes(value).decode()
        except UnicodeDecodeError:
            raise ValueProblem(NOT_UTF8, _category_message(NOT_UTF8, value), value) from None
        return None if text in _MISSING else text
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    if isinstance(value, int | np.integer):
        try:
            return str(int(value))
        except ValueError:  # beyond Python's limit on digits converted to text
            raise ValueProblem(NOT_A_CATEGORY, "an integer too long for text", value) from None
    if isinstance(value, float | np.floating):
        result = float(value)
        if not math.isfinite(result):
            raise ValueProblem(NOT_FINITE, "not finite", value)
        return str(result)
    raise ValueProblem(NOT_A_CATEGORY, _category_type_message(value), value)


def _text_number(text: str, value: object) -> float | None:
    """The number a text spells (unchecked against the limits), None if missing.

    `value` is what the text came from (the text itself, or the bytes holding it).
    """
    if text in _MISSING:
        return None
    if _NUMBER_TEXT.fullmatch(text) is None:
        raise ValueProblem(NOT_A_NUMBER, f"not a number: {_shown(value)}", value)
    return float(text)


def _number_of(value: object) -> float:
    """A non-text value as a float, as pydantic's strict float reads it (never a boolean)."""
    if isinstance(value, bool | np.bool_):
        raise ValueProblem(WRONG_TYPE, "a boolean is not a number", value)
    to_float = getattr(type(value), "__float__", None)
    if to_float is None:
        raise ValueProblem(WRONG_TYPE, _number_type_message(value), value)
    try:
        return float(to_float(value))
    except OverflowError:  # an int beyond float64's range
        raise ValueProblem(WRONG_TYPE, "an integer too large for a float", value) from None
    except (TypeError, ValueError):
        raise ValueProblem(WRONG_TYPE, _number_type_message(value), value) from None


def _checked(result: float | None, value: object) -> float | None:
    if result is None:
        return None
    if not math.isfinite(result):
        raise ValueProblem(NOT_FINITE, "not finite", value)
    if result > MAX_ABS_NUMBER:
        raise ValueProblem(TOO_HIGH, _BEYOND, value)
    if result < -MAX_ABS_NUMBER:
        raise ValueProblem(TOO_LOW, _BEYOND, value)
    return result


def _shown(value: object) -> str:
    """The value as a message quotes it: UTF-8 bytes as the text they hold."""
    if isinstance(value, bytes):
        with contextlib.suppress(UnicodeDecodeError):
            value = value.decode()
    shown = repr(value)
    if len(shown) > _SHOWN_CHARACTERS:
        shown = shown[: _SHOWN_CHARACTERS - 1] + "…"
    return shown


def _type_name(value: object) -> str:
    name = type(value).__name__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _number_type_message(value: object) -> str:
    if isinstance(value, bool | np.bool_):
        return "a boolean is not a number"
    return f"{_type_name(value)} is not a number"


def _category_type_message(value: object) -> str:
    return f"{_type_name(value)} is neither text nor a number"


def _number_message(kind: str, value: object) -> str:
    """The message `number(value)` gives for a value refused as `kind`."""
    if kind == NOT_A_NUMBER:
        return f"not a number: {_shown(value)}"
    if kind == WRONG_TYPE:
        return _number_type_message(value)
    if kind == NOT_FINITE:
        return "not finite"
    return _BEYOND


def _category_message(kind: str, value: object) -> str:
    """The message `category(value)` gives for a value refused as `kind`."""
    if kind == NOT_UTF8:
        return f"not UTF-8 text: {_shown(value)}"
    if kind == NOT_FINITE:
        return "not finite"
    return _category_type_message(value)


# ------------------------------------------------------------------------- pydantic form


def _other_than_number(value: Any) -> Any:
    """What the number schema hands on for a value that is neither an int, a float nor text.

    Reached by text that is not a number, which it refuses (the union reports it as
    float_parsing), and by values other than JSON's: bytes, read as text; numpy booleans,
    made Python booleans; anything else as it is. The final float check takes what it
    returns or refuses it (a boolean or a list there is a float_type error).
    """
    if isinstance(value, str):
        raise ValueError("not a number")
    if isinstance(value, bytes | bytearray):
        return _text_number(bytes(value).decode(errors="replace"), value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _missing(_: str) -> None:
    return None


def _number_core_schema() -> core_schema.CoreSchema:
    """The rule for a numeric feature as a pydantic-core schema.

    null -> None; then a smart union sorts the value out: a float or an int (JSON numbers)
    match exactly and are handed on untouched; then number text (checked by the Rust
    regex) becomes its float, a missing text becomes None, and the last member takes
    whatever else is not text. If nothing matches, the value is text that is not a number:
    the unions' error is float_parsing, with no member names in the location. A final
    strict float schema applies the limits (finite_number, less_than_equal,
    greater_than_equal) and refuses booleans and other types (float_type).

    Why a chain: a union reports either every member's error, each located under the
    member's name, or one error type of its own; the five kinds need the union (one kind)
    followed by the float schema (the other four). Lax float parsing of text is not used:
    it takes "1_000", "inf" and a no-break space, and booleans.
    """
    # Labels name the members in the validator's name (and title); with the unions' own
    # errors, no location ever shows them. Text goes to a left-to-right union that stops at
    # its first match: a smart union would try every member, as JSON text never matches
    # "exactly" (it might spell a date or a UUID).
    text = core_schema.union_schema(
        [
            (
                core_schema.no_info_after_validator_function(
                    float, core_schema.str_schema(strict=True, pattern=NUMBER_TEXT_PATTERN)
                ),
                "number text",
            ),
            (
                core_schema.no_info_after_validator_function(
                    _missing, core_schema.literal_schema(list(MISSING_TEXTS))
                ),
                "missing text",
            ),
            (core_schema.no_info_plain_validator_function(_other_than_number), "other"),
        ],
        mode="left_to_right",
        custom_error_type=NOT_A_NUMBER,
    )
    sort = core_schema.union_schema(
        [
            (core_schema.float_schema(strict=True), "float"),
            (core_schema.int_schema(strict=True), "int"),  # exact for ints, as float is not
            (text, "text or other"),
        ],
        mode="smart",
        custom_error_type=NOT_A_NUMBER,
    )
    limits = core_schema.float_schema(
        strict=True, allow_inf_nan=False, ge=-MAX_ABS_NUMBER, le=MAX_ABS_NUMBER
    )
    return core_schema.nullable_schema(
        core_schema.chain_schema([sort, core_schema.nullable_schema(limits)])
    )


def _pydantic_category(value: Any) -> str | None:
    try:
        return category(value)
    except ValueProblem as problem:  # its kinds are pydantic's, and need no context
        raise PydanticKnownError(problem.kind) from None


def _category_core_schema() -> core_schema.CoreSchema:
    return core_schema.nullable_schema(
        core_schema.no_info_plain_validator_function(_pydantic_category)
    )


_NUMBER_JSON_SCHEMA: Final = {
    "anyOf": [
        {"type": "number", "minimum": -MAX_ABS_NUMBER, "maximum": MAX_ABS_NUMBER},
        {"type": "string", "pattern": NUMBER_TEXT_PATTERN},
        {"type": "string", "enum": list(MISSING_TEXTS)},
        {"type": "null"},
    ],
    "description": "A number within ±1e15, its decimal text, or null or a missing-value "
    "text for a missing value.",
}
_CATEGORY_JSON_SCHEMA: Final = {
    "anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"}],
    "description": "A category as text (numbers and booleans are read as their text), "
    "or null or a missing-value text for a missing value.",
}


class _NumberRule:
    """Annotated metadata giving the numeric rule's schema (a fresh one each time)."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return _number_core_schema()

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return copy.deepcopy(_NUMBER_JSON_SCHEMA)

    def __repr__(self) -> str:
        return "NumberRule()"


class _CategoryRule:
    """Annotated metadata giving the categorical rule's schema (a fresh one each time)."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return _category_core_schema()

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return copy.deepcopy(_CATEGORY_JSON_SCHEMA)

    def __repr__(self) -> str:
        return "CategoryRule()"


NumberValue = Annotated[float | None, _NumberRule()]
"""A numeric feature's value in a request body: a float, or None when missing."""
CategoryValue = Annotated[str | None, _CategoryRule()]
"""A categorical feature's value in a request body: text, or None when missing."""


# --------------------------------------------------------------------------- list form


_PLAIN_NUMBER_TYPES: Final = (float, int, type(None))


def number_list(items: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    """Decoded JSON values of a numeric feature: float64 (NaN where missing or refused), and
    which were refused. Plain numbers and null take a vectorised path; the rest `number()`."""
    if all(type(item) in _PLAIN_NUMBER_TYPES for item in items):  # bools are not: type() is
        try:
            floats = np.array(items, dtype=np.float64)
        except OverflowError:  # an int beyond float64: the scalar rule says which
            pass
        else:
            given = np.fromiter((item is not None for item in items), bool, len(items))
            with np.errstate(invalid="ignore"):
                refused = given & ~(np.abs(floats) <= MAX_ABS_NUMBER)
            floats[refused] = np.nan
            return floats, refused
    floats = np.full(len(items), np.nan)
    refused = np.zeros(len(items), dtype=bool)
    for index, item in enumerate(items):
        try:
            value = number(item)
        except ValueProblem:
            refused[index] = True
        else:
            floats[index] = np.nan if value is None else value
    return floats, refused


def category_list(items: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    """Decoded JSON values of a categorical feature: str or None, and which were refused."""
    texts = np.empty(len(items), dtype=object)
    refused = np.zeros(len(items), dtype=bool)
    for index, item in enumerate(items):
        try:
            texts[index] = category(item)
        except ValueProblem:
            refused[index] = True
    return texts, refused


# --------------------------------------------------------------------------- Arrow form


class Problem(NamedTuple):
    """A refused value of a column: its row index, kind, message and the value itself."""

    row: int
    kind: str
    message: str
    value: object


@dataclass(frozen=True)
class NumberColumn:
    """A numeric column checked: `values` has NaN where missing or refused."""

    values: np.ndarray  # float64; may be a read-only view of the column when none is refused
    refused: np.ndarray  # bool, one per row
    problems: list[Problem]  # the first refused rows, in row order
    refused_count: int


@dataclass(frozen=True)
class CategoryColumn:
    """A categorical column checked: `values` has None where missing or refused."""

    values: np.ndarray  # object: str or None
    refused: np.ndarray  # bool, one per row
    problems: list[Problem]  # the first refused rows, in row order
    refused_count: int


def number_type_accepted(arrow_type: pa.DataType) -> bool:
    """Whether a column of this type can hold numbers (or number text) at all.

    Booleans cannot, nor can nested or temporal types; a null column (all missing) can.
    """
    arrow_type = _value_type(arrow_type)
    types = pa.types
    return (
        types.is_null(arrow_type)
        or types.is_integer(arrow_type)
        or types.is_floating(arrow_type)
        or types.is_decimal(arrow_type)
        or _is_text_type(arrow_type)
    )


def category_type_accepted(arrow_type: pa.DataType) -> bool:
    """Whether a column of this type can hold categories (text, numbers, booleans) at all."""
    arrow_type = _value_type(arrow_type)
    types = pa.types
    return (
        types.is_null(arrow_type)
        or types.is_boolean(arrow_type)
        or types.is_integer(arrow_type)
        or types.is_floating(arrow_type)
        or _is_text_type(arrow_type)
    )


def number_column(column: pa.Array | pa.ChunkedArray, max_problems: int = 100) -> NumberColumn:
    """A numeric feature's column checked value by value with vectorised kernels.

    Integers and floats cost a min/max reduction when all is well; text is matched, and
    only matching text parsed, by Arrow's kernels. A column of a type that holds no numbers
    (booleans, lists...) has every value but null refused as float_type.
    """
    _check_max_problems(max_problems)
    array = _plain_array(column)
    plain = _plain_floats(array)
    if plain is not None:
        return NumberColumn(plain, np.zeros(len(plain), dtype=bool), [], 0)
    arrow_type = array.type
    missing = _null_mask(array)
    refusals: list[tuple[str, np.ndarray]]
    if pa.types.is_null(arrow_type):
        values, refusals = np.full(len(array), np.nan), []
    elif _holds_numbers(arrow_type):
        values = _floats(array, writable=False)  # a copy only if a value is refused
        refusals = _beyond_limits(values, missing, may_hold_nan=pa.types.is_floating(arrow_type))
    elif _is_text_type(arrow_type):
        values, refusals = _text_numbers(array, missing)
    else:
        values, refusals = np.full(len(array), np.nan), [(WRONG_TYPE, ~missing)]
    refused = _any(refusals, len(array))
    count = int(np.count_nonzero(refused))
    if count:
        values = values if values.flags.writeable else values.copy()
        values[refused] = np.nan
    problems = _first_problems(array, refusals, refused, max_problems, _number_message)
    return NumberColumn(values, refused, problems, count)


def category_column(column: pa.Array | pa.ChunkedArray, max_problems: int = 100) -> CategoryColumn:
    """A categorical feature's column checked value by value.

    Text, integers and booleans are converted by Arrow's kernels; floats (rare) go through
    Python's str() one by one, as training did. A column of a type that holds no categories
    (decimals, lists...) has every value but null refused as string_type.
    """
    _check_max_problems(max_problems)
    array = _plain_array(column)
    arrow_type = array.type
    missing = _null_mask(array)
    refusals: list[tuple[str, np.ndarray]] = []
    if pa.types.is_null(arrow_type):
        values = np.full(len(array), None, dtype=object)
    elif _is_text_type(arrow_type):
        text, not_utf8 = _as_text(array)
        if not_utf8 is not None:
            refusals.append((NOT_UTF8, not_utf8))
        values = _numpy(text)
        is_missing = _numpy(_compute().is_in(text, value_set=_missing_texts(text.type)))
        values[is_missing.astype(bool)] = None
    elif pa.types.is_boolean(arrow_type):
        values = _numpy(_compute().if_else(array, "True", "False"))
    elif pa.types.is_integer(arrow_type):
        values = _numpy(array.cast(pa.string()))
    elif pa.types.is_floating(arrow_type):
        floats = _floats(array)
        not_finite = ~np.isfinite(floats) & ~missing
        refusals.append((NOT_FINITE, not_finite))
        shown = ~missing & ~not_finite
        values = np.full(len(array), None, dtype=object)
        values[shown] = [str(value) for value in floats[shown].tolist()]
    else:
        values = np.full(len(array), None, dtype=object)
        refusals.append((NOT_A_CATEGORY, ~missing))
    refused = _any(refusals, len(array))
    count = int(np.count_nonzero(refused))
    if count:
        values[refused] = None
    problems = _first_problems(array, refusals, refused, max_problems, _category_message)
    return CategoryColumn(values.astype(object, copy=False), refused, problems, count)


# string_view and binary_view (pyarrow 16+), by name: the kernels used here take the others.
_VIEWS_AS: Final = {"string_view": pa.large_string(), "binary_view": pa.large_binary()}


def _compute() -> Any:
    # pyarrow.compute costs tens of milliseconds to import: only the Arrow form needs it.
    import pyarrow.compute as pc

    return pc


def _value_type(arrow_type: pa.DataType) -> pa.DataType:
    return arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type


def _is_view_type(arrow_type: pa.DataType) -> bool:
    return str(arrow_type) in _VIEWS_AS


def _is_text_type(arrow_type: pa.DataType) -> bool:
    types = pa.types
    return (
        types.is_string(arrow_type)
        or types.is_large_string(arrow_type)
        or types.is_binary(arrow_type)
        or types.is_large_binary(arrow_type)
        or _is_view_type(arrow_type)
    )


def _is_bytes_type(arrow_type: pa.DataType) -> bool:
    return pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type)


def _holds_numbers(arrow_type: pa.DataType) -> bool:
    types = pa.types
    return (
        types.is_integer(arrow_type)
        or types.is_floating(arrow_type)
        or types.is_decimal(arrow_type)
    )


def _plain_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One array, dictionaries decoded, views as ordinary (large) strings and binaries."""
    if pa.types.is_dictionary(column.type):
        column = _decoded_dictionary(column)
    if isinstance(column, pa.ChunkedArray):  # one chunk (an IPC body's usual): no copy
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if _is_view_type(column.type):
        column = column.cast(_VIEWS_AS[str(column.type)])
    return column


def _decoded_dictionary(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    value_type = column.type.value_type
    if not _is_view_type(value_type):
        return column.cast(value_type)
    # Arrow casts no dictionary of views: their entries become ordinary text first.
    plain_type = _VIEWS_AS[str(value_type)]
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    decoded = []
    for chunk in chunks:
        entries = chunk.dictionary.cast(plain_type)
        decoded.append(pa.DictionaryArray.from_arrays(chunk.indices, entries).cast(plain_type))
    if isinstance(column, pa.ChunkedArray):
        return pa.chunked_array(decoded, plain_type)
    return decoded[0]


def _numpy(array: pa.Array, *, writable: bool = True) -> np.ndarray:
    return array.to_numpy(zero_copy_only=False, writable=writable)


def _null_mask(array: pa.Array) -> np.ndarray:
    if not array.null_count:
        return np.zeros(len(array), dtype=bool)
    return _numpy(array.is_null())


def _floats(array: pa.Array, *, writable: bool = True) -> np.ndarray:
    """float64 values, NaN where null (integers beyond 2**53 rounded, as pydantic does)."""
    return _numpy(array.cast(pa.float64(), safe=False), writable=writable)


def within_limits(values: np.ndarray) -> bool:
    """Whether every value is a number within ±MAX_ABS_NUMBER, in two reductions.

    np.minimum and np.maximum carry a NaN through, and ±inf lies beyond the limits, so
    either bound failing covers every refusal a float array can hold.
    """
    if not values.size:
        return True
    lowest, highest = np.minimum.reduce(values, axis=None), np.maximum.reduce(values, axis=None)
    return bool(lowest >= -MAX_ABS_NUMBER and highest <= MAX_ABS_NUMBER)


def _plain_floats(array: pa.Array) -> np.ndarray | None:
    """The values of a float64 column without nulls whose values are all accepted, as a
    read-only view; None for any other column (the full check decides)."""
    if array.type != pa.float64() or array.null_count or not len(array):
        return None
    values = array.to_numpy(zero_copy_only=True)
    return values if within_limits(values) else None


def _any(refusals: list[tuple[str, np.ndarray]], rows: int) -> np.ndarray:
    refused = np.zeros(rows, dtype=bool)
    for _, mask in refusals:
        refused |= mask
    return refused


def _beyond_limits(
    values: np.ndarray, missing: np.ndarray, *, may_hold_nan: bool
) -> list[tuple[str, np.ndarray]]:
    """NaN or infinite numbers (not the missing rows), and numbers beyond ±1e15.

    A quick reduction first: all within the limits and no NaN but the missing rows means
    nothing to refuse, without building a mask.
    """
    if not len(values):
        return []
    lowest, highest = np.fmin.reduce(values), np.fmax.reduce(values)
    within = bool(lowest >= -MAX_ABS_NUMBER and highest <= MAX_ABS_NUMBER)
    if within and not may_hold_nan:
        return []
    if within and not missing.any():
        # the limits bound the sum far below overflow: it is NaN only if a value is
        if not np.isnan(np.add.reduce(values)):
            return []
    elif within and np.count_nonzero(np.isnan(values)) == np.count_nonzero(missing):
        return []
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore"):
        return [
            (NOT_FINITE, ~finite & ~missing),
            (TOO_HIGH, finite & (values > MAX_ABS_NUMBER)),
            (TOO_LOW, finite & (values < -MAX_ABS_NUMBER)),
        ]


def _missing_texts(arrow_type: pa.DataType) -> pa.Array:
    return pa.array(MISSING_TEXTS, type=arrow_type)


def _text_numbers(
    array: pa.Array, missing: np.ndarray
) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """Text parsed by the rule (see `_matched_text_numbers`), most often in one cast."""
    plain = _plain_text_numbers(array, missing)
    return plain if plain is not None else _matched_text_numbers(array, missing)


def _plain_text_numbers(
    array: pa.Array, missing: np.ndarray
) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]] | None:
    """A column of plain number text (a CSV file's usual), parsed by Arrow's cast alone.

    Arrow's parser takes a subset of the rule's number text (no spaces around it, no
    underscores, ASCII only), plus "nan" and "inf" spellings; so when the cast succeeds
    and gives no NaN or infinity but for nulls, every value follows the rule and only the
    limits remain to check. Otherwise None: the rule decides value by value.
    """
    try:
        values = _floats(array)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if not len(values) or missing.all():
        return None
    if not (np.isfinite(np.fmin.reduce(values)) and np.isfinite(np.fmax.reduce(values))):
        return None  # infinity, or text too large for a float
    if missing.any():
        if np.count_nonzero(np.isnan(values)) != np.count_nonzero(missing):
            return None  # "nan" text
    else:
        with np.errstate(over="ignore"):  # finite values: their sum is NaN only if one is
            if np.isnan(np.add.reduce(values)):
                return None
    return values, _beyond_limits(values, missing, may_hold_nan=False)


def _matched_text_numbers(
    array: pa.Array, missing: np.ndarray
) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """Text parsed by the rule: only text matching the pattern is cast to float64.

    Bytes need no UTF-8 check: text that matches is ASCII, and bytes that are not UTF-8
    match neither the pattern nor a missing text, so they are refused as not a number.
    """
    pc = _compute()
    is_missing = _numpy(pc.is_in(array, value_set=_missing_texts(array.type))).astype(bool)
    matching = pc.fill_null(pc.match_substring_regex(array, NUMBER_TEXT_PATTERN), False)
    candidates = pc.if_else(matching, array, pa.scalar(None, array.type))
    if _is_bytes_type(candidates.type):
        large = pa.types.is_large_binary(candidates.type)
        candidates = candidates.cast(pa.large_string() if large else pa.string())
    values = _floats(pc.utf8_trim(candidates, characters=" \t"))
    parsed = _numpy(matching).astype(bool)
    not_a_number = ~(missing | is_missing | parsed)
    refusals = [(NOT_A_NUMBER, not_a_number)]
    refusals += _beyond_limits(values, ~parsed, may_hold_nan=True)
    return values, refusals


def _as_text(array: pa.Array) -> tuple[pa.Array, np.ndarray | None]:
    """Text as strings; bytes decoded, those that are not UTF-8 made null and marked."""
    if not _is_bytes_type(array.type):
        return array, None
    text_type = pa.large_string() if pa.types.is_large_binary(array.type) else pa.string()
    try:
        return array.cast(text_type), None
    except pa.ArrowInvalid:
        pass
    # Some bytes are not UTF-8 (rare): find them one by one.
    not_utf8 = np.zeros(len(array), dtype=bool)
    for row, value in enumerate(array.to_pylist()):
        if value is not None:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                not_utf8[row] = True
    valid = _compute().if_else(pa.array(not_utf8), pa.scalar(None, array.type), array)
    return valid.cast(text_type), not_utf8


def _check_max_problems(max_problems: int) -> None:
    if max_problems < 0:
        raise ValueError(f"max_problems must be 0 or more, not {max_problems}")


def _first_problems(
    array: pa.Array,
    refusals: list[tuple[str, np.ndarray]],
    refused: np.ndarray,
    max_problems: int,
    message: Callable[[str, object], str],
) -> list[Problem]:
    """The first refused rows: the kind of the first refusal that marks each, its value."""
    if not refusals:
        return []
    problems = []
    for row in np.flatnonzero(refused)[:max_problems].tolist():
        kind = next(kind for kind, mask in refusals if mask[row])
        value = array[row].as_py()
        problems.append(Problem(row, kind, message(kind, value), value))
    return problems
