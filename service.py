"""The BentoML service: model reference, request types, APIs and HTTP guards.

Logic lives in train/ and monitoring/; this file only wires them together.
"""

import gc
import logging

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitoring.access_log import AccessLog, configure_access_logger, quiet_client_errors
from monitoring.http import drift_routes
from monitoring.metrics import ModelMetrics, value_buckets
from monitoring.middleware import BatchCapture, PayloadCapture
from monitoring.payloads import PayloadLog
from monitoring.schedule import start_drift_schedule
from train import registry
from train.api_inputs import accepts_arrow, instances_input
from train.columnar import ARROW_STREAM
from train.guards import ApiKeyAuth, ErrorShapes, RequestLimits, RequireReady, parse_api_keys
from train.instances import PredictResponse, RowsEnvelope
from train.memory import start_heap_trimmer
from train.predictor import Instances, Predictor
from train.settings import settings

logger = logging.getLogger("service")

SETTINGS = settings()
API_PATHS = frozenset({"/predict", "/predict_batch"})
# Resolved without loading: a server whose model is missing or broken stays up, unready.
CHOICE = registry.choose_served(SETTINGS.model_name, SETTINGS.model_tag)
# `{"instances": [...]}` validated against the schema, errors named by feature;
# batches may also come as Arrow streams
PredictInput = instances_input(CHOICE.schema, SETTINGS.predict_max_rows)
BatchInput = instances_input(CHOICE.schema, SETTINGS.predict_batch_max_rows, reads_arrow=True)
PAYLOAD_LOG = PayloadLog(
    max_bytes=SETTINGS.payload_log_max_bytes,
    backups=SETTINGS.payload_log_backups,
    queue_size=SETTINGS.payload_log_queue,
)


async def model_info(_: Request) -> JSONResponse:
    service = bentoml.get_current_service()
    if service.predictor is None:
        return JSONResponse({"error": service.problem}, status_code=503)
    return JSONResponse(service.predictor.info())


info_app = Starlette(
    routes=[
        Route("/model", model_info, methods=["GET"]),
        *drift_routes(SETTINGS.drift_report_dir),
    ]
)


@bentoml.asgi_app(info_app, path="/")
@bentoml.service(
    workers=SETTINGS.workers,
    traffic={"timeout": 60},
    logging={"access": {"enabled": False}},  # replaced by monitoring.access_log
    # without an exporter, spans only cost time (TRACING=on to keep them)
    tracing={"excluded_urls": [] if SETTINGS.tracing else [".*"]},
)
class TabularModel:
    if CHOICE.problem is None:  # `bentoml serve` refuses to start on a missing model reference
        bento_model = bentoml.models.BentoModel(CHOICE.tag)

    def __init__(self) -> None:
        # BentoML looks each API up on the instance per request, rebuilding its signature
        # every time; bound once here, the lookups find them in the instance's dict.
        for name in ("predict", "predict_batch"):
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
        loaded = registry.load_stored(self.bento_model)
        if loaded.schema != CHOICE.schema:
            raise registry.RegistryError("its schema changed after the service started")
        self.metrics = ModelMetrics(loaded.tag, loaded.labels, value_buckets(loaded))
        predictor = Predictor(loaded, observe=self.metrics.observe)
        predictor.warm_up()
        self.predictor = predictor
        if SETTINGS.payload_log:
            PAYLOAD_LOG.start(SETTINGS.payload_log_dir, loaded.schema.names)
        self.capture_batch = BatchCapture(
            submit=PAYLOAD_LOG.submit,
            sample_rate=SETTINGS.payload_log_sample_rate if SETTINGS.payload_log else 0.0,
            max_rows=SETTINGS.payload_log_max_rows,
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
    # predicts will miss it, and 64 queued clients on 2 cores wait tens of ms (README).
    @bentoml.api(
        batchable=True,
        max_batch_size=SETTINGS.max_batch_size,
        max_latency_ms=SETTINGS.max_latency_ms,
        input_spec=PredictInput,
    )
    def predict(self, instances: Instances) -> RowsEnvelope:
        return self.predictor.predict_rows(instances)

    @bentoml.api(input_spec=BatchInput)
    def predict_batch(self, instances: Instances, ctx: bentoml.Context) -> PredictResponse:
        """Many instances in one call. Also Arrow: application/vnd.apache.arrow.stream."""
        frame = self.predictor.frame(instances)
        outputs = self.predictor.answer(frame, "/predict_batch")
        self.capture_batch(ctx.request.scope, frame, outputs)
        if accepts_arrow(ctx.request):
            return Response(self.predictor.arrow_response(outputs), media_type=ARROW_STREAM)
        return self.predictor.response(outputs)


# Outermost first: every request gets an id and an access-log line, then auth, limits,
# readiness, error shapes, and payload capture next to the APIs.
quiet_client_errors()
if SETTINGS.access_log:
    configure_access_logger()
    TabularModel.add_asgi_middleware(AccessLog)
API_KEYS = parse_api_keys(SETTINGS.api_keys.reveal())
if not API_KEYS:
    logger.warning("API_KEYS is empty: prediction and model routes accept any caller")
TabularModel.add_asgi_middleware(ApiKeyAuth, keys=API_KEYS)
TabularModel.add_asgi_middleware(
    RequestLimits,
    max_body_bytes=SETTINGS.max_body_bytes,
    max_in_flight=SETTINGS.max_in_flight,
    paths=API_PATHS,
    arrow_paths=frozenset({"/predict_batch"}),
)
TabularModel.add_asgi_middleware(
    RequireReady,
    paths=API_PATHS,
    problem=lambda: getattr(bentoml.get_current_service(), "problem", "starting"),
)
TabularModel.add_asgi_middleware(ErrorShapes, paths=API_PATHS)
TabularModel.add_asgi_middleware(
    PayloadCapture,
    paths=frozenset({"/predict"}),  # /predict_batch logs a sample of its rows (BatchCapture)
    submit=PAYLOAD_LOG.submit,
    sample_rate=SETTINGS.payload_log_sample_rate if SETTINGS.payload_log else 0.0,
)
