"""The routes of the service registry (``/services``), and the server's own ``/health``, ``/stats``.

Services belong to the token that registered them. A service registered with a token bound to
a hive belongs to that hive (``owner``, stored with the service in the catalog, so it survives a
restart); one registered with a token bound to no hive (an admin token) belongs to no hive. Only
a token bound to the owning hive, or an admin token, may overwrite it (``POST /services`` again),
``PUT`` it, send its heartbeat or ``DELETE`` it; an admin's change keeps the owner. No token or
an unknown one is a 401, a token of another hive a 403 naming the owner. The name is free again
once the service is removed (``DELETE``, or five minutes without a heartbeat). Every service
write passes its writer (:func:`~runtime.service.endpoints.caller`) to the registry, which
applies the one rule, :func:`runtime.service.services.check_writer`.
"""

from __future__ import annotations

import time

from starlette.requests import Request

from runtime.service.endpoints import Endpoint, caller, query_bool, read_body
from runtime.service.state import State
from runtime.service.types import (
    Health,
    ServiceHealth,
    ServiceHeartbeat,
    ServiceList,
    ServiceRegistration,
    ServiceView,
    Stats,
)


class ServiceRoutes:
    """The handlers over the state's services; ``/health`` reads its hives too."""

    def __init__(self, state: State, started: float) -> None:
        self.state = state
        self.services = state.services
        self.hives = state.hives
        self.started = started  # time.monotonic() when the server started

    def endpoints(self) -> list[Endpoint]:
        """The rows, in the order ``/openapi.json`` lists them."""
        E = Endpoint
        return [
            E("POST", "/services", self.register_service, "Register (or overwrite) a service",
              ServiceRegistration, ServiceView, status=201, access="token"),
            E("GET", "/services", self.list_services, "Registered services", answer=ServiceList,
              query=("healthy", "status")),
            E("GET", "/services/{name}", self.get_service, "One service", answer=ServiceView),
            E("PUT", "/services/{name}", self.put_service, "Replace a service's description",
              ServiceRegistration, ServiceView, access="token"),
            E("DELETE", "/services/{name}", self.delete_service, "Deregister a service",
              status=204, access="token"),
            E("POST", "/services/{name}/heartbeat", self.service_heartbeat,
              "A service's heartbeat", ServiceHeartbeat, ServiceView, access="token"),
            E("GET", "/services/{name}/health", self.service_health, "A service's health",
              answer=ServiceHealth),
            E("GET", "/health", self.health, "The server's own state", answer=Health),
            E("GET", "/stats", self.stats, "The service registry in numbers", answer=Stats),
        ]  # fmt: skip

    async def register_service(self, request: Request) -> ServiceView:
        reg = await read_body(request, ServiceRegistration)
        return await self.state.register_service(reg, caller(request))

    async def list_services(self, request: Request) -> ServiceList:
        found = self.services.find(
            healthy=query_bool(request, "healthy"), status=request.query_params.get("status")
        )
        return ServiceList(count=len(found), services=found)

    async def get_service(self, request: Request) -> ServiceView:
        return self.services.get(request.path_params["name"])

    async def put_service(self, request: Request) -> ServiceView:
        reg = await read_body(request, ServiceRegistration)
        return await self.state.update_service(request.path_params["name"], reg, caller(request))

    async def delete_service(self, request: Request) -> None:
        await self.state.remove_service(request.path_params["name"], caller(request))

    async def service_heartbeat(self, request: Request) -> ServiceView:
        beat = await read_body(request, ServiceHeartbeat, empty=ServiceHeartbeat())
        name = request.path_params["name"]
        return await self.state.service_heartbeat(name, beat, caller(request))

    async def service_health(self, request: Request) -> ServiceHealth:
        return self.services.health(request.path_params["name"])

    async def health(self, request: Request) -> Health:
        total, online = self.hives.hive_count()
        frozen = self.hives.frozen
        stale = self.state.stale_for()
        return Health(
            status="degraded" if stale is not None else "frozen" if frozen else "ok",
            frozen=frozen,
            hives_total=total,
            hives_online=online,
            workers=self.hives.worker_counts()["total"],
            services=len(self.services),
            uptime_seconds=round(time.monotonic() - self.started, 3),
            state=self.state.kind,
            stale_seconds=stale,
        )

    async def stats(self, request: Request) -> Stats:
        return self.services.stats()
