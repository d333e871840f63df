"""An ASGI guard in front of the JSON API routes (/predict, /feedback).

- Refuses a body over `serving.max_body_bytes` with 413 before it is read (Content-Length), or
  as soon as it grows past the limit (chunked uploads).
- Refuses a content type other than JSON with 415 (never a pickle or any executable payload).
- Rewrites BentoML's own 4xx bodies (malformed JSON, a body of the wrong shape: pydantic
  errors) into Occam's error body `{"error", "problems": [{"row", "field", "reason",
  "message"}]}`, and counts and logs them like every other refused request.

Successful responses pass through untouched: the guard only inspects the status line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from service.problems import (
    BODY_TOO_LARGE,
    EMPTY_REQUEST,
    INVALID_REQUEST,
    INVALID_VALUE,
    MALFORMED_JSON,
    NOT_AN_OBJECT,
    TOO_MANY_ROWS,
    UNKNOWN_FEATURE,
    UNSUPPORTED_MEDIA_TYPE,
    WRONG_TYPE,
    Problem,
)
from service.runtime import Reply, Runtime

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
JSON_TYPES = (b"application/json", b"")


class RequestGuard:
    """Wraps the ASGI `app`; `runtime` returns the serving runtime (None before it exists)."""

    def __init__(
        self, app: Any, runtime: Callable[[], Runtime | None], paths: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.paths = frozenset(paths or ("/predict", "/feedback"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        runtime = self.runtime()
        if runtime is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media_type not in JSON_TYPES:
            problem = Problem(
                None,
                None,
                UNSUPPORTED_MEDIA_TYPE,
                f"content type {media_type.decode(errors='replace')!r} is not "
                "accepted; send application/json",
            )
            await _answer(send, runtime.reject([problem], 415))
            return
        limit = runtime.serving.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > limit:
                await _answer(send, runtime.reject([_too_large(limit)], 413))
                return
        else:  # chunked: read it here, up to the limit, then hand it on
            body = await _read_limited(receive, limit)
            if body is None:
                await _answer(send, runtime.reject([_too_large(limit)], 413))
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, _Rewriter(send, runtime))


class _Rewriter:
    """Passes responses through, except a 4xx without Occam's `problems`, which it rewrites."""

    def __init__(self, send: Send, runtime: Runtime) -> None:
        self.send = send
        self.runtime = runtime
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
        reply = self.runtime.reject(problems_from_bentoml(status, payload), status)
        await _answer(self.send, reply, self.start.get("headers", []))


def problems_from_bentoml(status: int, payload: Any) -> list[Problem]:
    """Occam problems for one of BentoML's own 4xx bodies (pydantic errors carry `detail`)."""
    details = payload.get("detail") if isinstance(payload, dict) else None
    if status == 413:
        return [Problem(None, None, BODY_TOO_LARGE, "the request body is too large")]
    if status == 415:
        return [Problem(None, None, UNSUPPORTED_MEDIA_TYPE, "send application/json")]
    if not isinstance(details, list) or not details:
        message = _error_text(payload) or f"the request was refused (HTTP {status})"
        return [Problem(None, None, INVALID_REQUEST, message)]
    return [_problem(detail) for detail in details if isinstance(detail, dict)] or [
        Problem(None, None, INVALID_REQUEST, _error_text(payload) or "invalid request")
    ]


def _problem(detail: dict[str, Any]) -> Problem:
    kind = str(detail.get("type", ""))
    loc = [part for part in detail.get("loc", []) if part != "body"]
    message = str(detail.get("msg", kind))
    row = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    field = str(loc[2]) if len(loc) > 2 else str(loc[0]) if len(loc) == 1 else None
    where = ".".join(str(part) for part in loc)
    text = f"{where}: {message}" if where else message
    if kind == "json_invalid":
        return Problem(None, None, MALFORMED_JSON, f"the body is not valid JSON: {message}")
    if kind == "too_short":
        return Problem(None, field, EMPTY_REQUEST, text)
    if kind == "too_long":
        return Problem(None, field, TOO_MANY_ROWS, text)
    if kind == "extra_forbidden":
        return Problem(row, field, UNKNOWN_FEATURE if row is not None else INVALID_REQUEST, text)
    if kind == "missing":
        return Problem(row, field, INVALID_REQUEST, text)
    if kind in ("dict_type", "model_type", "model_attributes_type") and len(loc) == 2:
        return Problem(row, None, NOT_AN_OBJECT, text)
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return Problem(row, field, WRONG_TYPE, text)
    return Problem(row, field, INVALID_VALUE, text)


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
        BODY_TOO_LARGE,
        f"the request body is larger than {limit} bytes (serving.max_body_bytes); "
        "send fewer rows per request",
    )


async def _read_limited(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(
    send: Send, reply: Reply, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(reply.body).encode()
    keep = [
        (k, v) for k, v in headers or [] if k.lower() not in (b"content-length", b"content-type")
    ]
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
