"""The runtime service: a Starlette app over the hive registry, scheduler and service registry.

:func:`build_runtime` assembles the parts (one SQLite catalog, the in-memory registries, the
health checker); :func:`create_app` wires them to HTTP. Every endpoint is one row of
:func:`endpoints`, which gives the route, the msgspec types of its body and answer, and whether
it needs a token; ``/openapi.json`` is generated from the same rows, so the document cannot
drift from the routes.

Bodies are read with a size limit and decoded into msgspec types: malformed JSON is a 400,
a body of the wrong shape a 422, each naming the bad field (``{"error": ..., "field":
"$.workers[0].state"}``). Writes need ``Authorization: Bearer <token>``; a token bound to a hive
id may only speak for that hive. Other routes (alias promotion) plug in through
``create_app(..., extra_routes=[...])`` and call :func:`authorize` for the same token check.

Services belong to the token that registered them. A service registered with a token bound to
a hive belongs to that hive (``owner``, stored with the service in the catalog, so it survives a
restart); one registered with a token bound to no hive (an admin token) belongs to no hive. Only
a token bound to the owning hive, or an admin token, may overwrite it (``POST /services`` again),
``PUT`` it, send its heartbeat or ``DELETE`` it; an admin's change keeps the owner. No token or
an unknown one is a 401, a token of another hive a 403 naming the owner. The name is free again
once the service is removed (``DELETE``, or five minutes without a heartbeat). Every service
write learns its writer from :func:`service_writer` and the registry applies the one rule,
:func:`runtime.service.services.check_writer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from runtime.errors import ImmutableConflict, PreconditionFailed, RegistryError
from runtime.names import is_name, name_problem
from runtime.service.catalog import Catalog
from runtime.service.hives import (
    DEFAULT_TTL,
    HiveRegistry,
    UnknownHive,
    UnknownWorker,
    WorkerConflict,
)
from runtime.service.scheduler import NoWorkerAvailable, Scheduler, ScheduleRequestError
from runtime.service.services import (
    HealthChecker,
    Probe,
    ServiceNameMismatch,
    ServiceOwned,
    ServiceRegistry,
    UnknownService,
)
from runtime.service.types import (
    Accepted,
    ErrorBody,
    Health,
    HiveHeartbeat,
    HiveList,
    HiveView,
    ScheduleAnswer,
    ServiceHealth,
    ServiceHeartbeat,
    ServiceList,
    ServiceRegistration,
    ServiceView,
    Stats,
    WorkerHeartbeat,
    WorkerList,
    WorkerView,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BODY_BYTES = 256 * 1024
DEFAULT_DB = Path("registry-runtime.db")
FLUSH_INTERVAL = 5.0
JSON = "application/json"


class Unauthorized(RegistryError, PermissionError):
    """Raised when a write carries no bearer token, or one the server does not know (401)."""

    status = 401


class Forbidden(RegistryError, PermissionError):
    """Raised when a token bound to one hive is used to speak for another (403)."""

    status = 403


class BodyTooLarge(RegistryError, ValueError):
    """Raised when a request body exceeds the server's size limit (413)."""


