"""What a route is, and how its handler reads the request.

Every route of the service is one :class:`Endpoint` row: method, path template, handler, the
msgspec types of its body and answer, its status, who may call it (``access``) and its query
parameters. The HTTP layer (:mod:`runtime.service.http`) turns a table of rows into the router,
``/openapi.json`` and the per-route metrics, so none of them can drift from the others.

A handler takes the :class:`~starlette.requests.Request` and returns the answer value, which the
layer encodes with the row's status (``None`` for a row without a body, such as a 204); it may
return a :class:`~starlette.responses.Response` instead when it needs its own headers. It reads
its body with :func:`read_body` and its query with the ``query_*`` functions, which raise the
errors of :mod:`runtime.service.errors`; it raises, never builds an error answer itself.

``access`` is checked before the handler runs: ``public`` needs nothing, ``token`` any known
token, ``admin`` a token bound to no hive, ``service`` a known token or, when the server allows
anonymous service writes, no ``Authorization`` header at all. :func:`caller` then says which hive
the token speaks for (a route about one hive checks it with :func:`speaks_for`), and
:func:`writer` who writes a service (:data:`~runtime.service.tokens.ANONYMOUS` without a token).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import msgspec
from starlette.requests import ClientDisconnect, Request

from runtime.service.errors import BadRequest, BodyTooLarge, InvalidBody
from runtime.service.tokens import Writer, check_hive

T = TypeVar("T")

Access = Literal["public", "token", "admin", "service"]
Handler = Callable[[Request], Awaitable[object]]

JSON = "application/json"
MAX_BODY_BYTES = 256 * 1024  # the one limit: room for a heartbeat of 256 workers


@dataclass(frozen=True)
class Endpoint:
    """One route: what it takes and gives, for the router, ``/openapi.json`` and ``/metrics``."""

    method: str
    path: str
    handler: Handler
    summary: str
    body: type[Any] | None = None
    answer: type[Any] | None = None
    status: int = 200
    access: Access = "public"
    query: tuple[str, ...] = ()

    @property
    def operation(self) -> str:
        """The operation's id in ``/openapi.json``: the handler's name."""
        return self.handler.__name__


# -- who is calling ---------------------------------------------------------------------------


def caller(request: Request) -> str | None:
    """The hive the request's token is bound to, None for an admin token. The layer sets it
    for rows whose ``access`` is ``token`` or ``admin``."""
    bound: str | None = request.state.caller
    return bound


def writer(request: Request) -> Writer:
    """Who writes a service: a hive, None for an admin token, or
    :data:`~runtime.service.tokens.ANONYMOUS` (rows whose ``access`` is ``service``)."""
    who: Writer = request.state.caller
    return who


def speaks_for(request: Request, hive_id: str | None) -> None:
    """Refuse (403) a token bound to another hive than ``hive_id``."""
    check_hive(caller(request), hive_id)


# -- the body ---------------------------------------------------------------------------------

_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}
_AT = re.compile(r" - at `(\$[^`]*)`$")
_NAMED = re.compile(r"(?:missing required|contains unknown) field `([^`]*)`")


async def read_body(request: Request, kind: type[T], empty: T | None = None) -> T:
    """The body decoded as ``kind`` (400 not JSON, 413 too large, 422 the wrong shape, naming
    the field); a body of only whitespace is ``empty`` when that is given."""
    raw = await _raw(request)
    if empty is not None and not raw.strip():
        return empty
    try:
        return _decoder(kind).decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidBody(f"invalid body: {exc}", _field_path(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", "$") from None
    except RecursionError:
        raise BadRequest("the body nests arrays or objects too deeply", "$") from None


async def _raw(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length", "")
    try:
        if declared.isdigit():
            if int(declared) > limit:
                raise BodyTooLarge(
                    f"the request body is {declared} bytes; the limit is {limit} bytes"
                )
            return await request.body()  # the HTTP server holds the body to its declared length
        return await _stream(request, limit)
    except ClientDisconnect:
        raise BadRequest("the client closed the connection before the whole body arrived") from None


async def _stream(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    if kind not in _DECODERS:
        _DECODERS[kind] = msgspec.json.Decoder(kind)
    return _DECODERS[kind]


def _field_path(message: str) -> str:
    """The path msgspec names (``$.workers[0].state``), with the field a missing or unknown
    field error names appended (``$.workers[0].extra``)."""
    at = _AT.search(message)
    path = at.group(1) if at else "$"
    named = _NAMED.search(message)
    return f"{path}.{named.group(1)}" if named else path


# -- the query --------------------------------------------------------------------------------


def query_required(request: Request, name: str, example: str) -> str:
    """A query parameter that must be present and not empty; ``example`` shows a good URL."""
    value = request.query_params.get(name)
    if not value:
        raise BadRequest(f"query parameter {name} is required: {example}", name)
    return value


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
