"""The routes of hives and their workers: heartbeats, the queries, and scheduling.

Heartbeats need a token; a token bound to a hive speaks only for that hive (its heartbeat, its
workers' heartbeats, forgetting it). Reads need none. Writes go to the state
(:mod:`runtime.service.state`); reads come from its in-process views, so ``/v1/schedule`` never
waits on anything outside the process.
"""

from __future__ import annotations

import time

from prometheus_client import Histogram
from starlette.requests import Request

from runtime.names import is_name, name_problem
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
from runtime.service.scheduler import Scheduler
from runtime.service.state import State
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

    def __init__(self, state: State, scheduler: Scheduler, latency: Histogram) -> None:
        self.state = state
        self.hives = state.hives
        self.scheduler = scheduler
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
        await self.state.heartbeat(beat)
        return Accepted(hive_id=beat.hive_id, workers=len(beat.workers), ttl_seconds=self.hives.ttl)

    async def worker_heartbeat(self, request: Request) -> WorkerView:
        beat = await read_body(request, WorkerHeartbeat)
        return await self.state.worker_heartbeat(beat, caller(request))

    async def list_hives(self, request: Request) -> HiveList:
        online_only = query_bool(request, "online")
        max_age = query_number(request, "max_age")
        views = self.hives.hives()
        if online_only or max_age is not None:
            keep = set(self.hives.online_hives(max_age))
            views = [v for v in views if v.hive_id in keep]
        total, online = self.hives.hive_count()
        stale = self.state.stale_for() is not None
        return HiveList(
            total=total, online=online, frozen=self.hives.frozen, hives=views, stale=stale
        )

    async def get_hive(self, request: Request) -> HiveView:
        return self.hives.hive(request.path_params["hive_id"])

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
        model = query_required(request, "model", "/v1/schedule?model=NAME")
        if not is_name(model):
            raise BadRequest(name_problem("model", model), "model")
        fallback = query_choice(request, "fallback", ("none", "any")) or "none"
        spread = query_choice(request, "spread", ("1", "2")) or "1"
        started = time.perf_counter()
        try:
            answer = self.scheduler.best_worker(
                model, fallback="any" if fallback == "any" else "none", spread=int(spread)
            )
        finally:
            self.latency.observe(time.perf_counter() - started)
        answer.stale = self.state.stale_for() is not None
        return answer
