"""Where the service keeps its state, behind one small protocol: :class:`State`.

============================================  =================================================
``--state``                                   the implementation
============================================  =================================================
``memory`` (the default)                      :class:`~runtime.service.state_memory.MemoryState`:
                                              this process, SQLite (``--db``) for what survives a
                                              restart; one server per database file (a lock)
``redis://[:PASSWORD@]HOST[:PORT][/DB]``      :class:`~runtime.service.state_redis.RedisState`:
``rediss://...`` (TLS)                        Redis, shared by any number of ``serve`` replicas
============================================  =================================================

``$BUNDLE_REGISTRY_STATE`` gives the choice when ``--state`` is not passed. The text is parsed
once, here, into a :class:`StateChoice`; the password it may carry goes to Redis and nowhere
else (:attr:`StateChoice.shown` is what messages and logs print).

Every state has the same shape, so the routes, the scheduler and the health checker do not know
which one they use:

- **reads** come from two in-process views, ``hives`` (a
  :class:`~runtime.service.hives.HiveRegistry`, with the per-model index ``/v1/schedule``
  reads) and ``services`` (a :class:`~runtime.service.services.ServiceRegistry`). The memory
  state owns them; the Redis state keeps them as a mirror of Redis.
- **writes** are coroutines that return once the change is stored (for Redis: once Redis
  confirmed it, and this replica's mirror shows it). They raise the registries' errors (409 a
  worker conflict, 403 another owner, 404 unknown) or :class:`StateUnavailable` (503 with
  ``Retry-After``) when the store cannot be reached.
- :meth:`State.stale_for` says how long the views have been out of touch with the store (None:
  in sync), for the ``/health`` status and the stale marker on answers.
- **model use counts** (``/v1/models``) are the one buffered write: :meth:`State.record_use`
  counts a schedule answer in this process at once (``/v1/schedule`` never waits on a store),
  and the counts are written out every few seconds and when the server stops (SQLite: the
  ``model_usage`` table; Redis: two hashes), so they survive a restart.

redis-py is imported only when a Redis state is opened: a device, or a server on the memory
state, does not need it.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from runtime.errors import RegistryError
from runtime.extras import missing
from runtime.service.catalog import HiveRecord
from runtime.service.hives import DEFAULT_TTL, Clock, HiveRegistry
from runtime.service.services import ServiceRegistry
from runtime.service.tokens import Writer
from runtime.service.types import (
    HiveHeartbeat,
    ModelUse,
    ServiceHeartbeat,
    ServiceRegistration,
    ServiceUpdate,
    ServiceView,
    WorkerHeartbeat,
    WorkerView,
)
from runtime.storage.location import redact

STATE_ENV = "BUNDLE_REGISTRY_STATE"
_FORMS = "memory, redis://HOST:PORT/DB or rediss://HOST:PORT/DB"


class StateChoiceError(RegistryError, ValueError):
    """Raised when ``--state`` (or ``$BUNDLE_REGISTRY_STATE``) is not a state this server keeps,
    or does not go with the other options."""


class StateUnavailable(RegistryError, ConnectionError):
    """Raised when a write cannot reach the shared state (503); ``retry_after`` is the number
    of seconds the answer's ``Retry-After`` suggests."""

    retry_after = 1


@dataclass(frozen=True)
class StateChoice:
    """A parsed ``--state``: the kind, the URL to connect to (with any password) and the URL
    to show (without)."""

    kind: Literal["memory", "redis"]
    url: str = field(repr=False)
    shown: str


MEMORY = StateChoice("memory", "memory", "memory")


def parse_state(text: str) -> StateChoice:
    """``text`` as a :class:`StateChoice`; raises :class:`StateChoiceError` naming the forms."""
    if text == "memory":
        return MEMORY
    shown = _cut(redact(text))
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("redis", "rediss"):
        raise StateChoiceError(f"--state {shown!r} is not a state this server keeps; use {_FORMS}")
    try:
        host, _port = parts.hostname, parts.port
    except ValueError:
        host = None
    db = parts.path.strip("/")
    if not host or not (db == "" or db.isdigit()) or parts.fragment:
        raise StateChoiceError(
            f"--state {shown!r}: expected {parts.scheme}://[:PASSWORD@]HOST[:PORT][/DB] with a "
            "host and a database number (like redis://127.0.0.1:6379/0)"
        )
    return StateChoice("redis", text, redact(text))


