"""The runtime service assembled: the state, the routes, and uvicorn.

:func:`build_runtime` opens the state (:mod:`runtime.service.state`: in this process with a SQLite
catalog, or in Redis shared by replicas) and builds the scheduler and the health checker over
it; :func:`create_app` puts the routes, and with a registry store the alias routes, through the
one HTTP layer (:mod:`runtime.service.http`); :func:`serve` runs that under uvicorn
(``registry-runtime serve``), after printing one line that says where it listens, on which
state, over which registry, and who may write (:func:`summary`).

The routes, by concern: :mod:`~runtime.service.hive_routes` (heartbeats, hives, workers,
``/v1/schedule``), :mod:`~runtime.service.model_routes` (``/v1/models``),
:mod:`~runtime.service.service_routes` (``/services``, ``/health``, ``/stats``) and
:mod:`~runtime.service.alias_routes` (``/v1/promote``, resolve, aliases, history, verify); the
layer under all of them (access, errors, metrics, ``/openapi.json``, the access log) is
:mod:`runtime.service.http`. While the state is stale (Redis away), every answer carries
``X-Registry-Stale: SECONDS``.

In the background, while the app runs: the state's own work (eviction, flushes), the services'
health checks every ``check_interval`` seconds, their cleanup every ``cleanup_interval`` seconds
(:func:`~runtime.service.services.clean_up`), and a refresh of the registry's model list.
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
from runtime.service.model_routes import ModelRoutes
from runtime.service.models import REFRESH_INTERVAL, RegistryModels
from runtime.service.scheduler import Scheduler
from runtime.service.service_routes import ServiceRoutes
from runtime.service.services import HealthChecker, Probe, ServiceRegistry, clean_up
from runtime.service.state import (
    MEMORY,
    State,
    StateChoice,
    StateChoiceError,
    open_state,
    parse_state,
)
from runtime.service.tokens import Tokens
from runtime.storage.location import redact
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
    cleanup_interval: float = 60.0
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
    cleanup_interval: float = 60.0,
    probe: Probe | None = None,
) -> Runtime:
    """Open the state and build the scheduler and the health checker over it (``db``,
    ``clock`` and ``now`` are the memory state's)."""
    opened = open_state(state, db=str(db), ttl=ttl, clock=clock, now=now)
    checker = HealthChecker(opened, interval=check_interval, timeout=check_timeout, probe=probe)
    return Runtime(opened, Scheduler(opened.hives), tokens, checker, cleanup_interval)


def create_app(
    rt: Runtime,
    *,
    registry: Store | None = None,
    anonymous_services: bool = False,
    log_requests: bool = False,
    models_interval: float = REFRESH_INTERVAL,
) -> Starlette:
    """The app serving ``rt``; with ``registry``, ``/v1/models`` lists its models, its default
    model is scheduled, and the alias routes serve it (promotion and verification behind an
    admin token). ``anonymous_services`` lets service writes come without a token;
    ``log_requests`` logs every answer; the model list is read again every
    ``models_interval`` seconds."""
    metrics = CollectorRegistry()
    metrics.register(RuntimeCollector(rt.state))
    models = RegistryModels(registry)
    hives = HiveRoutes(rt.state, rt.scheduler, schedule_latency(metrics), models)
    table = [
        *hives.endpoints(),
        *ModelRoutes(rt.state, models).endpoints(),
        *ServiceRoutes(rt.state, rt.checker, rt.started).endpoints(),
    ]
    if registry is not None:
        table += AliasRoutes(registry).endpoints()
    return http_app(
        table, rt.tokens, registry=metrics, lifespan=_lifespan(rt, models, models_interval),
        headers=_stale_header(rt.state), anonymous_services=anonymous_services,
        log_requests=log_requests,
    )  # fmt: skip


def _stale_header(state: State) -> Callable[[], dict[str, str] | None]:
    def headers() -> dict[str, str] | None:
        stale = state.stale_for()
        return None if stale is None else {STALE_HEADER: f"{stale:.3f}"}

    return headers


def _lifespan(
    rt: Runtime, models: RegistryModels, models_interval: float
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await rt.state.start()
        tasks = [
            asyncio.create_task(rt.checker.run()),
            asyncio.create_task(clean_up(rt.state, rt.cleanup_interval)),
            asyncio.create_task(models.follow(models_interval)),
        ]
        try:
            yield
        finally:
            await _cancel(tasks)
            await rt.state.stop()

    return lifespan


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait for them to end, cancelling again those that go on: redis-py may
    swallow a cancellation mid-call (a health check's lease, say), and a loop would run on."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=0.05)


@dataclass(frozen=True)
class ServeOptions:
    """What ``registry-runtime serve`` is given (defaults as the command's)."""

    host: str = "127.0.0.1"
    port: int = 8081
    db: Path | None = None
    token_file: Path | None = None
    ttl: float = DEFAULT_TTL
    registry: str | None = None
    state: str = "memory"
    health_interval: float = 30.0
    health_timeout: float = 5.0
    cleanup_interval: float = 60.0
    allow_anonymous_services: bool = False
    access_log: bool = False


def serve(options: ServeOptions) -> None:
    """Run the service under uvicorn until interrupted (``registry-runtime serve``).

    ``state`` is ``memory`` (the catalog ``db`` is locked before the port is bound: a second
    server on one file refuses to start) or a Redis URL shared by replicas. With ``registry``
    (a location a build writes) ``/v1/models`` lists its models and the alias routes are served.
    """
    import uvicorn

    from runtime.storage.location import open_store

    o = options
    # Every input is checked before the port: a typo in the token file or an option is
    # reported as such even when the port is taken.
    choice = parse_state(o.state)
    _check_db(choice, o.db)
    tokens = Tokens.from_file(o.token_file) if o.token_file is not None else None
    store = open_store(o.registry) if o.registry is not None else None
    _check_free(o.host, o.port)
    if tokens is None:
        tokens = _one_run_token()
    rt = build_runtime(
        tokens=tokens, state=choice, db=o.db or DEFAULT_DB, ttl=o.ttl,
        check_interval=o.health_interval, check_timeout=o.health_timeout,
        cleanup_interval=o.cleanup_interval,
    )  # fmt: skip
    try:
        if choice.kind == "redis":
            _try_redis(choice)
        app = create_app(
            rt, registry=store, anonymous_services=o.allow_anonymous_services,
            log_requests=o.access_log,
        )  # fmt: skip
        if o.access_log:
            _log_requests_to_stderr()
        print(summary(o, choice, store, len(tokens)), file=sys.stderr, flush=True)
        uvicorn.run(app, host=o.host, port=o.port, ws="none", access_log=False, log_level="warning")
    finally:
        rt.state.close()


def summary(o: ServeOptions, choice: StateChoice, store: Store | None, tokens: int) -> str:
    """The line ``serve`` prints on start: address, state, registry, who may write."""
    host = f"[{o.host}]" if ":" in o.host else o.host
    state = f"memory (db {o.db or DEFAULT_DB})" if choice.kind == "memory" else choice.shown
    registry = "none" if store is None else redact(store.location)
    if o.token_file is None:
        auth = "writes need the one-run token printed above"
    else:
        auth = f"writes need one of {tokens} token{'s' if tokens != 1 else ''} of {o.token_file}"
    anonymous = "allowed" if o.allow_anonymous_services else "refused"
    return (
        f"registry-runtime: serving on http://{host}:{o.port}; state {state}; registry "
        f"{registry}; {auth}; service writes without a token {anonymous}"
    )


def _log_requests_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    access = logging.getLogger("runtime.service.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False


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
