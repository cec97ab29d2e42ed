"""The routes over a registry's aliases (:mod:`runtime.aliases`), served with ``serve --registry``.

=========================  =====  ==========================================================
``POST /v1/promote``       admin  body :class:`PromoteRequest` -> :class:`PromoteResponse`
``GET  /v1/resolve``              ``?ref=MODEL[@SELECTOR]&target=T`` -> ``Resolution``
``GET  /v1/aliases``              ``?model=M`` -> :class:`AliasList`
``GET  /v1/history``              ``?model=M&alias=A`` -> :class:`HistoryResponse`
``POST /v1/verify``        admin  body :class:`VerifyRequest` -> ``Verification`` (200 even when
                                  problems are found: they are the answer; ``problems`` lists them)
=========================  =====  ==========================================================

``verify`` re-hashes whole bundles, so it sits behind an admin token like promotion. The rows go
through the same HTTP layer as every other route (:mod:`runtime.service.http`): the same token
check, body limit, error body and status table. The store calls block, so they run in
Starlette's thread pool.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from runtime import aliases as al
from runtime.names import NAME_PATTERN
from runtime.registry.wire import AliasRecord, AliasView
from runtime.service.endpoints import Endpoint, query_required, read_body
from runtime.service.types import PromoteRequest, PromoteResponse
from runtime.storage.store import Store

Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]


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


class AliasRoutes:
    """The handlers over one registry ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def endpoints(self) -> list[Endpoint]:
        """The rows, in the order ``/openapi.json`` lists them."""
        E = Endpoint
        return [
            E("POST", "/v1/promote", self.promote, "Point model@alias at a version, with an "
              "audit record", PromoteRequest, PromoteResponse, access="admin"),
            E("GET", "/v1/resolve", self.resolve, "The bundles a ref names",
              answer=al.Resolution, query=("ref", "target")),
            E("GET", "/v1/aliases", self.aliases, "A model's aliases", answer=AliasList,
              query=("model",)),
            E("GET", "/v1/history", self.history, "Every promotion of an alias",
              answer=HistoryResponse, query=("model", "alias")),
            E("POST", "/v1/verify", self.verify, "Re-hash what a ref names and check its alias "
              "chain", VerifyRequest, al.Verification, access="admin"),
        ]  # fmt: skip

    async def promote(self, request: Request) -> PromoteResponse:
        body = await read_body(request, PromoteRequest)
        done = await run_in_threadpool(
            al.promote_detailed,
            self.store,
            body.model,
            body.alias,
            body.version,
            body.actor,
            body.reason,
        )
        return PromoteResponse(done.record, done.retries, done.warnings)

    async def resolve(self, request: Request) -> al.Resolution:
        ref = query_required(request, "ref", "/v1/resolve?ref=MODEL[@SELECTOR]&target=TARGET")
        target = request.query_params.get("target")
        return await run_in_threadpool(al.resolve, self.store, ref, target)

    async def aliases(self, request: Request) -> AliasList:
        model = query_required(request, "model", "/v1/aliases?model=MODEL")
        return AliasList(model, await run_in_threadpool(al.aliases, self.store, model))

    async def history(self, request: Request) -> HistoryResponse:
        model = query_required(request, "model", "/v1/history?model=MODEL&alias=ALIAS")
        alias = query_required(request, "alias", "/v1/history?model=MODEL&alias=ALIAS")
        records = await run_in_threadpool(al.history, self.store, model, alias)
        return HistoryResponse(model, alias, records)

    async def verify(self, request: Request) -> al.Verification:
        body = await read_body(request, VerifyRequest)
        return await run_in_threadpool(al.verify, self.store, body.ref, body.target)
