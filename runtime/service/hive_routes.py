"""The routes of hives and their workers: heartbeats, the queries, and scheduling.

Heartbeats need a token; a token bound to a hive speaks only for that hive (its heartbeat, its
workers' heartbeats, forgetting it). Reads need none.
"""

from __future__ import annotations

import time

from prometheus_client import Histogram
from starlette.requests import Request

from runtime.names import is_name, name_problem
from runtime.service.catalog import Catalog
from runtime.service.endpoints import (
    Endpoint,
    caller,
    query_bool,
    query_choice,
    query_number,
    query_required,
    read_body,
    speaks_for,
)
from runtime.service.errors import BadRequest
from runtime.service.hives import HiveRegistry
from runtime.service.scheduler import Scheduler
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
    """The handlers over the hive registry, the scheduler and the hive catalog."""

    def __init__(
        self, hives: HiveRegistry, scheduler: Scheduler, catalog: Catalog, latency: Histogram
    ) -> None:
        self.hives = hives
        self.scheduler = scheduler
        self.catalog = catalog
        self.latency = latency

    def endpoints(self) -> list[Endpoint]:
        """The rows, in the order ``/openapi.json`` lists them."""
        E = Endpoint
        return [
            E("POST", "/v1/heartbeat", self.heartbeat, "A hive's heartbeat (replaces its state)",
              HiveHeartbeat, Accepted, access="token"),
            E("POST", "/v1/worker-heartbeat", self.worker_heartbeat, "One worker's health",
              WorkerHeartbeat, WorkerView, access="token"),
            E("GET", "/v1/hives", self.list_hives, "Every hive held", answer=HiveList,
              query=("online", "max_age")),
            E("GET", "/v1/hives/{hive_id}", self.get_hive, "One hive's state", answer=HiveView),
            E("DELETE", "/v1/hives/{hive_id}", self.delete_hive, "Forget a hive", status=204,
              access="token"),
            E("GET", "/v1/workers", self.list_workers, "Workers on online hives",
              answer=WorkerList, query=("model", "backend", "state", "hive")),
            E("GET", "/v1/workers/{worker_id}", self.get_worker, "One worker", answer=WorkerView),
            E("GET", "/v1/schedule", self.schedule, "The best worker for a model",
              answer=ScheduleAnswer, query=("model", "fallback", "spread")),
        ]  # fmt: skip

    async def heartbeat(self, request: Request) -> Accepted:
        beat = await read_body(request, HiveHeartbeat)
        speaks_for(request, beat.hive_id)
        self.hives.heartbeat(beat)
        self.catalog.record_heartbeat(beat)
        return Accepted(hive_id=beat.hive_id, workers=len(beat.workers), ttl_seconds=self.hives.ttl)

    async def worker_heartbeat(self, request: Request) -> WorkerView:
        beat = await read_body(request, WorkerHeartbeat)
        if caller(request) is not None:  # a hive's token: the worker must be one of its own
            speaks_for(request, self.hives.worker(beat.worker_id).hive_id)
        return self.hives.worker_heartbeat(beat)

    async def list_hives(self, request: Request) -> HiveList:
        online_only = query_bool(request, "online")
        max_age = query_number(request, "max_age")
        views = self.hives.hives()
        if online_only or max_age is not None:
            keep = set(self.hives.online_hives(max_age))
            views = [v for v in views if v.hive_id in keep]
        total, online = self.hives.hive_count()
        return HiveList(total=total, online=online, frozen=self.hives.frozen, hives=views)

    async def get_hive(self, request: Request) -> HiveView:
        return self.hives.hive(request.path_params["hive_id"])

    async def delete_hive(self, request: Request) -> None:
        hive_id = request.path_params["hive_id"]
        speaks_for(request, hive_id)
        self.hives.remove(hive_id)
        self.catalog.forget_hive(hive_id)

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
        model = query_required(request, "model", "/v1/schedule?model=NAME")
        if not is_name(model):
            raise BadRequest(name_problem("model", model), "model")
        fallback = query_choice(request, "fallback", ("none", "any")) or "none"
        spread = query_choice(request, "spread", ("1", "2")) or "1"
        started = time.perf_counter()
        try:
            return self.scheduler.best_worker(
                model, fallback="any" if fallback == "any" else "none", spread=int(spread)
            )
        finally:
            self.latency.observe(time.perf_counter() - started)
