"""HTTP routes over :mod:`runtime.aliases`, for the runtime service (or any Starlette app).

=========================  =====  ==========================================================
``POST /v1/promote``       token  body :class:`PromoteRequest` -> :class:`PromoteResponse`
``GET  /v1/resolve``              ``?ref=MODEL[@SELECTOR]&target=T`` -> ``Resolution``
``GET  /v1/aliases``              ``?model=M`` -> :class:`AliasList`
``GET  /v1/history``              ``?model=M&alias=A`` -> :class:`HistoryResponse`
``POST /v1/verify``        token  body :class:`VerifyRequest` -> ``Verification`` (200 even when
                                  problems are found: they are the answer; ``problems`` lists them)
=========================  =====  ==========================================================

``verify`` re-hashes whole bundles, so it sits behind the token like the writes. Errors are
``{"error": message, "field": name-or-null}``: 400 a bad parameter or name, 401 no valid token,
404 nothing of that name, 409 a promotion that kept losing its race, 422 a body of the wrong shape.
The store calls block, so they run in Starlette's thread pool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runtime import aliases as al
from runtime.errors import InvalidNameError, RefError, RegistryError, ResolveError
from runtime.names import NAME_PATTERN
from runtime.registry.wire import AliasRecord, AliasView
from runtime.service.server import Endpoint
from runtime.storage.store import Store

Authorize = Callable[[Request], None]  # raises (a PermissionError) when the request may not write
Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
MAX_BODY = 64 * 1024
T = TypeVar("T")


class PromoteRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/promote``: point ``model@alias`` at ``version``."""

    model: Name
    alias: Name
    version: Name
    actor: Annotated[str, msgspec.Meta(min_length=1, max_length=al.MAX_ACTOR)]
    reason: Annotated[str, msgspec.Meta(max_length=al.MAX_REASON)] = ""


class PromoteResponse(msgspec.Struct):
    """The record the promotion wrote, the races it lost, and follow-ups that failed."""

    record: AliasRecord
    retries: int
    warnings: tuple[str, ...] = ()


class AliasList(msgspec.Struct):
    """``GET /v1/aliases``: every alias of a model (without history)."""

    model: str
    aliases: tuple[AliasView, ...]


class HistoryResponse(msgspec.Struct):
    """``GET /v1/history``: every promotion of an alias, oldest first."""

    model: str
    alias: str
    records: tuple[AliasRecord, ...]


class VerifyRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/verify``: re-hash what ``ref`` names (one ``target``, or all of them)."""

    ref: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    target: str | None = None


class ErrorResponse(msgspec.Struct):
    """Every error answer."""

    error: str
    field: str | None = None


class _Refused(RegistryError, ValueError):
    """Raised for a request that is malformed before any alias code runs (status and field)."""

    def __init__(self, message: str, status: int, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.field = status, field


_encoder = msgspec.json.Encoder()


def _respond(value: object, status: int = 200) -> Response:
    return Response(_encoder.encode(value), status_code=status, media_type="application/json")


def _status(exc: RegistryError) -> int:
    if isinstance(exc, _Refused):
        return exc.status
    if isinstance(exc, PermissionError):  # 401 unless the refusal says otherwise (403)
        status: int = getattr(exc, "status", 401)
        return status
    if isinstance(exc, ResolveError):
        return 404
    if isinstance(exc, al.AliasConflict):
        return 409
    if isinstance(exc, InvalidNameError | RefError):
        return 400
    return 500


def _error(exc: RegistryError) -> Response:
    status = _status(exc)
    response = _respond(ErrorResponse(str(exc), getattr(exc, "field", None)), status)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _param(request: Request, name: str, required: bool = True) -> str | None:
    value = request.query_params.get(name)
    if required and not value:
        raise _Refused(f"query parameter {name!r} is required", 400, name)
    return value


async def _body(request: Request, kind: type[T]) -> T:
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            raise _Refused(f"the request body exceeds the limit of {MAX_BODY} bytes", 413, "$")
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        raise _Refused(f"invalid body: {exc}", 422, "$") from None
    except msgspec.DecodeError as exc:
        raise _Refused(f"the body is not valid JSON: {exc}", 400, "$") from None


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(handler: Callable[[Request], Awaitable[object]]) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            return _respond(await handler(request))
        except RegistryError as exc:
            return _error(exc)

    return endpoint


def alias_routes(store: Store, authorize: Authorize) -> list[Route]:
    """The five alias routes over ``store``; ``authorize(request)`` guards promote and verify."""
    return [Route(e.path, e.handler, methods=[e.method]) for e in alias_endpoints(store, authorize)]


def alias_endpoints(store: Store, authorize: Authorize) -> list[Endpoint]:
    """The five routes with what they take and give, for a router and for ``/openapi.json``."""

    async def promote(request: Request) -> object:
        authorize(request)
        body = await _body(request, PromoteRequest)
        done = await run_in_threadpool(
            al.promote_detailed,
            store,
            body.model,
            body.alias,
            body.version,
            body.actor,
            body.reason,
        )
        return PromoteResponse(done.record, done.retries, done.warnings)

    async def resolve(request: Request) -> object:
        ref, target = _param(request, "ref"), _param(request, "target", required=False)
        return await run_in_threadpool(al.resolve, store, ref or "", target)

    async def aliases(request: Request) -> object:
        model = _param(request, "model") or ""
        return AliasList(model, await run_in_threadpool(al.aliases, store, model))

    async def history(request: Request) -> object:
        model, alias = _param(request, "model") or "", _param(request, "alias") or ""
        records = await run_in_threadpool(al.history, store, model, alias)
        return HistoryResponse(model, alias, records)

    async def verify(request: Request) -> object:
        authorize(request)
        body = await _body(request, VerifyRequest)
        return await run_in_threadpool(al.verify, store, body.ref, body.target)

    def entry(
        method: str, path: str, fn: Callable[[Request], Awaitable[object]], summary: str, **kw: Any
    ) -> Endpoint:
        return Endpoint(method, path, _guarded(fn), summary, name=fn.__name__, **kw)

    return [
        entry("POST", "/v1/promote", promote, "Point model@alias at a version, with an audit "
              "record", body=PromoteRequest, answer=PromoteResponse, write=True),
        entry("GET", "/v1/resolve", resolve, "The bundles a ref names", answer=al.Resolution,
              query=("ref", "target")),
        entry("GET", "/v1/aliases", aliases, "A model's aliases", answer=AliasList,
              query=("model",)),
        entry("GET", "/v1/history", history, "Every promotion of an alias",
              answer=HistoryResponse, query=("model", "alias")),
        entry("POST", "/v1/verify", verify, "Re-hash what a ref names and check its alias chain",
              body=VerifyRequest, answer=al.Verification, write=True),
    ]  # fmt: skip
