"""Hives and their workers, in memory: heartbeats, liveness, and the queries over them.

A hive is a host that runs workers; it sends its whole state in a heartbeat, which replaces what
the registry knew. Liveness is judged on a monotonic clock (injected, so tests can move time):
a hive is online while its last heartbeat is younger than the TTL. Each online hive has one
entry in a heap of due times, so finding the hives that went stale costs nothing while none are
due; a heartbeat only moves the hive's expiry, and its entry is pushed on when it comes due.

If half or more of the hives go stale within one TTL window (counting those already evicted in
that window), the likelier story is that the registry lost the fleet (a partition on our side),
not that the fleet died: eviction freezes, the state is kept, and ``frozen`` says so. Liveness
itself does not change: a silent hive is not online, so nothing is scheduled on it. The freeze
thaws on its own when heartbeats return, or at the latest after ``freeze_limit`` seconds (default
ten TTLs), when the silence is taken as real and the stale hives are evicted.

Every worker query is answered from indexes over the workers of *online* hives
(:mod:`runtime.service.worker_index`: by model, backend and state, and the scheduler's pools of
healthy idle workers in rank order), never by scanning the fleet. The indexes follow every
change: a heartbeat moves only the workers whose model, backend, state, health or rank changed;
a hive going stale (noticed on the clock, before any query answers) takes its workers out, and a
heartbeat that brings it back puts them in again.

What a hive is beyond its heartbeats (host, port, devices, and whether it was ever heard from) is
the hive catalog's (:mod:`runtime.service.catalog`, or Redis): :func:`with_catalog` puts the two
together for ``/v1/hives``, so that after a restart the catalog's hives are listed, ``Unknown``
until they speak again.

The same class is the in-memory *mirror* of a shared state (:mod:`runtime.service.state_redis`):
built with ``evicts=False`` it never evicts or freezes on its own; the shared state decides that
once for every replica (with :func:`should_freeze`, the one freeze rule) and the mirror applies
the outcome (:meth:`HiveRegistry.apply`, :meth:`~HiveRegistry.evict`,
:meth:`~HiveRegistry.replace_all`, :meth:`~HiveRegistry.set_frozen`), through the same indexed
paths. Its ``clock`` is then the shared state's clock, and a hive's ``seen`` time the one the
shared state stamped, so every replica judges liveness alike; that clock may step back a little
when its offset is measured again, and hives stale a moment ago are then online again.
"""

from __future__ import annotations

import heapq
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import msgspec

from runtime.errors import RegistryError
from runtime.service.catalog import HiveRecord
from runtime.service.types import (
    HiveHeartbeat,
    HiveStatus,
    HiveView,
    Resources,
    WorkerHeartbeat,
    WorkerReport,
    WorkerView,
)
from runtime.service.worker_index import Rank, WorkerIndex, matches, same_place

Clock = Callable[[], float]

DEFAULT_TTL = 30.0


class UnknownHive(RegistryError, LookupError):
    """Raised when a query or a removal names a hive the registry does not hold."""


class UnknownWorker(RegistryError, LookupError):
    """Raised when a query or a worker heartbeat names a worker that no hive reports."""


class WorkerConflict(RegistryError, ValueError):
    """Raised when a heartbeat reports a worker id that another online hive already reports,
    or the same worker id twice."""


class _Hive:
    """One hive's last heartbeat, when it arrived and expires (monotonic seconds), whether its
    workers are in the indexes (``online``), and the time of its entry in the heap (``due``,
    None without one)."""

    __slots__ = ("beat", "due", "expires", "hive_id", "online", "seen")

    def __init__(self, beat: HiveHeartbeat, seen: float, ttl: float) -> None:
        self.hive_id = beat.hive_id
        self.beat = beat
        self.seen = seen
        self.expires = seen + ttl
        self.online = False
        self.due: float | None = None


