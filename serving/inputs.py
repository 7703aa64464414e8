"""The APIs' input specs: JSON bodies in two passes, errors named by feature, Arrow bodies.

A JSON body is parsed straight into a spec by pydantic's compiled validators. Most bodies
hold plain numbers only, so a first pass reads numeric values as strict floats (no Python
code runs); a body it refuses (text, booleans, or an error) is read again under the full
rule of `model.values`, which accepts what it should and reports what it refuses, with
error locations renamed by feature (`locate_errors`). The batch API also reads Arrow IPC
streams (`arrow_bodies.py`) into the model's frame, which skips per-value objects.
"""

from __future__ import annotations

from typing import Any, ClassVar

import bentoml
from pydantic import BaseModel, ValidationError, create_model
from starlette.requests import Request

from model.schema import FeatureSchema

from .arrow_bodies import read_instances
from .instances import PlainNumber, instances_field, locate_errors
from .media import ARROW_MEDIA_TYPE, media_type_of


class InstancesInput(bentoml.IODescriptor):
    """`{"instances": [...]}`; subclasses made by `instances_input` set the class variables."""

    feature_names: ClassVar[list[str]] = []
    feature_schema: ClassVar[FeatureSchema | None] = None
    max_rows: ClassVar[int] = 0
    reads_arrow: ClassVar[bool] = False
    plain_spec: ClassVar[type[BaseModel] | None] = None

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> Any:
        schema = cls.feature_schema
        is_arrow = media_type_of(request.scope) == ARROW_MEDIA_TYPE
        if cls.reads_arrow and schema is not None and is_arrow:
            frame = read_instances(await request.body(), schema, cls.max_rows)
            return cls.model_construct(instances=frame)  # checked column by column above
        return cls.from_json(await request.body())

    @classmethod
    def from_json(cls, body: bytes) -> InstancesInput:
        """The spec of a JSON body: the plain pass when it suffices, else the full rule."""
        body = body or b"{}"
        if cls.plain_spec is not None:
            try:
                plain = cls.plain_spec.model_validate_json(body)
            except ValidationError:
                pass  # the full rule decides, and says what is wrong
            else:
                return cls.model_construct(instances=plain.instances)
        try:
            return cls.model_validate_json(body)
        except ValidationError as error:
            raise locate_errors(error, cls.feature_names) from None


def instances_input(
    schema: FeatureSchema | None, max_rows: int, *, reads_arrow: bool = False
) -> type[InstancesInput]:
    spec = create_model(
        "Input", __base__=InstancesInput, instances=(instances_field(schema, max_rows), ...)
    )
    if schema is not None:
        plain = instances_field(schema, max_rows, PlainNumber, fail_fast=True)
        spec.plain_spec = create_model(
            "PlainInput", __base__=InstancesInput, instances=(plain, ...)
        )
    spec.feature_names = schema.names if schema is not None else []
    spec.feature_schema = schema
    spec.max_rows = max_rows
    spec.reads_arrow = reads_arrow
    return spec
