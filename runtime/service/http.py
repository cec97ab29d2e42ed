"""The service's one HTTP layer: a table of :class:`~runtime.service.endpoints.Endpoint` rows
becomes a Starlette app.

For every row, and for every request to it, the layer

1. checks the row's ``access`` against the bearer token (:mod:`runtime.service.tokens`); a
   ``service`` row without an ``Authorization`` header is written by
   :data:`~runtime.service.tokens.ANONYMOUS` when the app allows anonymous service writes;
2. runs the handler, which reads its body and query through :mod:`runtime.service.endpoints`;
3. encodes the answer with the row's status, or turns the error into an answer through the one
   status table of :mod:`runtime.service.errors` (an unexpected exception is a 500 with a generic
   message and a log line with its traceback; an error with a ``retry_after`` adds
   ``Retry-After``);
4. counts the answer and its time under the route's template (:mod:`runtime.service.metrics`),
   and, with ``access_log``, logs it (logger ``runtime.service.access``, one line a request:
   ``CLIENT "METHOD PATH HTTP/VERSION" STATUS MILLISECONDS ms``).

The app also serves ``GET /openapi.json``, generated from the same table, and ``GET /metrics``.
A request that matches no route gets the same error body (404 naming ``/openapi.json``, or 405
with ``Allow``) and counts as route ``unmatched``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Lifespan

from runtime.errors import RegistryError
from runtime.service.endpoints import JSON, Access, Endpoint
from runtime.service.errors import UNMAPPED, error_body, status_of
from runtime.service.metrics import UNMATCHED, RequestMetrics, RouteMeter
from runtime.service.openapi import openapi_document
from runtime.service.tokens import ANONYMOUS, Tokens, check_admin
from runtime.service.types import ErrorBody

log = logging.getLogger(__name__)
access_log = logging.getLogger("runtime.service.access")

Answer = Callable[[Request], Awaitable[Response]]
Headers = Callable[[], "dict[str, str] | None"]

_ENCODER = msgspec.json.Encoder()
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def http_app(
    table: Sequence[Endpoint],
    tokens: Tokens,
    *,
    registry: CollectorRegistry | None = None,
    lifespan: Lifespan[Starlette] | None = None,
    headers: Headers | None = None,
    anonymous_services: bool = False,
    log_requests: bool = False,
) -> Starlette:
    """The app serving ``table``, ``/openapi.json`` and ``/metrics`` (from ``registry``, to which
    the per-route request metrics are added); ``tokens`` decide ``access`` (and
    ``anonymous_services`` whether a ``service`` row takes a write without a token);
    ``headers()``, when it returns any, are added to every routed answer (the stale marker);
    ``log_requests`` logs every answer."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = RequestMetrics(registry)
    document = openapi_document(table, anonymous_services=anonymous_services)
    own = _own_endpoints(_ENCODER.encode(document), registry)
    gate = _Gate(tokens, anonymous_services)
    routes = [
        Route(
            e.path,
            _answer(e, gate, metrics.route(e.method, e.path), headers, log_requests),
            methods=[e.method],
        )
        for e in [*table, *own]
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _unmatched(metrics, log_requests)},
    )


def respond(value: object, status: int = 200) -> Response:
    """A JSON response from a msgspec value."""
    return Response(_ENCODER.encode(value), status_code=status, media_type=JSON)


def _own_endpoints(document: bytes, registry: CollectorRegistry) -> list[Endpoint]:
    async def openapi(request: Request) -> Response:
        return Response(document, media_type=JSON)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    return [
        Endpoint("GET", "/openapi.json", openapi, "This document"),
        Endpoint("GET", "/metrics", metrics, "Prometheus metrics"),
    ]


def _answer(
    e: Endpoint, gate: _Gate, meter: RouteMeter, headers: Headers | None, log_requests: bool
) -> Answer:
    async def answer(request: Request) -> Response:
        started = time.perf_counter()
        try:
            gate.check(e.access, request)
            response = _encode(await e.handler(request), e.status)
        except RegistryError as exc:
            response = _refusal(e, exc)
        except Exception:
            log.exception("%s %s failed", e.method, e.path)
            message = f"internal error in {e.method} {e.path}; the server's log has the details"
            response = respond(ErrorBody(error=message), 500)
        extra = None if headers is None else headers()
        if extra:
            response.headers.update(extra)
        seconds = time.perf_counter() - started
        meter.record(response.status_code, seconds)
        if log_requests:
            _log_request(request, response.status_code, seconds)
        return response

    answer.__name__ = e.operation
    return answer


class _Gate:
    """Who may call a row: the tokens, and whether service writes may come without one."""

    def __init__(self, tokens: Tokens, anonymous_services: bool) -> None:
        self.tokens = tokens
        self.anonymous_services = anonymous_services

    def check(self, access: Access, request: Request) -> None:
        """Raise unless the request may call a row with ``access``; note its caller."""
        if access == "public":
            return
        header = request.headers.get("authorization")
        if access == "service" and header is None and self.anonymous_services:
            request.state.caller = ANONYMOUS
            return
        bound = self.tokens.caller(header)
        if access == "admin":
            check_admin(bound)
        request.state.caller = bound


def _log_request(request: Request, status: int, seconds: float) -> None:
    client = request.client
    who = f"{client.host}:{client.port}" if client else "-"
    query = f"?{request.url.query}" if request.url.query else ""
    version = request.scope.get("http_version", "1.1")
    access_log.info(
        '%s "%s %s%s HTTP/%s" %d %.1f ms',
        who, request.method, request.url.path, query, version, status, seconds * 1000,
    )  # fmt: skip


def _encode(value: object, status: int) -> Response:
    if isinstance(value, Response):
        return value
    if value is None:
        return Response(status_code=status)
    return respond(value, status)


def _refusal(e: Endpoint, exc: RegistryError) -> Response:
    status = status_of(exc)
    if status is None:
        log.error(
            "%s %s: %s has no row in the status table of runtime.service.errors; answered %d",
            e.method, e.path, type(exc).__name__, UNMAPPED, exc_info=exc,
        )  # fmt: skip
        status = UNMAPPED
    response = respond(error_body(exc), status)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    retry_after: int | None = getattr(exc, "retry_after", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _unmatched(
    metrics: RequestMetrics, log_requests: bool
) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def answer(request: Request, exc: Exception) -> Response:
        refused = cast(HTTPException, exc)  # registered for HTTPException: the router's 404, 405
        status = refused.status_code
        message = f"no route {_cut(request.url.path)!r}; GET /openapi.json lists the routes"
        response = respond(ErrorBody(error=message if status == 404 else refused.detail), status)
        response.headers.update(refused.headers or {})
        method = request.method if request.method in _METHODS else "other"
        metrics.requests.labels(method, UNMATCHED, str(status)).inc()
        if log_requests:
            _log_request(request, status, 0.0)
        return response

    return answer


def _cut(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