class BadRequest(RegistryError, ValueError):
    """Raised when a body is not JSON or a query parameter is invalid (400); names the field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TokenFileError(RegistryError, ValueError):
    """Raised when a token file cannot be read or has a malformed line."""


# -- tokens -----------------------------------------------------------------------------------


class Tokens:
    """Bearer tokens, each optionally bound to one hive id. Stored as SHA-256 digests."""

    def __init__(self, tokens: Mapping[str, str | None]) -> None:
        self._bound = {_digest(t): hive for t, hive in tokens.items()}

    @classmethod
    def from_file(cls, path: Path) -> Tokens:
        """Read ``TOKEN [HIVE_ID]`` lines; blank lines and ``#`` comments are skipped."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TokenFileError(f"token file {path}: cannot read it ({exc.strerror})") from exc
        tokens: dict[str, str | None] = {}
        for number, line in enumerate(text.splitlines(), 1):
            words = line.split("#", 1)[0].split()
            if len(words) > 2:
                raise TokenFileError(
                    f"token file {path}, line {number}: expected 'TOKEN' or 'TOKEN HIVE_ID', "
                    f"got {len(words)} words; put one token per line"
                )
            if not words:
                continue
            where = f"token file {path}, line {number}"
            if words[0] in tokens:
                raise TokenFileError(f"{where}: the token is already listed above; keep one line")
            if len(words) == 2 and not is_name(words[1]):
                raise TokenFileError(f"{where}: {name_problem('hive id', words[1])}")
            tokens[words[0]] = words[1] if len(words) == 2 else None
        if not tokens:
            raise TokenFileError(f"token file {path}: no tokens in it; add one token per line")
        return cls(tokens)

    def caller(self, authorization: str | None) -> str | None:
        """The hive that a valid ``Bearer`` header's token is bound to, None for a token bound
        to no hive (an admin); raises :class:`Unauthorized` without a known token."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("this request needs a header 'Authorization: Bearer <token>'")
        digest = _digest(token.strip())
        if digest not in self._bound:
            raise Unauthorized("the bearer token is not one this server accepts")
        return self._bound[digest]

    def check(
        self, authorization: str | None, hive_id: str | None = None, *, admin: bool = False
    ) -> None:
        """Accept a valid ``Bearer`` header that may speak for ``hive_id`` (or, with ``admin``,
        for everything), else raise :class:`Unauthorized` or :class:`Forbidden`."""
        bound = self.caller(authorization)
        if bound is not None and admin:
            raise Forbidden(
                f"this token is bound to hive {bound!r}; this change needs a token bound to no hive"
            )
        if bound is not None and hive_id is not None and bound != hive_id:
            raise Forbidden(
                f"this token is bound to hive {bound!r} and cannot speak for hive {hive_id!r}"
            )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# -- the assembled runtime --------------------------------------------------------------------


@dataclass
class Runtime:
    """Everything the service holds; one per app."""

    hives: HiveRegistry
    scheduler: Scheduler
    services: ServiceRegistry
    catalog: Catalog
    tokens: Tokens
    checker: HealthChecker
    started: float = field(default_factory=time.monotonic)


def build_runtime(
    *,
    tokens: Tokens,
    db: Path | str = ":memory:",
    ttl: float = DEFAULT_TTL,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] | None = None,
    check_interval: float = 30.0,
    check_timeout: float = 5.0,
    probe: Probe | None = None,
) -> Runtime:
    """Open the catalog and build the registries around it."""
    catalog = Catalog(db) if now is None else Catalog(db, now=now)
    hives = HiveRegistry(ttl=ttl, clock=clock, on_evict=catalog.mark_offline)
    services = ServiceRegistry(catalog) if now is None else ServiceRegistry(catalog, now=now)
    checker = HealthChecker(services, interval=check_interval, timeout=check_timeout, probe=probe)
    return Runtime(hives, Scheduler(hives), services, catalog, tokens, checker)


# -- request and response helpers -------------------------------------------------------------


def runtime_of(request: Request) -> Runtime:
    """The :class:`Runtime` behind the app serving ``request``."""
    rt: Runtime = request.app.state.runtime
    return rt


def authorize(request: Request, hive_id: str | None = None, *, admin: bool = False) -> None:
    """The write check every mutating route calls: a known token, allowed for ``hive_id``;
    with ``admin``, a token bound to no hive (for registry-wide changes such as promotion)."""
    runtime_of(request).tokens.check(request.headers.get("authorization"), hive_id, admin=admin)


def service_writer(request: Request) -> str | None:
    """Who is changing a service: the hive its token is bound to, None for an admin token;
    :class:`Unauthorized` without a known token. Every service write asks here, and the
    registry checks the answer against the service's owner."""
    return runtime_of(request).tokens.caller(request.headers.get("authorization"))


async def read_body(request: Request, kind: type[T], limit: int = MAX_BODY_BYTES) -> T:
    """Read the body (at most ``limit`` bytes) and decode it as ``kind``: 400/413/422 errors."""
    return _decoder(kind).decode(await read_raw(request, limit))


async def read_raw(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with :class:`BodyTooLarge` once it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        if int(declared) > limit:
            raise BodyTooLarge(f"the request body is {declared} bytes; the limit is {limit} bytes")
        return await request.body()  # the HTTP layer holds the body to its declared length
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}
_ENCODER = msgspec.json.Encoder()


def _decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    if kind not in _DECODERS:
        _DECODERS[kind] = msgspec.json.Decoder(kind)
    return _DECODERS[kind]


