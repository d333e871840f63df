"""An ASGI guard in front of the JSON API routes (/predict, /feedback), /admin/* and /metrics.

In this order, before BentoML reads anything:
- API keys (`occam.auth`): 401 without a key or with an unknown one, 403 without the route's
  scope (`predict`, `feedback`, `admin` for /admin/reload and /admin/shadow; `metrics` for
  /metrics when `serving.auth.metrics_scope`).
- A rate limit per key on /feedback (token bucket, `serving.limits.feedback_per_second` and
  `feedback_burst`): 429 with Retry-After.
- A content type other than JSON gets 415 (never a pickle or any executable payload).
- The body is read here, bounded in size (`serving.max_body_bytes`: 413) and in time
  (`serving.limits.body_timeout_seconds`: 408, connection closed). A client that disconnects
  before its body has arrived is a client fault: counted with status 499 (as nginx does) and
  reason `client_disconnected`, logged at INFO, never a 500.
- The fast path (`serving.fast_path`, the default): the guard answers the request itself
  (`fast_reply`): the body is parsed by the same pydantic request spec as BentoML's endpoint
  parses it with, and handed to the same `Runtime` call, so answers and error bodies are the
  same; BentoML's IO descriptors, its service context and router are skipped (they took
  about as long as the prediction itself: bench/results/serving_profile.md). The request
  metrics middleware outside the guard still counts every request.
- Otherwise the request goes on to BentoML's `@bentoml.api` endpoint, and BentoML's own 4xx
  bodies (malformed JSON, a body of the wrong shape: pydantic errors) are rewritten into
  Occam's error body (`occam.errors.ErrorBody`), counted and logged like every other refused
  request.

Refusals before the body is read are counted but not written to the prediction log. Successful
responses pass through untouched: the guard only inspects the status line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic_core import PydanticSerializationError, to_json

from occam.auth import Scope, Verdict, token_from_headers
from occam.errors import FEEDBACK_OUTCOME, PREDICT_OUTCOME, Problem, Reason, quote
from service.runtime import Reply, Runtime

ASGIScope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
JSON_TYPES = (b"application/json", b"")
#: Which scope each guarded (method, path) needs.
ROUTE_SCOPES: dict[tuple[str, str], Scope] = {
    ("POST", "/predict"): "predict",
    ("POST", "/feedback"): "feedback",
    ("GET", "/metrics"): "metrics",
    ("POST", "/admin/reload"): "admin",
    ("POST", "/admin/shadow"): "admin",
}
log = logging.getLogger("occam.service")


class TokenBuckets:
    """One token bucket per key id: `rate` tokens a second, at most `burst` stored. The
    number of buckets is bounded by the number of configured keys (plus anonymous)."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take a token for `key`: 0 when allowed, else the seconds until one is available."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


class RequestGuard:
    """Wraps the ASGI `app`; `runtime` returns the serving runtime (None before it exists)."""

    def __init__(self, app: Any, runtime: Callable[[], Runtime | None]) -> None:
        self.app = app
        self.runtime = runtime
        self._buckets: TokenBuckets | None = None

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        needed = ROUTE_SCOPES.get((scope.get("method", ""), scope.get("path", "")))
        if scope["type"] != "http" or needed is None:
            await self.app(scope, receive, send)
            return
        runtime = self.runtime()
        if runtime is None:
            await self.app(scope, receive, send)
            return
        auth = runtime.serving.auth
        verdict = Verdict(None, None)
        if needed != "metrics" or auth.metrics_scope:
            verdict = runtime.keys.check(token_from_headers(scope["headers"]), needed)
            if verdict.problem is not None:
                await _answer(send, runtime.reject([verdict.problem], record=False))
                return
        if needed in ("metrics", "admin"):  # admin routes read their own small bodies
            await self.app(scope, receive, send)
            return
        if needed == "feedback":
            wait = self._bucket(runtime).take(verdict.key_id or "")
            if wait > 0:
                problem = Problem(
                    None,
                    None,
                    Reason.RATE_LIMITED,
                    f"too many feedback requests for this key; retry in {wait:.1f} s "
                    "(serving.limits.feedback_per_second)",
                )
                retry = {"retry-after": str(max(1, math.ceil(wait)))}
                await _answer(send, runtime.reject([problem], record=False, headers=retry))
                return
        headers = dict(scope["headers"])
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media_type not in JSON_TYPES:
            problem = Problem(
                None,
                None,
                Reason.UNSUPPORTED_MEDIA_TYPE,
                f"content type {quote(media_type.decode(errors='replace'))} is not "
                "accepted; send application/json",
            )
            await _answer(send, runtime.reject([problem]))
            return
        limit = runtime.serving.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _answer(send, runtime.reject([_too_large(limit)]))
            return
        outcome = await _read_body(receive, limit, runtime.serving.limits.body_timeout_seconds)
        if isinstance(outcome, Problem):
            if outcome.reason is Reason.CLIENT_DISCONNECTED:
                log.info("%s %s: %s", scope["method"], scope["path"], outcome.message)
            close = {"connection": "close"} if outcome.reason is Reason.BODY_TIMEOUT else None
            record = outcome.reason is Reason.BODY_TOO_LARGE
            await _answer(send, runtime.reject([outcome], record=record, headers=close))
            return
        rows = FEEDBACK_OUTCOME if needed == "feedback" else PREDICT_OUTCOME
        if runtime.serving.fast_path:
            await _answer(send, await fast_reply(runtime, needed, outcome))
            return
        await self.app(scope, _replay(outcome, receive), _Rewriter(send, runtime, rows))

    def _bucket(self, runtime: Runtime) -> TokenBuckets:
        if self._buckets is None:
            limits = runtime.serving.limits
            self._buckets = TokenBuckets(limits.feedback_per_second, limits.feedback_burst)
        return self._buckets


