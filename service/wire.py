"""What happens before a request reaches ASGI: header limits and the request metrics' labels.

BentoML builds the uvicorn server itself and exposes neither a header size limit nor a header
read timeout, and its request metrics label each request with its raw path (404s included), so
/metrics grows with every new path a client tries. `OccamService.to_asgi` (the
`service_class` of `service.app:Occam`) fixes both where they arise, in the worker process:

- `BoundedHttpToolsProtocol`: uvicorn's httptools protocol with `serving.limits`
  `max_header_bytes` (request line plus headers; 431 and the connection closed) and
  `header_timeout_seconds` (a connection that has not sent a request's headers in time gets
  408 and is closed; this also bounds slowloris clients). uvicorn's "auto" protocol name is
  pointed at it before the server loads its config.
- `RouteMetricsMiddleware`: BentoML's request metrics middleware, fed the route template of
  each request (`/predict`, `/feedback`, `/model`, ...) and `other` for every path the
  service does not serve, so the series on /metrics are bounded.
- BentoML's OpenTelemetry middleware only when tracing samples (`tracing_enabled`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from typing import Any

import uvicorn.config
from _bentoml_impl.server.app import ServiceAppFactory
from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from occam.config import LimitsConfig
from service.openapi import DocumentedService

#: The `endpoint` label of every request to a path the service does not serve.
OTHER_ENDPOINT = "other"
_RAW_PATH = "occam.raw_path"
log = logging.getLogger("occam.service")


class _HeadersTooLarge(Exception):
    pass


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size limit and a header read timeout
    (class attributes, set by `install_protocol` from `serving.limits`)."""

    max_header_bytes = LimitsConfig().max_header_bytes
    header_timeout = LimitsConfig().header_timeout_seconds

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._too_large = False

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # idle or mid-headers
            log.info(
                "closed a connection that sent no complete request headers within %g s "
                "(serving.limits.header_timeout_seconds)",
                self.header_timeout,
            )
            self._refuse(408, b"Request Timeout", b"request headers too slow")

    def _refuse(self, status: int, phrase: bytes, text: bytes) -> None:
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, phrase, len(text), text)
        )
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._arm()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            self._too_large = True
            raise _HeadersTooLarge

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        # httptools reports an exception raised in a callback as a parser error.
        if self._too_large:
            log.info(
                "refused a request whose headers exceed %d bytes (serving.limits.max_header_bytes)",
                self.max_header_bytes,
            )
            self._refuse(431, b"Request Header Fields Too Large", b"request headers too large")
            return
        super().send_400_response(msg)


def install_protocol(limits: LimitsConfig) -> None:
    """Make uvicorn's "auto" HTTP protocol (what BentoML's workers use) the bounded one."""
    BoundedHttpToolsProtocol.max_header_bytes = limits.max_header_bytes
    BoundedHttpToolsProtocol.header_timeout = limits.header_timeout_seconds
    uvicorn.config.HTTP_PROTOCOLS["auto"] = f"{__name__}:BoundedHttpToolsProtocol"


class _RestorePath:
    """Hands the app below the metrics middleware the request's real path again."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        raw = scope.get(_RAW_PATH)
        if raw is not None:
            scope = {key: value for key, value in scope.items() if key != _RAW_PATH}
            scope["path"] = raw
        await self.app(scope, receive, send)


class RouteMetricsMiddleware(RunnerTrafficMetricsMiddleware):
    """BentoML's request metrics labelled by route template: `templates` are the served
    paths, `prefixes` the mounted folders (e.g. /static_content); anything else is
    `OTHER_ENDPOINT`."""

    def __init__(
        self, app: Any, *, templates: Iterable[str], prefixes: Iterable[str], **kwargs: Any
    ) -> None:
        restore: Any = _RestorePath(app)
        super().__init__(restore, **kwargs)
        self.templates = frozenset(templates)
        self.prefixes = tuple(prefix.rstrip("/") + "/" for prefix in prefixes)

    def template(self, path: str) -> str:
        """The metrics label of a request to `path`."""
        if path in self.templates:
            return path
        for prefix in self.prefixes:
            if path.startswith(prefix):
                return prefix.rstrip("/")
        return OTHER_ENDPOINT

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or path is None or path in self.templates:
            await super().__call__(scope, receive, send)
            return
        labelled = {**scope, "path": self.template(path), _RAW_PATH: path}
        await super().__call__(labelled, receive, send)


def tracing_enabled() -> bool:
    """Whether BentoML's tracing is on: `tracing.sample_rate` above 0 in BentoML's config
    (e.g. `BENTOML_CONFIG_OPTIONS="services.occam.tracing.sample_rate=1.0
    services.occam.tracing.exporter_type=otlp ..."`). BentoML's default is 0: no trace is
    kept, yet its OpenTelemetry middleware still made and ended a span for every request, a
    third of a single-row request's CPU (bench/results/serving_profile.md)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    rate = BentoMLContainer.config.tracing.sample_rate.get()
    return rate is not None and float(rate) > 0


class OccamAppFactory(ServiceAppFactory):
    """BentoML's app factory with `RouteMetricsMiddleware` in place of its own, and without
    the OpenTelemetry middleware unless tracing samples (`tracing_enabled`)."""

    @property
    def middlewares(self) -> list[Middleware]:
        templates: set[str] = {"/model"}  # mounted by service.app
        prefixes: set[str] = set()
        for route in self.routes:
            if isinstance(route, Route):
                templates.add(route.path)
            elif isinstance(route, Mount) and route.path not in ("", "/"):
                prefixes.add(route.path)
        out = []
        tracing = tracing_enabled()
        for middleware in super().middlewares:
            if middleware.cls is OpenTelemetryMiddleware and not tracing:
                continue  # it would make a span nobody records for every request
            if middleware.cls is RunnerTrafficMetricsMiddleware:
                factory: Any = RouteMetricsMiddleware
                middleware = Middleware(
                    factory,
                    *middleware.args,
                    templates=sorted(templates),
                    prefixes=sorted(prefixes),
                    **middleware.kwargs,
                )
            out.append(middleware)
        return out


class OccamService(DocumentedService):
    """The BentoML `Service` of Occam: its OpenAPI document (`DocumentedService`), the
    bounded HTTP protocol and the route-labelled request metrics."""

    def to_asgi(self, is_main: bool = True) -> Any:
        from occam.config import load_config
        from service.runtime import CONFIG_ENV

        limits = load_config(os.environ.get(CONFIG_ENV, "occam.yaml")).serving.limits
        install_protocol(limits)
        self.inject_config()
        return OccamAppFactory(self, is_main=is_main)()
