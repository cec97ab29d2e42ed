"""The runtime service assembled: the registries, their routes, and uvicorn.

:func:`build_runtime` opens the catalog and builds the registries around it (the hive registry,
scheduler, service registry and health checker); :func:`create_app` puts their routes, and with a
registry store the alias routes, through the one HTTP layer (:mod:`runtime.service.http`);
:func:`serve` runs that under uvicorn (``registry-runtime serve``).

The routes, by concern: :mod:`~runtime.service.hive_routes` (heartbeats, hives, workers,
``/v1/schedule``), :mod:`~runtime.service.service_routes` (``/services``, ``/health``,
``/stats``) and :mod:`~runtime.service.alias_routes` (``/v1/promote``, resolve, aliases,
history, verify); the layer under all of them (access, errors, metrics, ``/openapi.json``) is
:mod:`runtime.service.http`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from runtime.errors import RegistryError
from runtime.service.alias_routes import AliasRoutes
from runtime.service.catalog import Catalog
from runtime.service.hive_routes import HiveRoutes
from runtime.service.hives import DEFAULT_TTL, HiveRegistry
from runtime.service.http import http_app
from runtime.service.metrics import RuntimeCollector, schedule_latency
from runtime.service.scheduler import Scheduler
from runtime.service.service_routes import ServiceRoutes
from runtime.service.services import HealthChecker, Probe, ServiceRegistry
from runtime.service.tokens import Tokens
from runtime.storage.store import Store

log = logging.getLogger(__name__)

DEFAULT_DB = Path("registry-runtime.db")
FLUSH_INTERVAL = 5.0


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


def create_app(rt: Runtime, *, registry: Store | None = None) -> Starlette:
    """The app serving ``rt``; with ``registry``, the alias routes over that store too
    (promotion and verification behind an admin token)."""
    metrics = CollectorRegistry()
    metrics.register(RuntimeCollector(rt.hives, rt.services))
    hives = HiveRoutes(rt.hives, rt.scheduler, rt.catalog, schedule_latency(metrics))
    table = [*hives.endpoints(), *ServiceRoutes(rt.services, rt.hives, rt.started).endpoints()]
    if registry is not None:
        table += AliasRoutes(registry).endpoints()
    return http_app(table, rt.tokens, registry=metrics, lifespan=_lifespan(rt))


def _lifespan(rt: Runtime) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(rt.checker.run()), asyncio.create_task(_housekeeping(rt))]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            rt.catalog.flush()

    return lifespan


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

    With ``registry`` (a location a build writes) the alias routes are served too. The catalog
    ``db`` is locked before the port is bound: a second server on one file refuses to start.
    """
    import uvicorn

    from runtime.storage.location import open_store

    _check_free(host, port)
    tokens = Tokens.from_file(token_file) if token_file is not None else _one_run_token()
    rt = build_runtime(tokens=tokens, db=db, ttl=ttl)
    try:
        store = open_store(registry) if registry is not None else None
        app = create_app(rt, registry=store)
        uvicorn.run(app, host=host, port=port, ws="none", access_log=False)
    finally:
        rt.catalog.close()


def _one_run_token() -> Tokens:
    token = secrets.token_urlsafe(24)
    print(
        "registry-runtime: no --token-file given; for this run writes need "
        f"'Authorization: Bearer {token}'",
        file=sys.stderr,
    )
    return Tokens({token: None})


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