@dataclass
class Counters:
    """Totals since start, for ``/metrics``."""

    heartbeats: int = 0
    worker_heartbeats: int = 0
    evictions: int = 0
    freezes: int = 0


class HiveRegistry:
    """Every hive's last heartbeat, with liveness on ``clock`` and indexes over the workers of
    the online hives."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Clock = time.monotonic,
        freeze_min_hives: int = 4,
        freeze_limit: float | None = None,
        on_evict: Callable[[str], None] | None = None,
        evicts: bool = True,
    ) -> None:
        self.ttl = ttl
        self.evicts = evicts
        self.clock = clock
        self.freeze_min_hives = freeze_min_hives
        self.freeze_limit = 10 * ttl if freeze_limit is None else freeze_limit
        self.on_evict = on_evict
        self.counters = Counters()
        self._hives: dict[str, _Hive] = {}
        self._stale: dict[str, _Hive] = {}  # held, past the TTL: their workers are not indexed
        self._heap: list[tuple[float, str]] = []  # (due, hive id): one entry per online hive
        self._synced = float("-inf")  # the clock time the indexes reflect
        self._owner: dict[str, _Hive] = {}  # worker id -> hive reporting it (online or not)
        self._reports: dict[str, WorkerReport] = {}  # worker id -> its report in that hive
        self._index = WorkerIndex()
        self._frozen_at: float | None = None
        self._next_check = 0.0
        self._recent: deque[float] = deque()  # times of evictions within the last TTL window

    # -- writes -------------------------------------------------------------------------------

    def heartbeat(self, beat: HiveHeartbeat) -> bool:
        """Replace a hive's state with ``beat``; True when the hive was not held before."""
        now = self._tick()
        fresh = self._put(beat, now, now, check=True)
        self.counters.heartbeats += 1
        return fresh

    def apply(self, beat: HiveHeartbeat, seen: float) -> bool:
        """Hold ``beat`` as the hive's state, heard at ``seen`` (on ``clock``), without checks;
        True when the hive was not held before. A worker that a stale hive still lists moves."""
        return self._put(beat, seen, self._sync(), check=False)

    def worker_heartbeat(self, beat: WorkerHeartbeat) -> WorkerView:
        """Record one worker's health between hive heartbeats; raises :class:`UnknownWorker`."""
        self._tick()
        hive = self._owner_of(beat.worker_id)
        old = self._reports[beat.worker_id]
        new = msgspec.structs.replace(
            old, health_status=beat.health_status, last_heartbeat=beat.timestamp
        )
        workers = [new if w is old else w for w in hive.beat.workers]
        hive.beat = msgspec.structs.replace(hive.beat, workers=workers)
        self._reports[beat.worker_id] = new
        if hive.online:
            self._index.change(old, new)
        self.counters.worker_heartbeats += 1
        return self.worker(beat.worker_id)

    def remove(self, hive_id: str) -> None:
        """Forget a hive and its workers; raises :class:`UnknownHive`."""
        self._sync()
        self._forget(self._get(hive_id))

    def evict(self, hive_id: str) -> None:
        """Evict a hive that the shared state evicted (no-op when not held)."""
        self._sync()
        hive = self._hives.get(hive_id)
        if hive is not None:
            self._evict(hive)

    def set_frozen(self, since: float | None) -> None:
        """Take the shared state's freeze: frozen ``since`` that time, or thawed (None)."""
        if since is not None and self._frozen_at is None:
            self.counters.freezes += 1
        self._frozen_at = since

    def held(self) -> list[tuple[HiveHeartbeat, float]]:
        """Every hive held, as (last heartbeat, when it was heard), oldest first."""
        return [(h.beat, h.seen) for h in sorted(self._hives.values(), key=lambda h: h.seen)]

    def replace_all(self, hives: Iterable[tuple[HiveHeartbeat, float]]) -> None:
        """Hold exactly ``hives`` (heartbeat, when heard), as a shared state's snapshot says."""
        for store in (self._hives, self._stale, self._owner, self._reports):
            store.clear()
        self._heap.clear()
        self._index.clear()
        now = self._sync()
        for beat, seen in sorted(hives, key=lambda pair: pair[1]):  # the newest claim wins
            self._put(beat, seen, now, check=False)

    # -- liveness -----------------------------------------------------------------------------

    @property
    def frozen(self) -> bool:
        """True while eviction is suspended because too many hives went stale at once."""
        self.tick()
        return self._frozen_at is not None

    def tick(self) -> None:
        """Take the hives whose TTL ran out out of the indexes, and evict them unless that
        would be half the fleet (freeze). A mirror (``evicts=False``) only does the first: the
        shared state decides evictions."""
        self._tick()

    def is_online(self, hive_id: str) -> bool:
        """True when the hive's last heartbeat is younger than the TTL (False if unknown)."""
        hive = self._hives.get(hive_id)
        return hive is not None and self.clock() < hive.expires

    def age(self, hive_id: str) -> float:
        """Seconds since the hive's last heartbeat; raises :class:`UnknownHive`."""
        return self.clock() - self._get(hive_id).seen

    # -- hive queries -------------------------------------------------------------------------

    def hive(self, hive_id: str) -> HiveView:
        """A hive's state; raises :class:`UnknownHive`."""
        now = self._tick()
        return self._view(self._get(hive_id), now)

    def hives(self) -> list[HiveView]:
        """Every hive held (online or stale but not yet evicted), sorted by id."""
        now = self._tick()
        return [self._view(self._hives[k], now) for k in sorted(self._hives)]

    def online_hives(self, max_age: float | None = None) -> list[str]:
        """Ids of hives heard from within ``max_age`` seconds (default: the TTL), sorted."""
        now = self._tick()
        limit = self.ttl if max_age is None else min(max_age, self.ttl)
        return sorted(h.hive_id for h in self._hives.values() if now - h.seen < limit)

    def resources(self, hive_id: str) -> Resources:
        """A hive's resources, summed from its workers' reports; raises :class:`UnknownHive`."""
        return summed_resources(self._get(hive_id).beat.workers)

    def hive_count(self) -> tuple[int, int]:
        """(hives held, hives online)."""
        self._tick()
        return len(self._hives), len(self._hives) - len(self._stale)

    def worker_counts(self) -> dict[str, int]:
        """Workers on online hives, in total and by state."""
        self._tick()
        return self._index.counts()

    # -- worker queries -----------------------------------------------------------------------

    def worker(self, worker_id: str) -> WorkerView:
        """A worker by id; raises :class:`UnknownWorker`."""
        self._tick()
        hive = self._owner_of(worker_id)
        online = self.clock() < hive.expires
        return WorkerView(hive_id=hive.hive_id, online=online, worker=self._reports[worker_id])

    def worker_url(self, worker_id: str) -> str | None:
        """The URL a worker reported, or None; raises :class:`UnknownWorker`."""
        return self.worker(worker_id).worker.url

    def workers(
        self,
        *,
        model: str | None = None,
        backend: str | None = None,
        state: str | None = None,
        hive_id: str | None = None,
    ) -> list[WorkerView]:
        """Workers on online hives matching every given filter, sorted by worker id."""
        self._tick()
        if hive_id is None:
            ids = self._index.select(self._reports, model, backend, state)
        else:
            ids = self._on_hive(self._get(hive_id), model, backend, state)
        owner, reports, view = self._owner, self._reports, WorkerView
        return [view(hive_id=owner[wid].hive_id, online=True, worker=reports[wid]) for wid in ids]

    def idle_workers(self) -> list[WorkerView]:
        """Idle workers on online hives."""
        return self.workers(state="Idle")

    def workers_by_model(self, model: str) -> list[WorkerView]:
        """Workers on online hives with ``model`` loaded."""
        return self.workers(model=model)

    def workers_by_backend(self, backend: str) -> list[WorkerView]:
        """Workers on online hives running on ``backend`` (cpu, cuda, metal)."""
        return self.workers(backend=backend)

    def hive_workers(self, hive_id: str) -> list[WorkerView]:
        """The workers a hive reported, whether or not it is online; raises UnknownHive."""
        hive = self._get(hive_id)
        online = self.clock() < hive.expires
        return [WorkerView(hive_id=hive_id, online=online, worker=w) for w in hive.beat.workers]

    # -- the scheduler's view -----------------------------------------------------------------

    def candidates(self, model: str | None) -> Sequence[Rank]:
        """The ranks of the healthy idle workers on online hives with ``model`` loaded (None:
        no model), best first. The index's own list: read it before the next change."""
        self._tick()
        return self._index.pool(model)

    def idle_candidates(self) -> Sequence[Rank]:
        """The ranks of every healthy idle worker on an online hive, best first (as
        :meth:`candidates`)."""
        self._tick()
        return self._index.idle_pool()

    def candidate(self, key: Rank) -> tuple[WorkerView, float]:
        """The worker a rank from :meth:`candidates` names, and its hive's ``seen`` time."""
        hive = self._owner[key[2]]
        return WorkerView(
            hive_id=hive.hive_id, online=True, worker=self._reports[key[2]]
        ), hive.seen

    # -- internals: holding beats -------------------------------------------------------------

    def _put(self, beat: HiveHeartbeat, seen: float, now: float, *, check: bool) -> bool:
        """Hold ``beat``, heard at ``seen``, with the indexes as of ``now``; True when new.
        With ``check``, a beat that changes which workers the hive lists is refused if it
        lists one twice or one that another online hive reports (before anything changes)."""
        beat = _compact(beat)
        held = self._hives.get(beat.hive_id)
        if held is not None and self._renew(held, beat, seen):
            hive = held  # the usual beat: nothing to check, no worker moves between hives
        else:
            if check:
                check_duplicates(beat)
                self._check_owners(beat, now)
            hive = self._replace(held, beat, seen)
        self._settle(hive, now)
        return held is None

    def _renew(self, hive: _Hive, beat: HiveHeartbeat, seen: float) -> bool:
        """Take the usual beat, which lists the workers ``hive`` holds in the same order: each
        new report takes the place of the old one (the hive's, and as indexed). False, and
        nothing done, for any other beat."""
        old, new = hive.beat.workers, beat.workers
        if len(old) != len(new):
            return False
        moved = []  # (old, new) of the workers whose place in the indexes changes
        for a, b in zip(old, new, strict=True):
            if a.worker_id != b.worker_id:
                return False
            if not same_place(a, b):
                moved.append((a, b))
        hive.beat, hive.seen, hive.expires = beat, seen, seen + self.ttl
        reports = self._reports
        for w in new:
            reports[w.worker_id] = w
        if hive.online:
            for pair in moved:
                self._index.change(*pair)
        return True

    def _replace(self, hive: _Hive | None, beat: HiveHeartbeat, seen: float) -> _Hive:
        """A beat that changes which workers a hive lists (or a new hive's first): the workers
        it no longer lists are released, the others held."""
        if hive is None:
            hive = _Hive(beat, seen, self.ttl)
            self._hives[hive.hive_id] = self._stale[hive.hive_id] = hive  # online when settled
        else:
            kept = {w.worker_id for w in beat.workers}
            for w in hive.beat.workers:
                if w.worker_id not in kept:
                    self._release(hive, w)
            hive.beat, hive.seen, hive.expires = beat, seen, seen + self.ttl
        for w in beat.workers:
            self._hold(hive, w)
        return hive

    def _hold(self, hive: _Hive, w: WorkerReport) -> None:
        """Make ``w`` the report of its worker, on ``hive`` (indexed when the hive is online);
        a worker that another (stale) hive still lists moves from it."""
        wid = w.worker_id
        owner = self._owner.get(wid)
        if owner is hive:
            old = self._reports[wid]
            self._reports[wid] = w
            if hive.online:
                self._index.change(old, w)
            return
        if owner is not None:
            self._drop_worker(owner, wid)
        self._owner[wid] = hive
        self._reports[wid] = w
        if hive.online:
            self._index.add(w)

    def _release(self, hive: _Hive, w: WorkerReport) -> None:
        """Forget a worker that ``hive`` no longer lists."""
        if self._owner.get(w.worker_id) is hive:
            if hive.online:
                self._index.remove(self._reports[w.worker_id])
            del self._owner[w.worker_id]
            del self._reports[w.worker_id]

    def _drop_worker(self, hive: _Hive, worker_id: str) -> None:
        """A stale hive loses a worker that another hive now reports."""
        if hive.online:
            self._index.remove(self._reports[worker_id])
        kept = [w for w in hive.beat.workers if w.worker_id != worker_id]
        hive.beat = msgspec.structs.replace(hive.beat, workers=kept)

    def _forget(self, hive: _Hive) -> None:
        """Drop a hive and its workers (removed or evicted)."""
        self._take_offline(hive)
        del self._stale[hive.hive_id]
        del self._hives[hive.hive_id]
        for w in hive.beat.workers:
            self._release(hive, w)

    # -- internals: online and stale ----------------------------------------------------------

    def _tick(self) -> float:
        """:meth:`tick`, returning the time it judged by."""
        now = self._sync()
        if not self.evicts:
            return now
        if self._frozen_at is None:
            if not self._stale:
                return now
        elif now < self._next_check:
            return now
        stale = list(self._stale.values())
        if self._should_freeze(len(stale), now):
            if self._frozen_at is None:
                self._frozen_at = now
                self.counters.freezes += 1
            self._next_check = now + min(1.0, self.ttl / 10)
            return now
        self._frozen_at = None
        for hive in stale:
            self._evict(hive)
        return now

    def _sync(self) -> float:
        """Bring the indexes to the clock's time: the hives whose TTL ran out go stale (and,
        should the clock have stepped back, stale hives within their TTL again come back)."""
        now = self.clock()
        if now < self._synced:
            for back in [h for h in self._stale.values() if now < h.expires]:
                self._settle(back, now)
        self._synced = now
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, hive_id = heapq.heappop(heap)
            hive = self._hives.get(hive_id)
            if hive is not None and hive.due == due:  # else superseded, or the hive is gone
                hive.due = None
                self._settle(hive, now)
        return now

    def _settle(self, hive: _Hive, now: float) -> None:
        """Index or unindex ``hive`` as it is online at ``now`` or not; keep its heap entry no
        later than its expiry."""
        if now >= hive.expires:
            self._take_offline(hive)
            return
        if not hive.online:
            del self._stale[hive.hive_id]
            hive.online = True
            for w in hive.beat.workers:
                self._index.add(w)
        if hive.due is None or hive.due > hive.expires:
            hive.due = hive.expires
            heapq.heappush(self._heap, (hive.expires, hive.hive_id))

    def _take_offline(self, hive: _Hive) -> None:
        hive.due = None
        if hive.online:
            hive.online = False
            for w in hive.beat.workers:
                self._index.remove(w)
            self._stale[hive.hive_id] = hive

    def _should_freeze(self, stale: int, now: float) -> bool:
        while self._recent and self._recent[0] <= now - self.ttl:
            self._recent.popleft()
        frozen_for = None if self._frozen_at is None else now - self._frozen_at
        return should_freeze(
            stale, len(self._hives), len(self._recent), frozen_for,
            min_hives=self.freeze_min_hives, limit=self.freeze_limit,
        )  # fmt: skip

    def _evict(self, hive: _Hive) -> None:
        self._forget(hive)
        self.counters.evictions += 1
        if self.evicts:  # the window the freeze rule counts (a mirror's is the shared state's)
            self._recent.append(self.clock())
        if self.on_evict is not None:
            self.on_evict(hive.hive_id)

    # -- internals: lookups -------------------------------------------------------------------

    def _get(self, hive_id: str) -> _Hive:
        hive = self._hives.get(hive_id)
        if hive is None:
            raise unknown_hive(hive_id)
        return hive

    def _owner_of(self, worker_id: str) -> _Hive:
        hive = self._owner.get(worker_id)
        if hive is None:
            raise unknown_worker(worker_id)
        return hive

    def _check_owners(self, beat: HiveHeartbeat, now: float) -> None:
        """Refuse a worker that another online hive reports."""
        for i, w in enumerate(beat.workers):
            owner = self._owner.get(w.worker_id)
            if owner is not None and owner.hive_id != beat.hive_id and now < owner.expires:
                raise worker_conflict(i, w.worker_id, owner.hive_id)

    @staticmethod
    def _on_hive(
        hive: _Hive, model: str | None, backend: str | None, state: str | None
    ) -> list[str]:
        """The ids of the workers of ``hive`` that match, sorted (none while it is stale)."""
        if not hive.online:
            return []
        return sorted(w.worker_id for w in hive.beat.workers if matches(w, model, backend, state))

    def _view(self, hive: _Hive, now: float) -> HiveView:
        beat = hive.beat
        online = now < hive.expires
        return HiveView(
            hive_id=hive.hive_id,
            status="Online" if online else "Offline",
            online=online,
            age_seconds=round(now - hive.seen, 3),
            timestamp=beat.timestamp,
            workers=list(beat.workers),
            resources=summed_resources(beat.workers),
        )