#: BentoML's body for an exception in an endpoint (500), kept for the fast path.
SERVER_ERROR = {"error": "An unexpected error has occurred, please check the server log."}


async def predict_reply(runtime: Runtime, instances: list[Any]) -> Reply:
    """`Runtime.predict`; in a worker thread when the predictor is scikit-learn's (it takes
    milliseconds per call: the event loop stays free meanwhile), else in the event loop."""
    predictor = runtime.predictor
    if predictor is not None and predictor.kind == "sklearn":
        from anyio.to_thread import run_sync

        return await run_sync(runtime.predict, instances)
    return runtime.predict(instances)


async def fast_reply(runtime: Runtime, route: Scope, body: bytes) -> Reply:
    """The answer to a POST /predict (`route` "predict") or /feedback ("feedback") whose
    `body` the guard has read: what BentoML's endpoint would answer, without its IO
    descriptors. The body is parsed by the same pydantic request spec BentoML parses it with
    (`service.messages`), a refusal of the spec becomes the same problems
    (`problems_from_bentoml` on BentoML's error payload), and the spec's value goes to the same
    `Runtime` call as the `@bentoml.api` endpoint's; an unexpected exception is logged and
    answered 500 with BentoML's body."""
    from pydantic import ValidationError

    from service.messages import FeedbackRequest, PredictRequest

    spec = PredictRequest if route == "predict" else FeedbackRequest
    try:
        request = spec.model_validate_json(body or b"{}")  # BentoML's JSON serde does this
    except ValidationError as exc:
        payload = {
            "error": f"{exc.error_count()} validation error for {exc.title}",
            "detail": exc.errors(include_context=False, include_input=False),
        }
        outcome = PREDICT_OUTCOME if route == "predict" else FEEDBACK_OUTCOME
        return runtime.reject(problems_from_bentoml(400, payload), 400, outcome=outcome)
    try:
        if isinstance(request, PredictRequest):
            return await predict_reply(runtime, request.instances)
        return runtime.feedback([(item.id, item.label) for item in request.labels])
    except Exception:
        log.exception("POST /%s failed", route)
        return Reply(500, SERVER_ERROR)


class _Rewriter:
    """Passes responses through, except a 4xx without Occam's `problems`, which it rewrites."""

    def __init__(self, send: Send, runtime: Runtime, outcome: str = PREDICT_OUTCOME) -> None:
        self.send = send
        self.runtime = runtime
        self.outcome = outcome
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
            self.start = message
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(self.chunks)
        status = self.start["status"]
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and "problems" in payload:  # already ours
            await self.send(self.start)
            await self.send({"type": "http.response.body", "body": body})
            return
        problems = problems_from_bentoml(status, payload)
        reply = self.runtime.reject(problems, status, outcome=self.outcome)
        await _answer(self.send, reply, self.start.get("headers", []))


