"""The BentoML service: `bentoml serve service.app:Occam` (or `occam serve --config ...`).

Environment: `OCCAM_CONFIG` is the project config (default `./occam.yaml`); `OCCAM_MODEL_TAG`
pins a bundle tag, overriding `serving.model_tag`. Without a pin the newest bundle labelled
`stage=production` is served. The service refuses to start (the error names the reason) on a
bad config, on a bundle that is not promoted, or on one whose files fail their hash check.

Without a pin, each worker also swaps in a newly promoted bundle without a restart (verified
and self-tested first; `service.runtime.Runtime.reload`) every serving.reload_interval_seconds
and on POST /admin/reload.

Routes: POST /predict (scope `predict`), POST /feedback (scope `feedback`), GET /model (the
served version, any shadow, the recent audit log), POST /admin/reload and POST /admin/shadow
(scope `admin`);
BentoML adds /readyz (503 until the model is loaded and its self-test passed), /livez,
/healthz, /metrics (scope `metrics` when `serving.auth.metrics_scope`) and /docs.json.
See docs/service.md for keys, limits, the bodies, the log format and the metric names.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, cast

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from occam.errors import Problem, Reason, error_body
from service.http import RequestGuard, predict_reply
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
        return _starting()
    return JSONResponse(runtime.model_document())


def _starting() -> Response:
    starting = Problem(None, None, Reason.MODEL_UNAVAILABLE, "the service is starting")
    return JSONResponse(error_body([starting]), status_code=503)


async def reload_view(_: Request) -> Response:
    """POST /admin/reload (scope `admin`): look for a newly promoted bundle now and swap it in
    when it passes verification and its self-test. 200 with `outcome` (swapped, unchanged,
    refused, pinned, error), `model_version` (served after the call), `previous_version` and
    `detail`. Each worker answers for itself; the others catch up within
    serving.reload_interval_seconds."""
    runtime = current_runtime()
    if runtime is None:
        return _starting()
    from anyio.to_thread import run_sync

    result = await run_sync(runtime.reload, "admin")
    return JSONResponse(result.to_dict())


#: Largest body of POST /admin/shadow (bytes).
ADMIN_BODY_BYTES = 4096


async def shadow_view(request: Request) -> Response:
    """POST /admin/shadow (scope `admin`), body ``{"tag": "name:version", "rows": N}`` (rows
    optional: serving.shadow_rows): score the next N rows of this worker with that bundle in
    shadow. 200 with `outcome` `swapped` (started) or `refused` and the reason in `detail`."""
    runtime = current_runtime()
    if runtime is None:
        return _starting()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > ADMIN_BODY_BYTES:
            too_large = f"the body exceeds {ADMIN_BODY_BYTES} bytes"
            problem = Problem(None, None, Reason.BODY_TOO_LARGE, too_large)
            return JSONResponse(error_body([problem]), status_code=413)
    try:
        raw = json.loads(body or b"{}")
    except ValueError as exc:
        problem = Problem(None, None, Reason.MALFORMED_JSON, f"the body is not JSON: {exc}")
        return JSONResponse(error_body([problem]), status_code=400)
    tag = raw.get("tag") if isinstance(raw, dict) else None
    rows = raw.get("rows", runtime.serving.shadow_rows) if isinstance(raw, dict) else None
    problems = []
    if not isinstance(tag, str) or ":" not in tag or len(tag) > 200:
        problems.append(("tag", "must be a model tag name:version (at most 200 characters)"))
    if type(rows) is not int or not 1 <= rows <= 10_000_000:
        problems.append(("rows", "must be an integer from 1 to 10000000"))
    if problems:
        found = [Problem(None, f, Reason.INVALID_VALUE, f"{f} {why}") for f, why in problems]
        return JSONResponse(error_body(found), status_code=400)
    from anyio.to_thread import run_sync

    name, count = cast(str, tag), cast(int, rows)  # checked above
    result = await run_sync(lambda: runtime.start_shadow(name, count))
    return JSONResponse(result.to_dict())


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
@bentoml.mount_asgi_app(
    Starlette(
        routes=[
            Route("/model", model_view, methods=["GET"]),
            Route("/admin/reload", reload_view, methods=["POST"]),
            Route("/admin/shadow", shadow_view, methods=["POST"]),
        ]
    ),
    path="/",
)
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

    # With serving.fast_path (the default) the guard answers POST /predict and /feedback itself
    # (`service.http.fast_reply`: the same request specs and `Runtime` calls); these endpoints
    # declare the API to BentoML (build, /docs.json, clients) and serve when it is off.
    @bentoml.api(route="/predict", input_spec=PredictRequest, output_spec=PredictResponse)
    async def predict(self, instances: list[Any]) -> Response:
        """Classify 1 to serving.max_rows rows; each answer has an id for /feedback."""
        return _json(await predict_reply(self.runtime, instances))

    @bentoml.api(route="/feedback", input_spec=FeedbackRequest, output_spec=FeedbackResponse)
    async def feedback(self, labels: list[FeedbackItem]) -> Response:
        """Record the true label of earlier predictions (by id); 202 when logged."""
        return _json(self.runtime.feedback([(item.id, item.label) for item in labels]))


# `@bentoml.service` turned the class into a `bentoml.Service`; mypy still sees the class.
Occam.add_asgi_middleware(RequestGuard, runtime=current_runtime)  # type: ignore[attr-defined]