class State(Protocol):
    """What the routes, the scheduler and the health checker use; see the module notes."""

    @property
    def kind(self) -> str:
        """``memory`` or ``redis``."""
        ...

    @property
    def hives(self) -> HiveRegistry:
        """The hives, workers and scheduling index, in this process."""
        ...

    @property
    def services(self) -> ServiceRegistry:
        """The registered services, in this process."""
        ...

    async def start(self) -> None:
        """Connect and load, and start the background work (eviction, following changes)."""
        ...

    async def stop(self) -> None:
        """Stop the background work and write out what is buffered."""
        ...

    def close(self) -> None:
        """Release what the state holds open (a database file and its lock)."""
        ...

    def stale_for(self) -> float | None:
        """Seconds since the views were last in sync with the store; None when they are."""
        ...

    async def heartbeat(self, beat: HiveHeartbeat) -> None:
        """Store a hive's heartbeat (replacing its state)."""
        ...

    async def worker_heartbeat(self, beat: WorkerHeartbeat, by: str | None) -> WorkerView:
        """Store one worker's health; ``by`` (a hive, None for an admin) must own it."""
        ...

    async def remove_hive(self, hive_id: str) -> None:
        """Forget a hive, its workers and its catalog row."""
        ...

    async def register_service(self, reg: ServiceRegistration, by: Writer) -> ServiceView:
        """Register or overwrite a service (the rules of :class:`ServiceRegistry`)."""
        ...

    async def update_service(self, name: str, change: ServiceUpdate, by: Writer) -> ServiceView:
        """Change the fields ``change`` gives of a service."""
        ...

    async def service_heartbeat(self, name: str, beat: ServiceHeartbeat, by: Writer) -> ServiceView:
        """Record a service's heartbeat."""
        ...

    async def remove_service(self, name: str, by: Writer) -> None:
        """Deregister a service."""
        ...

    async def prune_services(self) -> list[str]:
        """Remove the services silent for longer than the registry's ``remove_after``; returns
        their names."""
        ...

    async def claim_check(self, name: str, interval: float) -> bool:
        """Whether this process probes service ``name`` in this interval."""
        ...

    async def record_check(self, name: str, up: bool, *, beat: bool = False) -> None:
        """Store a health check's result (a passing one as a heartbeat too, with ``beat``)."""
        ...

    async def catalog_hives(self) -> list[HiveRecord]:
        """The hive catalog (every hive ever heard from, with its status)."""
        ...

    async def catalog_hive(self, hive_id: str) -> HiveRecord | None:
        """One hive's catalog row; None when the catalog does not have it."""
        ...

    def record_use(self, model: str) -> None:
        """Count one schedule answer for ``model`` (buffered; never waits, never fails)."""
        ...

    async def model_usage(self) -> dict[str, ModelUse]:
        """Every model's use count and last use: what is stored, with what is buffered here."""
        ...


def open_state(
    choice: StateChoice,
    *,
    db: str = ":memory:",
    ttl: float = DEFAULT_TTL,
    clock: Clock | None = None,
    now: Callable[[], datetime] | None = None,
) -> State:
    """The state ``choice`` names. ``db``, ``clock`` and ``now`` are the memory state's (a
    shared state takes its time from the store)."""
    if choice.kind == "memory":
        from runtime.service.state_memory import MemoryState

        return MemoryState.open(db, ttl=ttl, clock=clock, now=now)
    try:
        from runtime.service.state_redis import RedisState
    except ImportError as exc:
        if exc.name is None or not exc.name.startswith("redis"):
            raise
        raise missing("redis", "--state redis://") from None
    return RedisState(choice, ttl=ttl)


def _cut(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
