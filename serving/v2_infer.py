"""The v2 infer route: read once, then the adaptive batcher or one vectorised model call.

`V2Infer` (ASGI middleware, inside the request limits and the readiness check) reads the
served model's infer requests, `/v2/models/{name}/infer` and its `/versions/{version}`
form, into a checked `InferCall`, or answers `{"error"}` at once. A call of at most
`batch_rows` rows goes to the batchable API (`rows_input`: one item per row), so BentoML's
adaptive batcher merges it with others; a larger one goes to a plain API at
`vectorised_path`, which predicts on the whole frame in one model call. Both answer with
`write_answer`. Error bodies BentoML writes are given the `{"error": "..."}` shape, the
only one v2 clients read. Answered small calls are logged like /predict's instances,
large ones as row samples like /predict_batch's.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple

import anyio.to_thread
import bentoml
import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.outputs import Outputs

from .access_log import request_id_of
from .errors import RETRY_AFTER_SECONDS, respond
from .inputs import THREAD_BODY_BYTES
from .payload_log import Exchange
from .v2_protocol import (
    HEADER_LENGTH,
    InferCall,
    InferenceRequest,
    ServedModel,
    V2Error,
    predict_shaped,
    read_call,
    write_answer,
)

CALL_KEY = "tabular_model.v2_call"
# the label of v2 infers on the model's metrics: the route, not the client's path
ENDPOINT = "/v2/models/{model_name}/infer"


class RowItem(NamedTuple):
    """One row of a call, as the batcher carries it: the call goes along to the answer."""

    call: InferCall
    values: tuple[Any, ...]


class RowAnswer(NamedTuple):
    call: InferCall
    prediction: Any
    probabilities: np.ndarray | None


def answer_rows(predict: Callable[[list[tuple[Any, ...]]], Outputs], items: Sequence[RowItem]):
    """The batch function's work: one model call for the rows of every merged call."""
    outputs = predict([item.values for item in items])
    probabilities = outputs.probabilities
    return [
        RowAnswer(item.call, prediction, None if probabilities is None else probabilities[index])
        for index, (item, prediction) in enumerate(zip(items, outputs.predictions, strict=True))
    ]


def answered(rows: Sequence[RowAnswer], classes: list[str]) -> Outputs:
    """One call's rows, handed back by the batcher, as that call's outputs."""
    predictions = np.array([row.prediction for row in rows])
    first = rows[0].probabilities
    probabilities = None if first is None else np.array([row.probabilities for row in rows])
    return Outputs(predictions, probabilities, classes)


class CallInput(bentoml.IODescriptor):
    """The call `V2Infer` read (subclasses made by `call_input` and `rows_input`)."""

    # the request's documented shape: what /docs.json shows and schemathesis sends
    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return InferenceRequest.model_json_schema(*args, **kwargs)

    @classmethod
    def _call(cls, request: Request) -> InferCall:
        call = request.scope.get(CALL_KEY)
        if not isinstance(call, InferCall):  # V2Infer reads every request to these routes
            raise bentoml.exceptions.NotFound("no such route")
        return call


class CallsInput(CallInput):
    call: Any = None

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> Any:
        return cls.model_construct(call=cls._call(request))


class RowsInput(CallInput):
    rows: list[Any]

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> Any:
        call = cls._call(request)
        return cls.model_construct(rows=[RowItem(call, row) for row in call.instances()])


class AnswerOutput(bentoml.IODescriptor):
    """The batcher's rows for one call, written as its v2 answer."""

    served: ClassVar[ServedModel | None] = None
    classes: ClassVar[list[str]] = []

    @classmethod
    async def to_http_response(cls, obj: Any, serde: Any) -> Response:
        assert cls.served is not None
        call = obj[0].call
        call.answer = answered(obj, cls.classes)
        return answer_response(cls.served, call, call.answer)


