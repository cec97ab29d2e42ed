"""How a failure becomes an HTTP answer: the one status table and the one error body.

Every error answer is an :class:`~runtime.service.types.ErrorBody`, ``{"error": message,
"field": path}``, where ``field`` is the path of the bad part of the request when there is one:
``$.workers[0].state`` for a body (msgspec's path), the parameter's name for a query parameter.
An error names its field with a ``field`` attribute or by starting its message with the path
(``"$.name: the body names service ..."``).

The status comes from :data:`STATUS`, looked up along the error's class hierarchy, so a subclass
answers as its parent unless it has a row of its own. Two rows are kinds rather than classes:
a ``PermissionError`` is a refusal of the caller (403), an ``OSError`` a store, the catalog or the
network failing on the server's side (503: retry later). A registry served read-only (over HTTP)
cannot take a promotion however often it is asked: 501. No worker able to serve a model is a 503
(the service cannot answer now; rbee's routers expect it).

**An error with no row is a 500.** A status says whose fault a failure is, and only a row may
claim that it is the client's: a :class:`~runtime.errors.RegistryError` that no row maps is one
the service did not expect on a request, so the answer is 500 with the error's own message
(written for a user, so it is safe to show) and the server logs it with its traceback, which
shows where to add a row. An exception that is not a ``RegistryError`` is a bug: 500 with a
generic message, the details only in the log (see :mod:`runtime.service.http`).
"""

from __future__ import annotations

import re

from runtime.aliases import AliasConflict
from runtime.errors import (
    CorruptDocument,
    ImmutableConflict,
    IntegrityError,
    InvalidNameError,
    PreconditionFailed,
    RefError,
    RegistryError,
    ResolveError,
)
from runtime.registry.index import IndexFormatError
from runtime.service.hives import UnknownHive, UnknownWorker, WorkerConflict
from runtime.service.models import NoDefaultModel, RegistryModelsUnavailable
from runtime.service.scheduler import NoWorkerAvailable, ScheduleRequestError
from runtime.service.services import (
    ServiceNameMismatch,
    ServiceNeedsToken,
    ServiceOwned,
    UnknownService,
)
from runtime.service.state import StateUnavailable
from runtime.service.tokens import Forbidden, Unauthorized
from runtime.service.types import ErrorBody
from runtime.storage.store import ReadOnlyStore


class BadRequest(RegistryError, ValueError):
    """Raised when a body is not JSON or a query parameter is missing or invalid (400);
    ``field`` names the parameter, or ``$`` for the body."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidBody(RegistryError, ValueError):
    """Raised when a JSON body does not have the shape of its route's type (422); ``field`` is
    the path of the bad value (``$.workers[0].state``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class BodyTooLarge(RegistryError, ValueError):
    """Raised when a request body exceeds the service's one size limit (413)."""


STATUS: dict[type[BaseException], int] = {
    # The request is wrong: the client can fix it.
    BadRequest: 400,
    InvalidNameError: 400,
    RefError: 400,
    ScheduleRequestError: 400,
    NoDefaultModel: 400,
    Unauthorized: 401,
    ServiceNeedsToken: 401,
    Forbidden: 403,
    ServiceOwned: 403,
    PermissionError: 403,
    UnknownHive: 404,
    UnknownWorker: 404,
    UnknownService: 404,
    ResolveError: 404,
    WorkerConflict: 409,
    AliasConflict: 409,
    ImmutableConflict: 409,
    PreconditionFailed: 412,
    BodyTooLarge: 413,
    InvalidBody: 422,
    ServiceNameMismatch: 422,
    # What the service reads from is wrong, cannot do this, or is away: the request was fine.
    ReadOnlyStore: 501,
    NoWorkerAvailable: 503,
    RegistryModelsUnavailable: 503,
    CorruptDocument: 502,
    IndexFormatError: 502,
    IntegrityError: 502,
    StateUnavailable: 503,
    OSError: 503,
}
UNMAPPED = 500

_FIELD_PREFIX = re.compile(r"^(\$[^\s:]*): ")


def status_of(exc: RegistryError) -> int | None:
    """The status of the nearest class of ``exc`` that has a row; None when none has."""
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return None


def error_body(exc: RegistryError) -> ErrorBody:
    """The answer's body: the message, and the bad field when the error names one."""
    message = str(exc)
    field: str | None = getattr(exc, "field", None)
    if field is None and (match := _FIELD_PREFIX.match(message)):
        field = match.group(1)
    return ErrorBody(error=message, field=field)
