"""The BentoML service: model reference, request types and APIs. Logic lives in train/."""

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from monitoring.http import drift_routes
from monitoring.metrics import ModelMetrics, value_buckets
from monitoring.middleware import PayloadCapture
from monitoring.payloads import PayloadLog
from monitoring.schedule import start_drift_schedule
from train import registry
from train.instances import PredictResponse, RowsEnvelope, instances_field
from train.predictor import Predictor
from train.settings import settings

SETTINGS = settings()
MODEL_TAG = registry.resolve_tag(SETTINGS.model_name, SETTINGS.model_tag)
SCHEMA = registry.load_schema(MODEL_TAG)
Instances = instances_field(SCHEMA, SETTINGS.predict_max_rows)
BatchInstances = instances_field(SCHEMA, SETTINGS.predict_batch_max_rows)
PAYLOAD_LOG = PayloadLog(
    max_bytes=SETTINGS.payload_log_max_bytes,
    backups=SETTINGS.payload_log_backups,
    queue_size=SETTINGS.payload_log_queue,
)


async def model_info(_: Request) -> JSONResponse:
    return JSONResponse(bentoml.get_current_service().predictor.info())


info_app = Starlette(
    routes=[
        Route("/model", model_info, methods=["GET"]),
        *drift_routes(SETTINGS.drift_report_dir),
    ]
)


@bentoml.asgi_app(info_app, path="/")
@bentoml.service(workers=SETTINGS.workers, traffic={"timeout": 60})
class TabularModel:
    bento_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        loaded = registry.load_stored(self.bento_model)
        self.metrics = ModelMetrics(loaded.tag, loaded.labels, value_buckets(loaded))
        self.predictor = Predictor(loaded, observe=self.metrics.observe)
        self.predictor.warm_up()
        if SETTINGS.payload_log:
            PAYLOAD_LOG.start(SETTINGS.payload_log_dir, SCHEMA.names)
        # the drift job runs in the first worker only, when DRIFT_INTERVAL_MINUTES is set
        first_worker = bentoml.server_context.worker_index in (None, 1)
        self.drift = start_drift_schedule(SETTINGS, loaded.tag) if first_worker else None

    @bentoml.on_shutdown
    def stop_background_work(self) -> None:
        if self.drift is not None:
            self.drift.shutdown()
        PAYLOAD_LOG.close()

    def __is_ready__(self) -> bool:
        return self.predictor.ready

    # Concurrent requests are merged into one model call of up to BATCH_MAX_SIZE rows.
    # The latency budget is wide on purpose: the batcher answers 503 to requests it
    # predicts will miss it, and 64 queued clients on 2 cores wait ~90 ms (README).
    @bentoml.api(
        batchable=True,
        max_batch_size=SETTINGS.max_batch_size,
        max_latency_ms=SETTINGS.max_latency_ms,
    )
    def predict(self, instances: Instances) -> RowsEnvelope:
        return self.predictor.predict_rows(instances)

    @bentoml.api
    def predict_batch(self, instances: BatchInstances) -> PredictResponse:
        return self.predictor.predict(instances)


TabularModel.add_asgi_middleware(
    PayloadCapture,
    paths=frozenset({"/predict", "/predict_batch"}),
    submit=PAYLOAD_LOG.submit,
    sample_rate=SETTINGS.payload_log_sample_rate if SETTINGS.payload_log else 0.0,
)