def answer_response(served: ServedModel, call: InferCall, outputs: Outputs) -> Response:
    body, headers = write_answer(served, call, outputs)
    return Response(body, headers=headers)


def answer_output(served: ServedModel) -> type[AnswerOutput]:
    schema = served.schema
    classes = [str(c) for c in (schema.classes or [])] if schema is not None else []
    return type("V2Answer", (AnswerOutput,), {"served": served, "classes": classes})


class V2Infer:
    """Reads the served model's v2 infer requests and routes them (see the module)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        served: ServedModel,
        max_rows: int,
        batch_rows: int,
        vectorised_path: str,
        submit: Callable[[Exchange], object],
        sample_rate: float,
    ) -> None:
        self.app = app
        self.served = served
        self.paths = frozenset(served.infer_paths)
        self.batched_path = served.infer_paths[0]
        self.vectorised_path = vectorised_path
        self.max_rows = max_rows
        self.batch_rows = batch_rows
        self.submit = submit
        self.sample_rate = sample_rate
        self.tag = f"{served.name}:{served.version}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == self.vectorised_path:
            await respond(send, 404, {"error": f"no such route: {path}"})
            return
        if path not in self.paths:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await respond(send, 405, {"error": "infer takes POST"})
            return
        try:
            call = await self._read(scope, receive)
        except V2Error as error:
            await respond(send, error.status, {"error": error.message})
            return
        small = call.rows <= self.batch_rows
        inner = {
            **scope,
            CALL_KEY: call,
            "path": self.batched_path if small else self.vectorised_path,
        }
        status = await _shaped(self.app, inner, send)
        if small and 200 <= status < 300 and call.answer is not None:
            self._log(scope, call)

    async def _read(self, scope: Scope, receive: Receive) -> InferCall:
        headers = dict(scope.get("headers", []))
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding != b"identity":
            raise V2Error(400, f"Content-Encoding {encoding.decode(errors='replace')} is not taken")
        body = await _body(receive)
        raw_length = headers.get(HEADER_LENGTH.encode())
        length = None if raw_length is None else raw_length.decode(errors="replace")
        if self.served.schema is None:
            raise V2Error(503, "not serving: no model loaded")
        if len(body) > THREAD_BODY_BYTES:
            return await anyio.to_thread.run_sync(
                read_call, body, length, self.served, self.max_rows
            )
        return read_call(body, length, self.served, self.max_rows)

    def _log(self, scope: Scope, call: InferCall) -> None:
        if self.sample_rate <= 0 or random.random() >= self.sample_rate:
            return
        assert call.answer is not None
        self.submit(
            Exchange(
                timestamp=time.time(),
                request_id=request_id_of(scope) or uuid.uuid4().hex,
                endpoint=ENDPOINT,
                instances=call.instances(),
                response_body=predict_shaped(self.tag, call.answer),
            )
        )


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _shaped(app: ASGIApp, scope: Scope, send: Send) -> int:
    """Runs the API, its error bodies given the `{"error": "..."}` shape; the status."""
    start: Message | None = None
    chunks: list[bytes] = []
    status = 0

    async def receive() -> Message:  # the body was read: the API reads the call instead
        return {"type": "http.request", "body": b"", "more_body": False}

    async def reshape(message: Message) -> None:
        nonlocal start, status
        if message["type"] == "http.response.start":
            status = message["status"]
            if status < 400:
                await send(message)
            else:
                start = message
            return
        if start is None:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            await respond(send, status, *_error_body(status, b"".join(chunks)))

    await app(scope, receive, reshape)
    return status


def _error_body(status: int, raw: bytes) -> tuple[dict[str, str], list[tuple[bytes, bytes]]]:
    if status == 503:
        message = "overloaded: the model cannot answer in time; retry later"
        return {"error": message}, [(b"retry-after", RETRY_AFTER_SECONDS.encode())]
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = raw.decode("utf-8", "replace")
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return {"error": body["error"]}, []
    return {"error": str(body) or f"HTTP {status}"}, []