def respond(value: object, status: int = 200) -> Response:
    """A JSON response from a msgspec value."""
    return Response(_ENCODER.encode(value), status_code=status, media_type=JSON)


def query_choice(request: Request, name: str, choices: Sequence[str]) -> str | None:
    """A query parameter that must be one of ``choices`` (or absent)."""
    value = request.query_params.get(name)
    if value is not None and value not in choices:
        raise BadRequest(
            f"query parameter {name}={value!r} is not valid: use one of {', '.join(choices)}",
            name,
        )
    return value


def query_bool(request: Request, name: str) -> bool | None:
    """A ``true``/``false`` query parameter (or absent)."""
    value = query_choice(request, name, ("true", "false"))
    return None if value is None else value == "true"


def query_number(request: Request, name: str) -> float | None:
    """A non-negative number query parameter (or absent)."""
    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0 or number == float("inf"):
        raise BadRequest(f"query parameter {name}={value!r} is not a non-negative number", name)
    return number


# -- errors -----------------------------------------------------------------------------------

_STATUS: dict[type[Exception], int] = {
    Unauthorized: 401,
    Forbidden: 403,
    UnknownHive: 404,
    UnknownWorker: 404,
    UnknownService: 404,
    ServiceOwned: 403,
    NoWorkerAvailable: 404,
    WorkerConflict: 409,
    BodyTooLarge: 413,
    ServiceNameMismatch: 422,
    ScheduleRequestError: 400,
    BadRequest: 400,
    # Errors of routes mounted through extra_routes, by kind.
    ImmutableConflict: 409,
    PreconditionFailed: 412,
    FileNotFoundError: 404,
    LookupError: 404,
    PermissionError: 403,
    ValueError: 400,
    OSError: 503,
}
_AT = re.compile(r" - at `(\$[^`]*)`$")
_MISSING = re.compile(r"(?:missing required|contains unknown) field `([^`]*)`")
_FIELD_PREFIX = re.compile(r"^(\$[^\s:]*): ")


def _status_of(exc: Exception) -> int:
    for kind in type(exc).__mro__:
        if kind in _STATUS:
            return _STATUS[kind]
    return 400


async def _registry_error(request: Request, exc: Exception) -> Response:
    message = str(exc)
    match = _FIELD_PREFIX.match(message)
    field = getattr(exc, "field", None) or (match.group(1) if match else None)
    status = _status_of(exc)
    response = respond(ErrorBody(error=message, field=field), status)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def _validation_error(request: Request, exc: Exception) -> Response:
    message = str(exc)
    at = _AT.search(message)
    path = at.group(1) if at else "$"
    missing = _MISSING.search(message)
    field = f"{path}.{missing.group(1)}" if missing else path
    return respond(ErrorBody(error=f"invalid body: {message}", field=field), 422)


async def _decode_error(request: Request, exc: Exception) -> Response:
    body = ErrorBody(error=f"the body is not valid JSON: {exc}", field="$")
    return respond(body, 400)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = {404: f"no route {request.url.path!r}; GET /openapi.json lists the routes"}
    message = detail.get(exc.status_code, exc.detail)
    response = respond(ErrorBody(error=message), exc.status_code)
    response.headers.update(exc.headers or {})
    return response


# -- endpoints --------------------------------------------------------------------------------

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    """One route: what it takes and gives, for both the router and ``/openapi.json``."""

    method: str
    path: str
    handler: Handler
    summary: str
    body: type[Any] | None = None
    answer: type[Any] | None = None
    status: int = 200
    write: bool = False
    query: tuple[str, ...] = ()
    name: str = ""  # the operationId; the handler's name by default


