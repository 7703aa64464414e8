"""The APIs' input specs: BentoML's JSON parsing, errors named by feature, and Arrow bodies.

BentoML parses a JSON body straight into the spec with pydantic's compiled validators;
the spec then renames error locations (`locate_errors`). The batch API also reads Arrow
IPC streams (`arrow_bodies.py`) into the model's frame, which skips per-value objects.
"""

from __future__ import annotations

from typing import Any, ClassVar

import bentoml
from pydantic import ValidationError, create_model
from starlette.requests import Request

from model.schema import FeatureSchema

from .arrow_bodies import read_instances
from .instances import instances_field, locate_errors
from .media import ARROW_MEDIA_TYPE, media_type_of


class InstancesInput(bentoml.IODescriptor):
    """`{"instances": [...]}`; subclasses made by `instances_input` set the class variables."""

    feature_names: ClassVar[list[str]] = []
    feature_schema: ClassVar[FeatureSchema | None] = None
    max_rows: ClassVar[int] = 0
    reads_arrow: ClassVar[bool] = False

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> Any:
        schema = cls.feature_schema
        is_arrow = media_type_of(request.scope) == ARROW_MEDIA_TYPE
        if cls.reads_arrow and schema is not None and is_arrow:
            frame = read_instances(await request.body(), schema, cls.max_rows)
            return cls.model_construct(instances=frame)  # checked column by column above
        try:
            return await super().from_http_request(request, serde)
        except ValidationError as error:
            raise locate_errors(error, cls.feature_names) from None


def instances_input(
    schema: FeatureSchema | None, max_rows: int, *, reads_arrow: bool = False
) -> type[InstancesInput]:
    spec = create_model(
        "Input", __base__=InstancesInput, instances=(instances_field(schema, max_rows), ...)
    )
    spec.feature_names = schema.names if schema is not None else []
    spec.feature_schema = schema
    spec.max_rows = max_rows
    spec.reads_arrow = reads_arrow
    return spec
