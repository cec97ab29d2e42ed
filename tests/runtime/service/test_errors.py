"""The one status table and the one error body."""

from __future__ import annotations

import pytest

from runtime.aliases import AliasConflict
from runtime.errors import (
    CorruptDocument,
    InvalidNameError,
    KeyNotFound,
    PreconditionFailed,
    RegistryError,
    ResolveError,
    StoreError,
)
from runtime.registry.index import IndexFormatError
from runtime.service.catalog import CatalogError, CatalogInUse
from runtime.service.errors import BadRequest, BodyTooLarge, InvalidBody, error_body, status_of
from runtime.service.hives import UnknownWorker, WorkerConflict
from runtime.service.services import ServiceNameMismatch, ServiceOwned
from runtime.service.tokens import Forbidden, Unauthorized
from runtime.service.types import ErrorBody
from runtime.storage.store import ReadOnlyStore, StoreUnreachable


class Refused(RegistryError, PermissionError):
    """A refusal without a row of its own."""


class NoRow(RegistryError, ValueError):
    """A ValueError without a row: the kind alone does not make it the client's fault."""


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (BadRequest("m"), 400),
        (InvalidNameError("m"), 400),
        (Unauthorized("m"), 401),
        (Forbidden("m"), 403),
        (ServiceOwned("m"), 403),
        (Refused("m"), 403),
        (UnknownWorker("m"), 404),
        (ResolveError("m"), 404),
        (WorkerConflict("m"), 409),
        (AliasConflict("m"), 409),
        (PreconditionFailed("m"), 412),
        (BodyTooLarge("m"), 413),
        (InvalidBody("m", "$"), 422),
        (ServiceNameMismatch("m"), 422),
        (ReadOnlyStore("m"), 501),
        (CorruptDocument("m"), 502),
        (IndexFormatError("m"), 502),
        (StoreError("m"), 503),
        (StoreUnreachable("m"), 503),
        (CatalogInUse("m"), 503),
        (CatalogError("m"), 503),
        (KeyNotFound("m"), 503),
        (NoRow("m"), None),
        (RegistryError("m"), None),
    ],
)
def test_the_status_of_each_kind_of_error(error: RegistryError, status: int | None) -> None:
    assert status_of(error) == status


@pytest.mark.parametrize(
    ("error", "body"),
    [
        (BadRequest("query parameter x is required", "x"),
         ErrorBody(error="query parameter x is required", field="x")),
        (InvalidBody("invalid body: ...", "$.workers[0].state"),
         ErrorBody(error="invalid body: ...", field="$.workers[0].state")),
        (WorkerConflict("$.workers[1].worker_id: worker 'w' is listed twice"),
         ErrorBody(error="$.workers[1].worker_id: worker 'w' is listed twice",
                   field="$.workers[1].worker_id")),
        (ResolveError("model 'm' is not in the index: $ is not a path here"),
         ErrorBody(error="model 'm' is not in the index: $ is not a path here")),
    ],
)  # fmt: skip
def test_the_error_body_names_the_field(error: RegistryError, body: ErrorBody) -> None:
    assert error_body(error) == body