class Handlers:
    """The endpoint functions; each reads the request, calls one typed function, answers."""

    def __init__(self, schedule_latency: Histogram) -> None:
        self.schedule_latency = schedule_latency

    async def heartbeat(self, request: Request) -> Response:
        authorize(request)
        beat = await read_body(request, HiveHeartbeat)
        authorize(request, beat.hive_id)
        rt = runtime_of(request)
        rt.hives.heartbeat(beat)
        rt.catalog.record_heartbeat(beat)
        answer = Accepted(hive_id=beat.hive_id, workers=len(beat.workers), ttl_seconds=rt.hives.ttl)
        return respond(answer)

    async def worker_heartbeat(self, request: Request) -> Response:
        rt = runtime_of(request)
        bound = rt.tokens.caller(request.headers.get("authorization"))
        beat = await read_body(request, WorkerHeartbeat)
        hive_id = rt.hives.worker(beat.worker_id).hive_id if bound is not None else None
        authorize(request, hive_id)
        return respond(rt.hives.worker_heartbeat(beat))

    async def list_hives(self, request: Request) -> Response:
        rt = runtime_of(request)
        online_only = query_bool(request, "online")
        max_age = query_number(request, "max_age")
        views = rt.hives.hives()
        if online_only or max_age is not None:
            keep = set(rt.hives.online_hives(max_age))
            views = [v for v in views if v.hive_id in keep]
        total, online = rt.hives.hive_count()
        return respond(HiveList(total=total, online=online, frozen=rt.hives.frozen, hives=views))

    async def get_hive(self, request: Request) -> Response:
        return respond(runtime_of(request).hives.hive(request.path_params["hive_id"]))

    async def delete_hive(self, request: Request) -> Response:
        hive_id = request.path_params["hive_id"]
        authorize(request, hive_id)
        rt = runtime_of(request)
        rt.hives.remove(hive_id)
        rt.catalog.forget_hive(hive_id)
        return Response(status_code=204)

    async def list_workers(self, request: Request) -> Response:
        found = runtime_of(request).hives.workers(
            model=request.query_params.get("model"),
            backend=query_choice(request, "backend", ("cpu", "cuda", "metal")),
            state=query_choice(request, "state", ("Idle", "Busy", "Loading")),
            hive_id=request.query_params.get("hive"),
        )
        counts = runtime_of(request).hives.worker_counts()
        return respond(WorkerList(count=len(found), counts=counts, workers=found))

    async def get_worker(self, request: Request) -> Response:
        return respond(runtime_of(request).hives.worker(request.path_params["worker_id"]))

    async def schedule(self, request: Request) -> Response:
        model = request.query_params.get("model")
        if not model:
            raise BadRequest("query parameter model is required: /v1/schedule?model=NAME", "model")
        if not is_name(model):
            raise BadRequest(name_problem("model", model), "model")
        fallback = query_choice(request, "fallback", ("none", "any")) or "none"
        spread = query_choice(request, "spread", ("1", "2")) or "1"
        started = time.perf_counter()
        try:
            answer = runtime_of(request).scheduler.best_worker(
                model, fallback="any" if fallback == "any" else "none", spread=int(spread)
            )
        finally:
            self.schedule_latency.observe(time.perf_counter() - started)
        return respond(answer)

    async def register_service(self, request: Request) -> Response:
        by = service_writer(request)
        reg = await read_body(request, ServiceRegistration)
        return respond(runtime_of(request).services.register(reg, by=by), 201)

    async def list_services(self, request: Request) -> Response:
        found = runtime_of(request).services.find(
            healthy=query_bool(request, "healthy"), status=request.query_params.get("status")
        )
        return respond(ServiceList(count=len(found), services=found))

    async def get_service(self, request: Request) -> Response:
        return respond(runtime_of(request).services.get(request.path_params["name"]))

    async def put_service(self, request: Request) -> Response:
        by = service_writer(request)
        reg = await read_body(request, ServiceRegistration)
        name = request.path_params["name"]
        return respond(runtime_of(request).services.update(name, reg, by=by))

    async def delete_service(self, request: Request) -> Response:
        by = service_writer(request)
        runtime_of(request).services.remove(request.path_params["name"], by=by)
        return Response(status_code=204)

    async def service_heartbeat(self, request: Request) -> Response:
        by = service_writer(request)
        raw = await read_raw(request)
        beat = _decoder(ServiceHeartbeat).decode(raw) if raw.strip() else ServiceHeartbeat()
        name = request.path_params["name"]
        return respond(runtime_of(request).services.heartbeat(name, beat, by=by))

    async def service_health(self, request: Request) -> Response:
        return respond(runtime_of(request).services.health(request.path_params["name"]))

    async def health(self, request: Request) -> Response:
        rt = runtime_of(request)
        total, online = rt.hives.hive_count()
        frozen = rt.hives.frozen
        return respond(
            Health(
                status="frozen" if frozen else "ok",
                frozen=frozen,
                hives_total=total,
                hives_online=online,
                workers=rt.hives.worker_counts()["total"],
                services=len(rt.services),
                uptime_seconds=round(time.monotonic() - rt.started, 3),
            )
        )

    async def stats(self, request: Request) -> Response:
        return respond(runtime_of(request).services.stats())


