"""The runtime service assembled: the state, the routes, and uvicorn.

:func:`build_runtime` opens the state (:mod:`runtime.service.state`: in this process with a SQLite
catalog, or in Redis shared by replicas) and builds the scheduler and the health checker over
it; :func:`create_app` puts the routes, and with a registry store the alias routes, through the
one HTTP layer (:mod:`runtime.service.http`); :func:`serve` runs that under uvicorn
(``registry-runtime serve``).

The routes, by concern: :mod:`~runtime.service.hive_routes` (heartbeats, hives, workers,
``/v1/schedule``), :mod:`~runtime.service.service_routes` (``/services``, ``/health``,
``/stats``) and :mod:`~runtime.service.alias_routes` (``/v1/promote``, resolve, aliases,
history, verify); the layer under all of them (access, errors, metrics, ``/openapi.json``) is
:mod:`runtime.service.http`. While the state is stale (Redis away), every answer carries
``X-Registry-Stale: SECONDS``.
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
from runtime.service.hive_routes import HiveRoutes
from runtime.service.hives import DEFAULT_TTL, Clock, HiveRegistry
from runtime.service.http import http_app
from runtime.service.metrics import RuntimeCollector, schedule_latency
from runtime.service.scheduler import Scheduler
from runtime.service.service_routes import ServiceRoutes
from runtime.service.services import HealthChecker, Probe, ServiceRegistry
from runtime.service.state import (
    MEMORY,
    State,
    StateChoice,
    StateChoiceError,
    open_state,
    parse_state,
)
from runtime.service.tokens import Tokens
from runtime.storage.store import Store

log = logging.getLogger(__name__)

DEFAULT_DB = Path("registry-runtime.db")
STALE_HEADER = "X-Registry-Stale"


@dataclass
class Runtime:
    """Everything the service holds; one per app."""

    state: State
    scheduler: Scheduler
    tokens: Tokens
    checker: HealthChecker
    started: float = field(default_factory=time.monotonic)

    @property
    def hives(self) -> HiveRegistry:
        """The state's hives (in this process)."""
        return self.state.hives

    @property
    def services(self) -> ServiceRegistry:
        """The state's services (in this process)."""
        return self.state.services


def build_runtime(
    *,
    tokens: Tokens,
    state: StateChoice = MEMORY,
    db: Path | str = ":memory:",
    ttl: float = DEFAULT_TTL,
    clock: Clock | None = None,
    now: Callable[[], datetime] | None = None,
    check_interval: float = 30.0,
    check_timeout: float = 5.0,
    probe: Probe | None = None,
) -> Runtime:
    """Open the state and build the scheduler and the health checker over it (``db``,
    ``clock`` and ``now`` are the memory state's)."""
    opened = open_state(state, db=str(db), ttl=ttl, clock=clock, now=now)
    checker = HealthChecker(opened, interval=check_interval, timeout=check_timeout, probe=probe)
    return Runtime(opened, Scheduler(opened.hives), tokens, checker)


def create_app(rt: Runtime, *, registry: Store | None = None) -> Starlette:
    """The app serving ``rt``; with ``registry``, the alias routes over that store too
    (promotion and verification behind an admin token)."""
    metrics = CollectorRegistry()
    metrics.register(RuntimeCollector(rt.state))
    hives = HiveRoutes(rt.state, rt.scheduler, schedule_latency(metrics))
    table = [*hives.endpoints(), *ServiceRoutes(rt.state, rt.started).endpoints()]
    if registry is not None:
        table += AliasRoutes(registry).endpoints()
    return http_app(
        table, rt.tokens, registry=metrics, lifespan=_lifespan(rt), headers=_stale_header(rt.state)
    )


def _stale_header(state: State) -> Callable[[], dict[str, str] | None]:
    def headers() -> dict[str, str] | None:
        stale = state.stale_for()
        return None if stale is None else {STALE_HEADER: f"{stale:.3f}"}

    return headers


def _lifespan(rt: Runtime) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await rt.state.start()
        checks = asyncio.create_task(rt.checker.run())
        try:
            yield
        finally:
            checks.cancel()
            await asyncio.gather(checks, return_exceptions=True)
            await rt.state.stop()

    return lifespan


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8081,
    db: Path | None = None,
    token_file: Path | None = None,
    ttl: float = DEFAULT_TTL,
    registry: str | None = None,
    state: str = "memory",
) -> None:
    """Run the service under uvicorn until interrupted (``registry-runtime serve``).

    ``state`` is ``memory`` (the catalog ``db`` is locked before the port is bound: a second
    server on one file refuses to start) or a Redis URL shared by replicas. With ``registry``
    (a location a build writes) the alias routes are served too.
    """
    import uvicorn

    from runtime.storage.location import open_store

    choice = parse_state(state)
    _check_db(choice, db)
    _check_free(host, port)
    tokens = Tokens.from_file(token_file) if token_file is not None else _one_run_token()
    rt = build_runtime(tokens=tokens, state=choice, db=db or DEFAULT_DB, ttl=ttl)
    try:
        if choice.kind == "redis":
            _try_redis(choice)
        store = open_store(registry) if registry is not None else None
        app = create_app(rt, registry=store)
        uvicorn.run(app, host=host, port=port, ws="none", access_log=False)
    finally:
        rt.state.close()


def _check_db(choice: StateChoice, db: Path | None) -> None:
    """Refuse --db beside a shared state."""
    if choice.kind != "memory" and db is not None:
        raise StateChoiceError(
            f"--db {_cut(str(db))} goes with --state memory only: with --state {choice.shown} "
            "the services and the hive catalog live in Redis; drop --db"
        )


def _try_redis(choice: StateChoice) -> None:
    """Try Redis once before serving: a refused password is an error, no answer a warning."""
    from runtime.service.state_redis import check_reachable

    warning = check_reachable(choice)
    if warning is not None:
        print(f"registry-runtime: {warning}", file=sys.stderr)


def _cut(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
