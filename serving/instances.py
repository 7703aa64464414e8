"""Instance types built from a model's feature schema: what `{"instances": [...]}` holds.

Validation happens while the request body is parsed, per request and before the
adaptive batcher merges requests, so one client's bad row never fails another's batch.
Each value follows the one rule of `model.values`. Errors name the instance index and
the field: `loc: ["instances", 3, "mean radius"]`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import (
    AfterValidator,
    ConfigDict,
    Discriminator,
    Field,
    GetCoreSchemaHandler,
    Tag,
    ValidationError,
)
from pydantic_core import InitErrorDetails
from typing_extensions import TypedDict

from model.schema import FeatureSchema
from model.values import MAX_ABS_NUMBER, CategoryValue, NumberValue

# What most bodies hold: numbers and null only. Validated by pydantic-core alone, with the
# same answer as `NumberValue` where it accepts; a body it refuses goes to the full rule.
PlainNumber = Annotated[
    float | None, Field(strict=True, allow_inf_nan=False, ge=-MAX_ABS_NUMBER, le=MAX_ABS_NUMBER)
]


ROW_TAG, OBJECT_TAG, WRONG_LENGTH_TAG = "row", "object", "wrong_length"
_TAGS = frozenset({ROW_TAG, OBJECT_TAG, WRONG_LENGTH_TAG})


def _instance_kind(width: int) -> Callable[[Any], str]:
    def kind(value: Any) -> str:
        if isinstance(value, list | tuple):
            return ROW_TAG if len(value) == width else WRONG_LENGTH_TAG
        return OBJECT_TAG

    return kind


def _wrong_length(width: int) -> Callable[[Any], Any]:
    def reject(value: Any) -> Any:
        raise ValueError(f"expected {width} values in schema order, got {len(value)}")

    return reject


def instance_type(schema: FeatureSchema, number: Any = NumberValue) -> Any:
    """One instance: an object keyed by feature name, or a list of values in schema order.

    Values follow `model.values`: numeric features take numbers (or text spelling one)
    within ±1e15, never NaN or infinity; categorical features take text (numbers are read
    as their text); null and the missing-value texts are missing values, imputed as in
    training. `number` is the type of numeric values. Every feature must be present and no
    other key is allowed. A list validates to a tuple in schema order, an object to a
    mapping; both are checked by pydantic's compiled validators, list items by position.
    Error locations carry the union's tag until `locate_errors` names the feature.
    """
    kinds = [number if f.kind == "numeric" else CategoryValue for f in schema.features]
    row = tuple[tuple(kinds)]  # type: ignore[misc]
    instance = TypedDict(  # type: ignore[misc]
        "Instance", {f.name: kind for f, kind in zip(schema.features, kinds, strict=True)}
    )
    instance.__pydantic_config__ = ConfigDict(extra="forbid", title="Instance")  # type: ignore[attr-defined]
    width = len(schema.features)
    tagged = Annotated[
        Annotated[row, Tag(ROW_TAG)]
        | Annotated[instance, Tag(OBJECT_TAG)]
        | Annotated[Annotated[Any, AfterValidator(_wrong_length(width))], Tag(WRONG_LENGTH_TAG)],
        Discriminator(_instance_kind(width)),
    ]

    # A class, not the Annotated union itself: BentoML re-applies the metadata of Annotated
    # list items (a second Discriminator fails), but leaves classes as they are.
    class Instance:
        @classmethod
        def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
            return handler.generate_schema(tagged)

    return Instance


def instances_field(
    schema: FeatureSchema | None,
    max_rows: int,
    number: Any = NumberValue,
    *,
    fail_fast: bool = False,
) -> Any:
    """The `instances` list; without a schema (no model could be read) any objects or lists.

    `number` is the type of numeric values: the full rule, or `PlainNumber` for the fast
    first pass over a body (see `serving.inputs`), which stops at the first bad instance
    (`fail_fast`) since the full rule reads a refused body again and reports its errors.
    """
    if schema is None:
        return Annotated[list[dict[str, Any] | list[Any]], Field(min_length=1, max_length=max_rows)]
    return Annotated[
        list[instance_type(schema, number)],  # type: ignore[misc]
        Field(
            min_length=1,
            max_length=max_rows,
            fail_fast=fail_fast,
            description=f"1 to {max_rows} instances: objects keyed by feature name, "
            f"or lists of {len(schema.features)} values in schema order.",
        ),
    ]


def _named_location(loc: tuple[int | str, ...], names: Sequence[str]) -> tuple[int | str, ...]:
    """`("instances", 3, "row", 5)` becomes `("instances", 3, names[5])`; other tags go."""
    named: list[int | str] = []
    position = 0
    while position < len(loc):
        part = loc[position]
        follows_index = position > 0 and isinstance(loc[position - 1], int)
        if follows_index and part in _TAGS:
            following = loc[position + 1] if position + 1 < len(loc) else None
            if part == ROW_TAG and isinstance(following, int) and following < len(names):
                named.append(names[following])
                position += 1
            position += 1
            continue
        named.append(part)
        position += 1
    return tuple(named)


def locate_errors(error: ValidationError, names: Sequence[str]) -> ValidationError:
    """The same errors, each located by instance index and feature name."""
    details: list[InitErrorDetails] = [
        {
            "type": detail["type"],
            "loc": _named_location(detail["loc"], names),
            "input": detail["input"],
            "ctx": detail.get("ctx", {}),
        }
        for detail in error.errors()
    ]
    return ValidationError.from_exception_data(error.title, details)


def _values_in_order(instance: Sequence[Any] | Mapping[str, Any], names: Sequence[str]) -> tuple:
    if isinstance(instance, Mapping):
        return tuple(instance[name] for name in names)
    return tuple(instance)


@dataclass(frozen=True)
class Columns:
    """Checked instances held column by column: one contiguous array per feature.

    What large bodies become (a JSON matrix of plain numbers, an Arrow stream): the
    compiled model takes the arrays as they are, and a frame is built only where one is
    needed (scikit-learn, a payload-log sample of a few rows).
    """

    schema: FeatureSchema
    arrays: dict[str, np.ndarray]  # float64 with NaN for a gap, or objects with None

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values()))) if self.arrays else 0

    @classmethod
    def of_matrix(cls, matrix: np.ndarray, schema: FeatureSchema) -> Columns:
        """A float64 `[rows, features]` matrix in schema order, for an all-numeric model."""
        by_feature = np.ascontiguousarray(matrix.T, dtype=np.float64)
        return cls(schema, {name: by_feature[index] for index, name in enumerate(schema.names)})

    @classmethod
    def of_instances(
        cls, instances: Sequence[Sequence[Any] | Mapping[str, Any]], schema: FeatureSchema
    ) -> Columns:
        """Validated instances (tuples in schema order or mappings)."""
        names = schema.names
        rows = [_values_in_order(instance, names) for instance in instances]
        if not schema.categorical:
            return cls.of_matrix(np.array(rows, dtype=np.float64).reshape(-1, len(names)), schema)
        columns = zip(*rows, strict=True) if rows else ([] for _ in names)
        return cls(
            schema,
            {
                feature.name: np.array(
                    column, dtype="float64" if feature.kind == "numeric" else object
                )
                for feature, column in zip(schema.features, columns, strict=True)
            },
        )

    def frame(self, rows: np.ndarray | None = None) -> pd.DataFrame:
        """The model's input frame, of the rows at `rows` (indices) or of all of them."""
        names = self.schema.names
        arrays = [self.arrays[name] if rows is None else self.arrays[name][rows] for name in names]
        if not self.schema.categorical:  # one float block, as a frame built from a matrix has
            return pd.DataFrame(np.column_stack(arrays) if arrays else None, columns=names)
        return pd.DataFrame(dict(zip(names, arrays, strict=True)), columns=names)


def to_frame(
    instances: Sequence[Sequence[Any] | Mapping[str, Any]], schema: FeatureSchema
) -> pd.DataFrame:
    """Validated instances as the frame the pipeline was fitted on (None is a missing value)."""
    return Columns.of_instances(instances, schema).frame()