def endpoints(h: Handlers) -> list[Endpoint]:
    """The service's routes, in the order ``/openapi.json`` lists them."""
    E = Endpoint
    return [
        E("POST", "/v1/heartbeat", h.heartbeat, "A hive's heartbeat (replaces its state)",
          HiveHeartbeat, Accepted, write=True),
        E("POST", "/v1/worker-heartbeat", h.worker_heartbeat, "One worker's health",
          WorkerHeartbeat, WorkerView, write=True),
        E("GET", "/v1/hives", h.list_hives, "Every hive held", answer=HiveList,
          query=("online", "max_age")),
        E("GET", "/v1/hives/{hive_id}", h.get_hive, "One hive's state", answer=HiveView),
        E("DELETE", "/v1/hives/{hive_id}", h.delete_hive, "Forget a hive", status=204,
          write=True),
        E("GET", "/v1/workers", h.list_workers, "Workers on online hives", answer=WorkerList,
          query=("model", "backend", "state", "hive")),
        E("GET", "/v1/workers/{worker_id}", h.get_worker, "One worker", answer=WorkerView),
        E("GET", "/v1/schedule", h.schedule, "The best worker for a model",
          answer=ScheduleAnswer, query=("model", "fallback", "spread")),
        E("POST", "/services", h.register_service, "Register (or overwrite) a service",
          ServiceRegistration, ServiceView, status=201, write=True),
        E("GET", "/services", h.list_services, "Registered services", answer=ServiceList,
          query=("healthy", "status")),
        E("GET", "/services/{name}", h.get_service, "One service", answer=ServiceView),
        E("PUT", "/services/{name}", h.put_service, "Replace a service's description",
          ServiceRegistration, ServiceView, write=True),
        E("DELETE", "/services/{name}", h.delete_service, "Deregister a service", status=204,
          write=True),
        E("POST", "/services/{name}/heartbeat", h.service_heartbeat, "A service's heartbeat",
          ServiceHeartbeat, ServiceView, write=True),
        E("GET", "/services/{name}/health", h.service_health, "A service's health",
          answer=ServiceHealth),
        E("GET", "/health", h.health, "The server's own state", answer=Health),
        E("GET", "/stats", h.stats, "The service registry in numbers", answer=Stats),
    ]  # fmt: skip


# -- openapi and metrics ----------------------------------------------------------------------