def should_freeze(
    stale: int, held: int, recent: int, frozen_for: float | None, *, min_hives: int, limit: float
) -> bool:
    """The freeze rule: True when ``stale`` hives due for eviction now, with the ``recent`` ones
    evicted within the last TTL, are half or more of the fleet as it was one TTL ago (``held``
    now, stale ones included, plus ``recent``), the fleet has at least ``min_hives``, and the
    freeze (on for ``frozen_for`` seconds, None when off) has not reached its ``limit``."""
    lost = stale + recent
    fleet = held + recent
    if stale == 0 or fleet < min_hives or 2 * lost < fleet:
        return False
    return frozen_for is None or frozen_for < limit


def check_duplicates(beat: HiveHeartbeat) -> None:
    """Refuse (:class:`WorkerConflict`) a heartbeat that lists one worker id twice."""
    seen: set[str] = set()
    for i, w in enumerate(beat.workers):
        if w.worker_id in seen:
            raise WorkerConflict(
                f"$.workers[{i}].worker_id: worker {w.worker_id!r} is listed twice in the "
                f"heartbeat of hive {beat.hive_id!r}; list each worker once"
            )
        seen.add(w.worker_id)


def worker_conflict(index: int, worker_id: str, owner: str) -> WorkerConflict:
    """The error for a heartbeat listing (at ``index``) a worker that online hive ``owner``
    reports."""
    return WorkerConflict(
        f"$.workers[{index}].worker_id: worker {worker_id!r} is already reported by online hive "
        f"{owner!r}; worker ids must be unique across hives (rename the worker, or "
        f"DELETE /v1/hives/{owner} first)"
    )


