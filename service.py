"""The BentoML service: the model reference, the APIs and the middleware stack.

Logic lives in serving/ (the request path) and model/ (schema, store, settings); this
file only wires them together.
"""

import gc
import logging
from typing import Any

import bentoml
from starlette.responses import Response

import model
from model import store
from model.settings import settings
from serving import body_budget, endpoint_labels, header_limit
from serving.access_log import configure_access_logger, quiet_client_errors, request_id_of
from serving.app import Layer, middleware_stack, route_paths
from serving.capture import BatchCapture
from serving.drift_schedule import start_drift_schedule
from serving.guards import DOC_PREFIXES, parse_api_keys
from serving.heap import start_heap_trimmer
from serving.inputs import instances_input
from serving.lone_requests import keep_lone_requests_unheld
from serving.media import ARROW_STREAM, accepts_arrow
from serving.metrics import ModelMetrics, value_buckets
from serving.payload_log import PayloadLog
from serving.responses import PredictResponse, RowsEnvelope
from serving.routes import info_app
from serving.runtime import Instances, Predictor
from serving.v2_infer import (
    ENDPOINT as V2_ENDPOINT,
)
from serving.v2_infer import (
    CallsInput,
    InferCall,
    RowAnswer,
    RowItem,
    RowsInput,
    V2Infer,
    answer_output,
    answer_response,
    answer_rows,
)
from serving.v2_protocol import ServedModel
from serving.v2_routes import TEMPLATES as V2_TEMPLATES
from serving.v2_routes import V2OpenAPI, v2_app

logger = logging.getLogger("service")

SETTINGS = body_budget.fitted(settings())
# a lone request is not held for a batch that is not coming, before or after a burst
keep_lone_requests_unheld()
SERVING = SETTINGS.serving
# Resolved without loading: a server whose model is missing or broken stays up, unready.
CHOICE = store.choose_served(SETTINGS.model.name, SETTINGS.model.tag)
# `{"instances": [...]}` validated against the schema, errors named by feature;
# batches may also come as Arrow streams
PredictInput = instances_input(
    CHOICE.schema, SERVING.predict_max_rows, max_body_bytes=SERVING.max_body_bytes
)
BatchInput = instances_input(
    CHOICE.schema,
    SERVING.predict_batch_max_rows,
    reads_arrow=True,
    max_body_bytes=SERVING.max_body_bytes,
)
PAYLOAD_LOG = PayloadLog(
    max_bytes=SETTINGS.payload_log.max_bytes,
    max_line_bytes=SETTINGS.payload_log.max_line_bytes,
    backups=SETTINGS.payload_log.backups,
    queue_size=SETTINGS.payload_log.queue_size,
)


def model_info() -> dict[str, Any] | str:
    service = bentoml.get_current_service()
    return service.problem if service.predictor is None else service.predictor.info()


INFO_APP = info_app(model_info, SETTINGS.drift.report_dir)
# The Open Inference Protocol (v2): the served model under its store name and version;
# infers of up to BATCH_MAX_SIZE rows go through the adaptive batcher, larger ones (up to
# PREDICT_BATCH_MAX_ROWS) to one model call on the whole tensor (docs/open-inference.md).
V2_MODEL = ServedModel.of(CHOICE.tag, CHOICE.schema)
V2_VECTORISED = f"{V2_MODEL.infer_paths[0]}/vectorised"  # reached through V2Infer only
V2Answer = answer_output(V2_MODEL)
V2_APP = v2_app(V2_MODEL, lambda: _problem(), model.__version__)


