"""The routes of hives and their workers: heartbeats, the queries, and scheduling.

Heartbeats need a token; a token bound to a hive speaks only for that hive (its heartbeat, its
workers' heartbeats, forgetting it). Reads need none. Writes go to the state
(:mod:`runtime.service.state`); reads come from its in-process views, so ``/v1/schedule`` never
waits on anything outside the process: it counts its answer for ``/v1/models`` in memory, and
without ``model`` it schedules the registry's default model (:mod:`runtime.service.models`).

``/v1/hives`` and ``/v1/hives/{hive_id}`` add the hive catalog: host, port, devices, and the
hives not heard from since the server started, ``Unknown``
(:func:`~runtime.service.hives.with_catalog`). With a shared state away, they answer without it.
"""

from __future__ import annotations

import time

from prometheus_client import Histogram
from starlette.requests import Request

from runtime.names import is_name, name_problem
from runtime.service.catalog import HiveRecord
from runtime.service.endpoints import (
    Endpoint,
    caller,
    query_bool,
    query_choice,
    query_number,
    read_body,
    speaks_for,
)
from runtime.service.errors import BadRequest
from runtime.service.hives import UnknownHive, catalog_view, with_catalog, with_record
from runtime.service.models import RegistryModels
from runtime.service.scheduler import Scheduler
from runtime.service.state import State, StateUnavailable
from runtime.service.types import (
    Accepted,
    HiveHeartbeat,
    HiveList,
    HiveView,
    ScheduleAnswer,
    WorkerHeartbeat,
    WorkerList,
    WorkerView,
)


class HiveRoutes:
    """The handlers over the state's hives and the scheduler."""

    def __init__(
        self, state: State, scheduler: Scheduler, latency: Histogram, models: RegistryModels
    ) -> None:
        self.state = state
        self.hives = state.hives
        self.scheduler = scheduler
        self.latency = latency
        self.models = models

    def endpoints(self) -> list[Endpoint]:
        """The rows, in the order ``/openapi.json`` lists them."""
        E = Endpoint
        return [
            E("POST", "/v1/heartbeat", self.heartbeat, "A hive's heartbeat (replaces its state)",
              HiveHeartbeat, Accepted, access="token"),
            E("POST", "/v1/worker-heartbeat", self.worker_heartbeat, "One worker's health",
              WorkerHeartbeat, WorkerView, access="token"),
            E("GET", "/v1/hives", self.list_hives, "Every hive held or catalogued",
              answer=HiveList, query=("online", "max_age")),
            E("GET", "/v1/hives/{hive_id}", self.get_hive, "One hive's state", answer=HiveView),
            E("DELETE", "/v1/hives/{hive_id}", self.delete_hive, "Forget a hive", status=204,
              access="token"),
            E("GET", "/v1/workers", self.list_workers, "Workers on online hives",
              answer=WorkerList, query=("model", "backend", "state", "hive")),
            E("GET", "/v1/workers/{worker_id}", self.get_worker, "One worker", answer=WorkerView),
            E("GET", "/v1/schedule", self.schedule, "The best worker for a model (without "
              "model: the registry's default)", answer=ScheduleAnswer,
              query=("model", "fallback", "spread")),
        ]  # fmt: skip

    async def heartbeat(self, request: Request) -> Accepted:
        beat = await read_body(request, HiveHeartbeat)
        speaks_for(request, beat.hive_id)
        await self.state.heartbeat(beat)
        return Accepted(hive_id=beat.hive_id, workers=len(beat.workers), ttl_seconds=self.hives.ttl)

    async def worker_heartbeat(self, request: Request) -> WorkerView:
        beat = await read_body(request, WorkerHeartbeat)
        return await self.state.worker_heartbeat(beat, caller(request))

    async def list_hives(self, request: Request) -> HiveList:
        online_only = query_bool(request, "online")
        max_age = query_number(request, "max_age")
        views = with_catalog(self.hives.hives(), await self._catalog())
        total = len(views)
        if online_only or max_age is not None:
            keep = set(self.hives.online_hives(max_age))
            views = [v for v in views if v.hive_id in keep]
        online = self.hives.hive_count()[1]
        stale = self.state.stale_for() is not None
        return HiveList(
            total=total, online=online, frozen=self.hives.frozen, hives=views, stale=stale
        )

    async def get_hive(self, request: Request) -> HiveView:
        hive_id = request.path_params["hive_id"]
        try:
            held = self.hives.hive(hive_id)
        except UnknownHive:
            record = await self.state.catalog_hive(hive_id)
            if record is None:
                raise
            return catalog_view(record)
        return with_record(held, await self._catalog_row(hive_id))

    async def _catalog(self) -> list[HiveRecord]:
        """The catalog, or nothing while a shared state is away (the answer says stale)."""
        try:
            return await self.state.catalog_hives()
        except StateUnavailable:
            return []

    async def _catalog_row(self, hive_id: str) -> HiveRecord | None:
        try:
            return await self.state.catalog_hive(hive_id)
        except StateUnavailable:
            return None

    async def delete_hive(self, request: Request) -> None:
        hive_id = request.path_params["hive_id"]
        speaks_for(request, hive_id)
        await self.state.remove_hive(hive_id)

    async def list_workers(self, request: Request) -> WorkerList:
        found = self.hives.workers(
            model=request.query_params.get("model"),
            backend=query_choice(request, "backend", ("cpu", "cuda", "metal")),
            state=query_choice(request, "state", ("Idle", "Busy", "Loading")),
            hive_id=request.query_params.get("hive"),
        )
        counts = self.hives.worker_counts()
        return WorkerList(count=len(found), counts=counts, workers=found)

    async def get_worker(self, request: Request) -> WorkerView:
        return self.hives.worker(request.path_params["worker_id"])

    async def schedule(self, request: Request) -> ScheduleAnswer:
        model = request.query_params.get("model") or await self.models.default_model()
        if not is_name(model):
            raise BadRequest(name_problem("model", model), "model")
        fallback = query_choice(request, "fallback", ("none", "any")) or "any"
        spread = query_choice(request, "spread", ("1", "2")) or "2"
        started = time.perf_counter()
        try:
            answer = self.scheduler.best_worker(
                model, fallback="none" if fallback == "none" else "any", spread=int(spread),
                loadable=self.models.loadable(model),
            )  # fmt: skip
        finally:
            self.latency.observe(time.perf_counter() - started)
        self.state.record_use(model)
        answer.stale = self.state.stale_for() is not None
        return answer