def unknown_hive(hive_id: str) -> UnknownHive:
    """The error for a hive that is not held."""
    return UnknownHive(
        f"hive {hive_id!r} is not known: it has not sent a heartbeat since the server "
        "started, or it was evicted or removed (GET /v1/hives lists the hives held)"
    )


def unknown_worker(worker_id: str) -> UnknownWorker:
    """The error for a worker that no hive reports."""
    return UnknownWorker(
        f"worker {worker_id!r} is not known: no hive reports it; its hive must send a "
        "heartbeat listing it first (GET /v1/workers lists the workers held)"
    )


def with_worker_health(hive: HiveHeartbeat, beat: WorkerHeartbeat) -> HiveHeartbeat:
    """``hive`` with the health and heartbeat time of worker ``beat.worker_id`` replaced."""
    workers = [
        msgspec.structs.replace(w, health_status=beat.health_status, last_heartbeat=beat.timestamp)
        if w.worker_id == beat.worker_id
        else w
        for w in hive.workers
    ]
    return msgspec.structs.replace(hive, workers=workers)


def summed_resources(workers: Iterable[WorkerReport]) -> Resources:
    """Counts by state, the sums of VRAM, RAM and CPU (a missing value counts as 0), and the
    GPU load of each worker that reports one with their mean (see
    :class:`~runtime.service.types.Resources`)."""
    res = Resources(
        workers=0, idle=0, busy=0, loading=0, vram_bytes=0, ram_bytes=0, cpu_percent=0.0,
        gpu_percent=None, gpu_percent_per_worker={},
    )  # fmt: skip
    for w in workers:
        res.workers += 1
        res.idle += w.state == "Idle"
        res.busy += w.state == "Busy"
        res.loading += w.state == "Loading"
        res.vram_bytes += w.vram_bytes or 0
        res.ram_bytes += w.ram_bytes or 0
        res.cpu_percent += w.cpu_percent or 0.0
        if w.gpu_percent is not None:
            res.gpu_percent_per_worker[w.worker_id] = w.gpu_percent
    gpus = res.gpu_percent_per_worker
    if gpus:
        res.gpu_percent = round(sum(gpus.values()) / len(gpus), 3)
    return res


