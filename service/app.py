"""The BentoML service: `bentoml serve service.app:Occam` (or `occam serve --config ...`).

Environment: `OCCAM_CONFIG` is the project config (default `./occam.yaml`); `OCCAM_MODEL_TAG`
pins a bundle tag, overriding `serving.model_tag`. Without a pin the newest bundle labelled
`stage=production` is served. The service refuses to start (the error names the reason) on a
bad config, on a bundle that is not promoted, or on one whose files fail their hash check.

Routes: POST /predict (scope `predict`), POST /feedback (scope `feedback`), GET /model;
BentoML adds /readyz (503 until the model is loaded and its self-test passed), /livez,
/healthz, /metrics (scope `metrics` when `serving.auth.metrics_scope`) and /docs.json.
See docs/service.md for keys, limits, the bodies, the log format and the metric names.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from occam.errors import Problem, Reason, error_body
from service.http import RequestGuard
from service.messages import (
    FeedbackItem,
    FeedbackRequest,
    FeedbackResponse,
    PredictRequest,
    PredictResponse,
)
from service.runtime import CONFIG_ENV, MODEL_TAG_ENV, Reply, Runtime, current_runtime
from service.wire import OccamService

__all__ = ["CONFIG_ENV", "MODEL_TAG_ENV", "Occam"]
log = logging.getLogger("occam.service")


async def model_view(_: Request) -> Response:
    """GET /model: the model document (see `Runtime.model_document`)."""
    runtime = current_runtime()
    if runtime is None:
        starting = Problem(None, None, Reason.MODEL_UNAVAILABLE, "the service is starting")
        return JSONResponse(error_body([starting]), status_code=503)
    return JSONResponse(runtime.model_document())


def _json(reply: Reply) -> Response:
    return JSONResponse(reply.body, status_code=reply.status, headers=dict(reply.headers))


class _QuietClientErrors(logging.Filter):
    """BentoML logs a traceback for every request body that fails pydantic; that is a client
    error (answered 400 and counted), not a server fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        return not (record.exc_info and isinstance(record.exc_info[1], ValidationError))


@bentoml.service(
    name="occam",
    workers=1,
    # BentoML's timeout middleware keeps one timer per request for `timeout` seconds: keep it
    # short. Answers take milliseconds; a 1,000-row request with scikit-learn well under 5 s.
    traffic={"timeout": 10},
    # The access log costs 5-14% throughput (bench); `serving.access_log: true` turns it on.
    logging={"access": {"enabled": False}},
    service_class=OccamService,
)
@bentoml.mount_asgi_app(Starlette(routes=[Route("/model", model_view, methods=["GET"])]), path="/")
class Occam:
    """Predicts with the promoted bundle, validates strictly, logs every row, takes feedback."""

    def __init__(self) -> None:
        logging.getLogger("bentoml._internal.server.http_app").addFilter(_QuietClientErrors())
        log.setLevel(logging.INFO)  # start-up lines (bundle, inference form) are worth seeing
        worker = bentoml.server_context.worker_index or 0
        self.runtime = Runtime.start(
            os.environ.get(CONFIG_ENV, "occam.yaml"),
            os.environ.get(MODEL_TAG_ENV) or None,
            worker=worker,
        )
        self.runtime.load_in_background()

    def __is_ready__(self) -> bool:
        return self.runtime.ready

    @bentoml.on_shutdown
    def flush_log(self) -> None:
        """Write out the queued log records before the process exits."""
        self.runtime.close()

    @bentoml.api(route="/predict", input_spec=PredictRequest, output_spec=PredictResponse)
    async def predict(self, instances: list[Any]) -> Response:
        """Classify 1 to serving.max_rows rows; each answer has an id for /feedback."""
        runtime = self.runtime
        if runtime.predictor is not None and runtime.predictor.kind == "sklearn":
            # scikit-learn takes milliseconds per call: keep the event loop free meanwhile.
            from anyio.to_thread import run_sync

            return _json(await run_sync(runtime.predict, instances))
        return _json(runtime.predict(instances))

    @bentoml.api(route="/feedback", input_spec=FeedbackRequest, output_spec=FeedbackResponse)
    async def feedback(self, labels: list[FeedbackItem]) -> Response:
        """Record the true label of earlier predictions (by id); 202 when logged."""
        return _json(self.runtime.feedback([(item.id, item.label) for item in labels]))


# `@bentoml.service` turned the class into a `bentoml.Service`; mypy still sees the class.
Occam.add_asgi_middleware(RequestGuard, runtime=current_runtime)  # type: ignore[attr-defined]