@bentoml.asgi_app(V2_APP, path="/", name="v2")
@bentoml.asgi_app(INFO_APP, path="/")
@bentoml.service(
    workers=SERVING.workers,
    traffic={"timeout": 60},
    logging={"access": {"enabled": False}},  # replaced by serving.access_log
    # without an exporter, spans only cost time (TRACING=on to keep them)
    tracing={"excluded_urls": [] if SERVING.tracing else [".*"]},
)
class TabularModel:
    if CHOICE.problem is None:  # `bentoml serve` refuses to start on a missing model reference
        bento_model = bentoml.models.BentoModel(CHOICE.tag)

    def __init__(self) -> None:
        # BentoML looks each API up on the instance per request, rebuilding its signature
        # every time; bound once here, the lookups find them in the instance's dict.
        for name in ("predict", "predict_batch", "v2_infer", "v2_infer_vectorised"):
            setattr(self, name, getattr(self, name))
        self.predictor: Predictor | None = None
        self.problem = CHOICE.problem
        self.drift = None
        if self.problem is None:
            try:
                self._load()
            except Exception as exc:  # any failure to load means: never serve predictions
                self.problem = f"model {CHOICE.tag} cannot be served: {exc}"
        if self.problem is not None:
            logger.error("%s; /readyz answers 503 and predictions 503 until fixed", self.problem)
        # Everything loaded so far lives as long as the process: keep the garbage collector
        # from scanning it again and again (full collections were the p99 latency spikes).
        gc.collect()
        gc.freeze()
        # large requests leave freed memory in the C heap: give it back once idle
        self.heap_trimmer = start_heap_trimmer()

    def _load(self) -> None:
        loaded = store.load_stored(self.bento_model, SETTINGS.model.runtime)
        if loaded.schema != CHOICE.schema:
            raise store.RegistryError("its schema changed after the service started")
        self.metrics = ModelMetrics(loaded.tag, loaded.labels, value_buckets(loaded))
        predictor = Predictor(loaded, observe=self.metrics.observe)
        predictor.warm_up()
        self.predictor = predictor
        if SETTINGS.payload_log.enabled:
            PAYLOAD_LOG.start(SETTINGS.payload_log.directory, loaded.schema.names)
        self.capture_batch = BatchCapture(
            submit=PAYLOAD_LOG.submit,
            sample_rate=SETTINGS.payload_log.effective_sample_rate,
            max_rows=SETTINGS.payload_log.max_rows,
            model=loaded.tag,
        )
        # the drift job runs in the first worker only, when DRIFT_INTERVAL_MINUTES is set
        if bentoml.server_context.worker_index in (None, 1):
            self.drift = start_drift_schedule(SETTINGS, loaded.tag)

    @bentoml.on_shutdown
    def stop_background_work(self) -> None:
        if self.drift is not None:
            self.drift.shutdown()
        if self.heap_trimmer is not None:
            self.heap_trimmer.stop()
        PAYLOAD_LOG.close()

    def __is_ready__(self) -> bool:
        return self.predictor is not None and self.predictor.ready

    # Concurrent requests are merged into one model call of up to BATCH_MAX_SIZE rows.
    # The latency budget is wide on purpose: the batcher answers 503 to requests it
    # predicts will miss it, and 64 queued clients on 2 cores wait tens of ms (docs/operations.md).
    @bentoml.api(
        batchable=True,
        max_batch_size=SERVING.max_batch_size,
        max_latency_ms=SERVING.max_latency_ms,
        input_spec=PredictInput,
    )
    def predict(self, instances: Instances) -> RowsEnvelope:
        return self.predictor.predict_rows(instances)

    @bentoml.api(input_spec=BatchInput)
    def predict_batch(self, instances: Instances, ctx: bentoml.Context) -> PredictResponse:
        """Many instances in one call. Also Arrow: application/vnd.apache.arrow.stream."""
        columns = self.predictor.columns(instances)
        outputs = self.predictor.answer(columns, "/predict_batch")
        self.capture_batch(ctx.request.scope, columns, outputs)
        if accepts_arrow(ctx.request):
            return Response(self.predictor.arrow_response(outputs), media_type=ARROW_STREAM)
        return Response(self.predictor.json_response(outputs), media_type="application/json")

    @bentoml.api(
        batchable=True,
        max_batch_size=SERVING.max_batch_size,
        max_latency_ms=SERVING.max_latency_ms,
        route=V2_MODEL.infer_paths[0],
        input_spec=RowsInput,
        output_spec=V2Answer,
    )
    def v2_infer(self, rows: list[RowItem]) -> list[RowAnswer]:
        """Open Inference Protocol (v2) infer; see docs/open-inference.md."""
        return answer_rows(lambda values: self.predictor.answer(values, V2_ENDPOINT), rows)

    @bentoml.api(route=V2_VECTORISED, input_spec=CallsInput, output_spec=V2Answer)
    def v2_infer_vectorised(self, call: InferCall, ctx: bentoml.Context) -> Response:
        frame = call.frame()
        outputs = self.predictor.answer(frame, V2_ENDPOINT)
        call.answer = outputs
        self.capture_batch.sample(request_id_of(ctx.request.scope), V2_ENDPOINT, frame, outputs)
        return answer_response(V2_MODEL, call, outputs)


def _problem() -> str | None:
    return getattr(bentoml.get_current_service(), "problem", "starting")


quiet_client_errors()
if SERVING.access_log:
    configure_access_logger()
if not parse_api_keys(SERVING.api_keys.reveal()):
    logger.warning("API_KEYS is empty: prediction and model routes accept any caller")
V2_LAYERS = [
    Layer(
        V2Infer,
        {
            "served": V2_MODEL,
            "max_rows": SERVING.predict_batch_max_rows,
            "batch_rows": SERVING.max_batch_size,
            "vectorised_path": V2_VECTORISED,
            "submit": PAYLOAD_LOG.submit,
            "sample_rate": SETTINGS.payload_log.effective_sample_rate,
        },
    ),
    Layer(V2OpenAPI, {"served": V2_MODEL, "vectorised_path": V2_VECTORISED}),
]
for layer in middleware_stack(
    SETTINGS,
    problem=_problem,
    submit=PAYLOAD_LOG.submit,
    v2_paths=frozenset(V2_MODEL.infer_paths),
    v2_layers=V2_LAYERS,
):
    TabularModel.add_asgi_middleware(layer.middleware, **layer.options)
header_limit.install(SERVING.max_header_bytes)
endpoint_labels.install(route_paths(INFO_APP), DOC_PREFIXES, V2_TEMPLATES)