def problems_from_bentoml(status: int, payload: Any) -> list[Problem]:
    """Occam problems for one of BentoML's own 4xx bodies (pydantic errors carry `detail`)."""
    details = payload.get("detail") if isinstance(payload, dict) else None
    if status == 413:
        return [Problem(None, None, Reason.BODY_TOO_LARGE, "the request body is too large")]
    if status == 415:
        return [Problem(None, None, Reason.UNSUPPORTED_MEDIA_TYPE, "send application/json")]
    if not isinstance(details, list) or not details:
        message = _error_text(payload) or f"the request was refused (HTTP {status})"
        return [Problem(None, None, Reason.INVALID_REQUEST, message)]
    return [_problem(detail) for detail in details if isinstance(detail, dict)] or [
        Problem(None, None, Reason.INVALID_REQUEST, _error_text(payload) or "invalid request")
    ]


def _problem(detail: dict[str, Any]) -> Problem:
    kind = str(detail.get("type", ""))
    loc = [part for part in detail.get("loc", []) if part != "body"]
    message = str(detail.get("msg", kind))
    row = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    field = str(loc[2]) if len(loc) > 2 else str(loc[0]) if len(loc) == 1 else None
    where = ".".join(quote(part, 40) if isinstance(part, str) else str(part) for part in loc)
    text = f"{where}: {message}" if where else message
    if kind == "json_invalid":
        return Problem(None, None, Reason.MALFORMED_JSON, f"the body is not valid JSON: {message}")
    if kind == "too_short":
        return Problem(None, field, Reason.EMPTY_REQUEST, text)
    if kind == "too_long":
        return Problem(None, field, Reason.TOO_MANY_ROWS, text)
    if kind == "extra_forbidden":
        return Problem(
            row, field, Reason.UNKNOWN_FEATURE if row is not None else Reason.INVALID_REQUEST, text
        )
    if kind == "missing":
        return Problem(row, field, Reason.INVALID_REQUEST, text)
    if kind in ("dict_type", "model_type", "model_attributes_type") and len(loc) == 2:
        return Problem(row, None, Reason.NOT_AN_OBJECT, text)
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return Problem(row, field, Reason.WRONG_TYPE, text)
    return Problem(row, field, Reason.INVALID_VALUE, text)


def _error_text(payload: Any) -> str | None:
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        payload = payload[0]  # BentoML 1.4 wraps a BentoMLException's body in a list
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return str(payload["error"])
    return None


def _too_large(limit: int) -> Problem:
    return Problem(
        None,
        None,
        Reason.BODY_TOO_LARGE,
        f"the request body is larger than {limit} bytes (serving.max_body_bytes); "
        "send fewer rows per request",
    )


async def _read_body(receive: Receive, limit: int, timeout: float) -> bytes | Problem:
    """The whole request body, or the problem: larger than `limit` bytes, not arrived within
    `timeout` seconds, or the client disconnected first. One deadline for the whole body
    (`asyncio.timeout_at`: a timer on this task, where `wait_for` made a task per message)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout_at(asyncio.get_running_loop().time() + timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return Problem(
                        None,
                        None,
                        Reason.CLIENT_DISCONNECTED,
                        f"the client disconnected after sending {size} bytes of its body",
                    )
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    return _too_large(limit)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        return Problem(
            None,
            None,
            Reason.BODY_TIMEOUT,
            f"the request body did not arrive within {timeout:g} s "
            "(serving.limits.body_timeout_seconds)",
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def encode(body: Any) -> bytes:
    """`body` as compact JSON in UTF-8, the bytes Starlette's JSONResponse gives up to the
    form of floats (the shortest text that reads back as the same number): pydantic-core's
    encoder, about 9x faster than the json module on an answer. Text Rust cannot hold (a lone
    surrogate quoted from a request) is escaped by the json module instead."""
    try:
        return to_json(body)
    except (PydanticSerializationError, ValueError):
        return json.dumps(body, separators=(",", ":")).encode()


async def _answer(
    send: Send, reply: Reply, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = encode(reply.body)
    keep = [
        (k, v) for k, v in headers or [] if k.lower() not in (b"content-length", b"content-type")
    ]
    keep.extend((k.encode(), v.encode()) for k, v in reply.headers.items())
    await send(
        {
            "type": "http.response.start",
            "status": reply.status,
            "headers": [
                *keep,
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
