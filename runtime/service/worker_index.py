"""The indexes over the workers of online hives, from which every worker query is answered.

For each model, backend and state, the ids of the workers that have it, kept sorted (the order
``/v1/workers`` answers in); and the scheduler's pools: for each model, the healthy idle workers
with it loaded, kept in rank order (:func:`rank`: best first), and one pool of every healthy idle
worker (the fallback, to load a model no idle worker has). So a query reads the one list that
answers it, or the shortest of those it filters on, and choosing the best worker reads the head
of a pool or two random members of it: nothing scans the fleet.

The lists are plain sorted Python lists (:mod:`bisect`): a few bytes per entry, a membership
change costs one binary search and a ``memmove``, and a query needs no sort. Changes arrive as
pairs of reports (:meth:`WorkerIndex.change`), so a heartbeat that repeats a worker's state costs
a few comparisons and moves nothing. Which hives are online is the registry's business
(:class:`~runtime.service.hives.HiveRegistry`): it adds a hive's workers here when the hive comes
online and removes them when it goes stale.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import TypeVar

from runtime.service.types import WorkerReport

Rank = tuple[float, int, str]
"""A healthy idle worker's place in the pools: GPU load (missing = 100), VRAM use, worker id."""

K = TypeVar("K")
T = TypeVar("T", str, Rank)

STATES = ("Idle", "Busy", "Loading")
_NONE: list[str] = []
_NO_RANKS: list[Rank] = []


def rank(worker: WorkerReport) -> Rank:
    """The sort key: lowest GPU load (missing = 100), then lowest VRAM use, then worker id."""
    gpu = 100.0 if worker.gpu_percent is None else worker.gpu_percent
    return gpu, worker.vram_bytes or 0, worker.worker_id


def schedulable(worker: WorkerReport) -> bool:
    """Whether the scheduler may choose ``worker`` (on an online hive): healthy and Idle."""
    return worker.state == "Idle" and worker.health_status == "healthy"


def same_place(old: WorkerReport, new: WorkerReport) -> bool:
    """Whether two reports of one worker put it in the same place in every index: the same
    model, backend and state, and the same health and rank (the fields the pools order by)."""
    return (
        old.state == new.state and old.model_id == new.model_id
        and old.backend == new.backend and old.health_status == new.health_status
        and old.gpu_percent == new.gpu_percent and old.vram_bytes == new.vram_bytes
    )  # fmt: skip


def matches(
    worker: WorkerReport, model: str | None, backend: str | None, state: str | None
) -> bool:
    """Whether ``worker`` passes every filter given (None: no filter)."""
    return (
        (model is None or worker.model_id == model)
        and (backend is None or worker.backend == backend)
        and (state is None or worker.state == state)
    )


class WorkerIndex:
    """The online workers by model, backend and state, and the scheduler's pools."""

    def __init__(self) -> None:
        self.by_model: dict[str | None, list[str]] = {}
        self.by_backend: dict[str | None, list[str]] = {}
        self.by_state: dict[str, list[str]] = {}
        self.pools: dict[str | None, list[Rank]] = {}
        self.idle: list[Rank] = []

    def clear(self) -> None:
        """Forget every worker."""
        for index in (self.by_model, self.by_backend, self.by_state, self.pools):
            index.clear()
        self.idle.clear()

    # -- changes ------------------------------------------------------------------------------

    def add(self, worker: WorkerReport) -> None:
        """Index a worker of a hive that is online."""
        wid = worker.worker_id
        _insert(self.by_model, worker.model_id, wid)
        _insert(self.by_backend, worker.backend, wid)
        _insert(self.by_state, worker.state, wid)
        if schedulable(worker):
            self._pool_in(worker.model_id, rank(worker))

    def remove(self, worker: WorkerReport) -> None:
        """Drop a worker, given the report it was indexed with."""
        wid = worker.worker_id
        _delete(self.by_model, worker.model_id, wid)
        _delete(self.by_backend, worker.backend, wid)
        _delete(self.by_state, worker.state, wid)
        if schedulable(worker):
            self._pool_out(worker.model_id, rank(worker))

    def change(self, old: WorkerReport, new: WorkerReport) -> None:
        """Replace a worker's report ``old`` (as indexed) with ``new``: move only what changed."""
        if same_place(old, new):
            return  # the usual heartbeat
        wid = new.worker_id
        if old.model_id != new.model_id:
            _move(self.by_model, old.model_id, new.model_id, wid)
        if old.backend != new.backend:
            _move(self.by_backend, old.backend, new.backend, wid)
        if old.state != new.state:
            _move(self.by_state, old.state, new.state, wid)
        was = rank(old) if schedulable(old) else None
        now = rank(new) if schedulable(new) else None
        if was == now and old.model_id == new.model_id:
            return
        if was is not None:
            self._pool_out(old.model_id, was)
        if now is not None:
            self._pool_in(new.model_id, now)

    def _pool_in(self, model: str | None, key: Rank) -> None:
        _insert(self.pools, model, key)
        insort(self.idle, key)

    def _pool_out(self, model: str | None, key: Rank) -> None:
        _delete(self.pools, model, key)
        del self.idle[bisect_left(self.idle, key)]

    # -- queries ------------------------------------------------------------------------------

    def select(
        self,
        reports: Mapping[str, WorkerReport],
        model: str | None = None,
        backend: str | None = None,
        state: str | None = None,
    ) -> Sequence[str]:
        """The ids of the online workers matching every filter given, sorted: the shortest of
        the lists filtered on, with the other filters applied to the reports (``reports``, by
        id) of its workers. May be the index's own list: read it before the next change."""
        given = [
            index.get(key, _NONE)
            for index, key in ((self.by_model, model), (self.by_backend, backend),
                               (self.by_state, state))
            if key is not None
        ]  # fmt: skip
        if not given:
            return self.ids()
        shortest = min(given, key=len)
        if len(given) == 1:
            return shortest
        return [wid for wid in shortest if matches(reports[wid], model, backend, state)]

    def ids(self) -> list[str]:
        """Every online worker's id, sorted (the state lists merged)."""
        return sorted(chain.from_iterable(self.by_state.values()))

    def counts(self) -> dict[str, int]:
        """Online workers in total and by state."""
        counts = {"total": 0} | {s: len(self.by_state.get(s, _NONE)) for s in STATES}
        counts["total"] = sum(counts[s] for s in STATES)
        return counts

    def pool(self, model: str | None) -> Sequence[Rank]:
        """The healthy idle online workers with ``model`` loaded, best first (the index's own
        list: read it, do not keep it)."""
        return self.pools.get(model, _NO_RANKS)

    def idle_pool(self) -> Sequence[Rank]:
        """Every healthy idle online worker, best first (the index's own list)."""
        return self.idle


def _insert(index: dict[K, list[T]], key: K, item: T) -> None:
    bucket = index.get(key)
    if bucket is None:
        index[key] = [item]
    else:
        insort(bucket, item)


def _delete(index: dict[K, list[T]], key: K, item: T) -> None:
    bucket = index[key]
    del bucket[bisect_left(bucket, item)]
    if not bucket:
        del index[key]


def _move(index: dict[K, list[str]], old: K, new: K, wid: str) -> None:
    _delete(index, old, wid)
    _insert(index, new, wid)