def with_catalog(held: Iterable[HiveView], records: Iterable[HiveRecord]) -> list[HiveView]:
    """The hives ``held``, with the host, port and devices their catalog ``records`` give, and
    the hives only the catalog has (:func:`catalog_view`); sorted by id."""
    rows = {r.hive_id: r for r in records}
    views = {v.hive_id: with_record(v, rows.get(v.hive_id)) for v in held}
    for hive_id, record in rows.items():
        views.setdefault(hive_id, catalog_view(record))
    return [views[k] for k in sorted(views)]


def with_record(view: HiveView, record: HiveRecord | None) -> HiveView:
    """A held hive with what its catalog row says of its host (unchanged without a row)."""
    if record is None:
        return view
    return msgspec.structs.replace(
        view, host=record.host, port=record.port, devices=list(record.devices)
    )


def catalog_view(record: HiveRecord) -> HiveView:
    """A hive only the catalog has: no workers, no age; ``Unknown`` unless it was evicted
    (``Offline``): a row still ``Online`` is a hive not heard from by this server."""
    status: HiveStatus = "Offline" if record.status == "Offline" else "Unknown"
    return HiveView(
        hive_id=record.hive_id, status=status, online=False, age_seconds=None,
        timestamp=record.last_heartbeat, workers=[], resources=summed_resources(()),
        host=record.host, port=record.port, devices=list(record.devices),
    )  # fmt: skip


def _compact(beat: HiveHeartbeat) -> HiveHeartbeat:
    """Share repeated strings and timestamps so a thousand hives stay small in memory.

    Host, port and devices are dropped: they are catalog data (:mod:`runtime.service.catalog` keeps
    them), not heartbeat state, and eight device names would be the biggest part of a hive.
    """
    if beat.devices is not None or beat.host is not None or beat.port is not None:
        beat = msgspec.structs.replace(beat, devices=None, host=None, port=None)
    for w in beat.workers:
        if w.model_id is not None:
            w.model_id = sys.intern(w.model_id)
        if w.last_heartbeat == beat.timestamp:
            w.last_heartbeat = beat.timestamp
    return beat
