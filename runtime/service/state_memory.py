"""The embedded state (``--state memory``, the default): everything in this process.

The hive registry and the service registry are the state itself; what must survive a restart
(the services and the hive catalog) is written through to the SQLite
:class:`~runtime.service.catalog.Catalog`, which one process at a time may hold (its lock file
refuses a second server on the same ``--db``). Heartbeat state is soft: it comes back with the
next heartbeats. Liveness runs on this process's monotonic clock (injected, so tests move time).

Writes never wait on anything but the SQLite file, so this state is never stale and never
unavailable; a background task evicts on time and writes buffered heartbeat times and model use
counts (:mod:`runtime.service.usage`) to the catalog every :data:`FLUSH_INTERVAL` seconds, and
once more when the server stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from runtime.service.catalog import Catalog, HiveRecord
from runtime.service.hives import DEFAULT_TTL, Clock, HiveRegistry
from runtime.service.services import ServiceRegistry
from runtime.service.tokens import Writer, check_hive
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
from runtime.service.usage import Usage

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 5.0


class MemoryState:
    """The registries of this process, with ``catalog`` for what survives a restart."""

    kind = "memory"

    def __init__(self, hives: HiveRegistry, services: ServiceRegistry, catalog: Catalog) -> None:
        self.hives = hives
        self.services = services
        self.catalog = catalog
        self.usage = Usage(services.now, catalog.usage())
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def open(
        cls,
        db: Path | str = ":memory:",
        *,
        ttl: float = DEFAULT_TTL,
        clock: Clock | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> MemoryState:
        """Open (and lock) the catalog ``db`` and build the registries around it."""
        catalog = Catalog(db) if now is None else Catalog(db, now=now)
        hives = HiveRegistry(ttl=ttl, clock=clock or time.monotonic, on_evict=catalog.mark_offline)
        services = ServiceRegistry(catalog) if now is None else ServiceRegistry(catalog, now=now)
        return cls(hives, services, catalog)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start evicting, pruning and flushing in the background."""
        self._task = asyncio.create_task(self._housekeeping())

    async def stop(self) -> None:
        """Stop the background task and flush buffered heartbeat times and use counts."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._flush()

    def close(self) -> None:
        """Close the catalog and release its lock."""
        self.catalog.close()

    def stale_for(self) -> float | None:
        """Never stale: this process is the state."""
        return None

    # -- hives ------------------------------------------------------------------------------

    async def heartbeat(self, beat: HiveHeartbeat) -> None:
        """Hold the heartbeat and note it in the catalog."""
        self.hives.heartbeat(beat)
        self.catalog.record_heartbeat(beat)

    async def worker_heartbeat(self, beat: WorkerHeartbeat, by: str | None) -> WorkerView:
        """Record a worker's health; a hive's token may speak only for its own workers."""
        check_hive(by, self.hives.worker(beat.worker_id).hive_id)
        return self.hives.worker_heartbeat(beat)

    async def remove_hive(self, hive_id: str) -> None:
        """Forget the hive and its catalog row."""
        self.hives.remove(hive_id)
        self.catalog.forget_hive(hive_id)

    async def catalog_hives(self) -> list[HiveRecord]:
        """The catalog's rows."""
        return self.catalog.hives()

    async def catalog_hive(self, hive_id: str) -> HiveRecord | None:
        """One catalog row."""
        return self.catalog.hive(hive_id)

    # -- services ---------------------------------------------------------------------------

    async def register_service(self, reg: ServiceRegistration, by: Writer) -> ServiceView:
        """See :meth:`ServiceRegistry.register`."""
        return self.services.register(reg, by=by)

    async def update_service(self, name: str, change: ServiceUpdate, by: Writer) -> ServiceView:
        """See :meth:`ServiceRegistry.update`."""
        return self.services.update(name, change, by=by)

    async def service_heartbeat(self, name: str, beat: ServiceHeartbeat, by: Writer) -> ServiceView:
        """See :meth:`ServiceRegistry.heartbeat`."""
        return self.services.heartbeat(name, beat, by=by)

    async def remove_service(self, name: str, by: Writer) -> None:
        """See :meth:`ServiceRegistry.remove`."""
        self.services.remove(name, by=by)

    async def prune_services(self) -> list[str]:
        """See :meth:`ServiceRegistry.prune`."""
        return self.services.prune()

    async def claim_check(self, name: str, interval: float) -> bool:
        """Always: this process is the only checker."""
        return True

    async def record_check(self, name: str, up: bool, *, beat: bool = False) -> None:
        """See :meth:`ServiceRegistry.record_check`."""
        self.services.record_check(name, up, beat=beat)

    # -- model usage ------------------------------------------------------------------------

    def record_use(self, model: str) -> None:
        """Count a use in memory; the catalog gets it with the next flush."""
        self.usage.record(model)

    async def model_usage(self) -> dict[str, ModelUse]:
        """The counts: this process holds them all."""
        return dict(self.usage.totals)

    # -- background -------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Evict on time even without traffic, and write buffered heartbeats and use counts
        to the catalog."""
        last_flush = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            try:
                self.hives.tick()
                if time.monotonic() - last_flush >= FLUSH_INTERVAL:
                    self._flush()
                    last_flush = time.monotonic()
            except Exception:  # keep evicting and flushing after a transient failure
                log.exception("runtime housekeeping failed; retrying in 1 s")

    def _flush(self) -> None:
        self.catalog.flush()
        uses = self.usage.take()
        try:
            self.catalog.add_uses(uses)
        except Exception:
            self.usage.give_back(uses)
            raise