def openapi_document(table: Sequence[Endpoint]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``table``, its schemas generated from the msgspec types."""
    kinds = sorted(
        {k for e in table for k in (e.body, e.answer) if k is not None} | {ErrorBody},
        key=lambda k: k.__name__,
    )
    schemas, components = msgspec.json.schema_components(
        kinds, ref_template="#/components/schemas/{name}"
    )
    ref = dict(zip(kinds, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for e in table:
        paths.setdefault(e.path, {})[e.method.lower()] = _operation(e, ref)
    return {
        "openapi": "3.1.0",
        "info": {"title": "registry-runtime", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(e: Endpoint, ref: Mapping[type[Any], Any]) -> dict[str, Any]:
    error = {"description": "error", "content": {JSON: {"schema": ref[ErrorBody]}}}
    answer: dict[str, Any] = {"description": e.summary}
    if e.answer is not None:
        answer["content"] = {JSON: {"schema": ref[e.answer]}}
    op: dict[str, Any] = {
        "summary": e.summary,
        "operationId": e.name or e.handler.__name__,
        "parameters": [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in re.findall(r"{(\w+)}", e.path)
        ]
        + [{"name": q, "in": "query", "schema": {"type": "string"}} for q in e.query],
        "responses": {str(e.status): answer, "4XX": error},
    }
    if e.body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": ref[e.body]}}}
    if e.write:
        op["security"] = [{"bearer": []}]
    return op


class _RuntimeCollector(Collector):
    """Reads the registries' counters at scrape time."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> list[Metric]:
        hives = self.rt.hives
        total, online = hives.hive_count()
        c = hives.counters
        metrics: list[Metric] = [
            CounterMetricFamily("runtime_heartbeats", "Hive heartbeats received", c.heartbeats),
            CounterMetricFamily(
                "runtime_worker_heartbeats", "Worker heartbeats received", c.worker_heartbeats
            ),
            CounterMetricFamily("runtime_evictions", "Hives evicted after their TTL", c.evictions),
            CounterMetricFamily("runtime_freezes", "Times eviction froze", c.freezes),
            GaugeMetricFamily("runtime_hives_online", "Hives heard from within the TTL", online),
            GaugeMetricFamily("runtime_hives", "Hives held", total),
            GaugeMetricFamily("runtime_frozen", "1 while eviction is frozen", int(hives.frozen)),
            GaugeMetricFamily("runtime_services", "Registered services", len(self.rt.services)),
        ]
        return metrics


# -- the app ----------------------------------------------------------------------------------


def create_app(
    rt: Runtime,
    *,
    extra_routes: Sequence[BaseRoute] = (),
    extra_endpoints: Sequence[Endpoint] = (),
) -> Starlette:
    """The Starlette app serving ``rt``; ``extra_routes`` are mounted alongside (same auth), and
    ``extra_endpoints`` too, described in ``/openapi.json`` as well."""
    registry = CollectorRegistry()
    registry.register(_RuntimeCollector(rt))
    latency = Histogram(
        "runtime_schedule_seconds",
        "Time to choose a worker",
        registry=registry,
        buckets=(1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.025),
    )
    table = [*endpoints(Handlers(latency)), *extra_endpoints]
    document = _ENCODER.encode(openapi_document(table))

    async def openapi(request: Request) -> Response:
        return Response(document, media_type=JSON)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    routes: list[BaseRoute] = [Route(e.path, e.handler, methods=[e.method]) for e in table]
    routes += [Route("/openapi.json", openapi), Route("/metrics", metrics), *extra_routes]
    app = Starlette(
        routes=routes,
        lifespan=_lifespan,
        exception_handlers={
            RegistryError: _registry_error,
            msgspec.ValidationError: _validation_error,
            msgspec.DecodeError: _decode_error,
            HTTPException: _http_error,
        },
    )
    app.state.runtime = rt
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    rt: Runtime = app.state.runtime
    tasks = [asyncio.create_task(rt.checker.run()), asyncio.create_task(_housekeeping(rt))]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        rt.catalog.flush()


async def _housekeeping(rt: Runtime) -> None:
    """Evict on time even without traffic, and write buffered heartbeats to the catalog."""
    last_flush = time.monotonic()
    while True:
        await asyncio.sleep(1.0)
        try:
            rt.hives.tick()
            if time.monotonic() - last_flush >= FLUSH_INTERVAL:
                rt.catalog.flush()
                last_flush = time.monotonic()
        except Exception:  # keep evicting and flushing after a transient failure
            log.exception("runtime housekeeping failed; retrying in 1 s")


def _check_free(host: str, port: int) -> None:
    """Fail with a message naming --port when the address is taken (uvicorn would exit 3)."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise RegistryError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; stop what uses it or "
            "choose another --port"
        ) from None


# -- running it -------------------------------------------------------------------------------


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8081,
    db: Path = DEFAULT_DB,
    token_file: Path | None = None,
    ttl: float = DEFAULT_TTL,
    registry: str | None = None,
) -> None:
    """Run the service under uvicorn until interrupted (``registry-runtime serve``).

    With ``registry`` (a directory or ``s3://`` location a build writes) the alias routes of
    :mod:`runtime.service.alias_routes` are served too, promotions behind an admin token. The
    catalog ``db`` is locked before the port is bound: a second server on one file refuses to start.
    """
    import uvicorn

    _check_free(host, port)
    if token_file is not None:
        tokens = Tokens.from_file(token_file)
    else:
        token = secrets.token_urlsafe(24)
        print(
            "registry-runtime: no --token-file given; for this run writes need "
            f"'Authorization: Bearer {token}'",
            file=sys.stderr,
        )
        tokens = Tokens({token: None})
    rt = build_runtime(tokens=tokens, db=db, ttl=ttl)
    extra: Sequence[Endpoint] = ()
    if registry is not None:
        from runtime.service.alias_routes import alias_endpoints
        from runtime.storage.store import open_store

        store = open_store(registry)
        extra = alias_endpoints(store, lambda request: authorize(request, admin=True))
    try:
        app = create_app(rt, extra_endpoints=extra)
        uvicorn.run(app, host=host, port=port, ws="none", access_log=False)
    finally:
        rt.catalog.close()
