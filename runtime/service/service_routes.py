"""The routes of the service registry (``/services``), and the server's own ``/health``, ``/stats``.

They answer in the shapes of infini-registry, so that its clients work unchanged (seed 003): a
write answers ``{"message": ..., "service": {...}}`` (201 for ``POST /services``), ``DELETE``
answers 200 with a ``message``, a heartbeat ``{"message": "Heartbeat received", "timestamp"}``,
a list ``{"services", "total", "timestamp"}``; ``last_heartbeat`` is in epoch seconds;
``PUT /services/{name}`` changes only the fields it is given; ``GET /services/{name}/health``
probes the service's health endpoint now. ``/health`` and ``/stats`` have infini-registry's keys
too. This service's own fields sit beside them (:mod:`runtime.service.types`).

Services belong to the token that registered them. A service registered with a token bound to
a hive belongs to that hive (``owner``, stored with the service, so it survives a restart); one
registered with a token bound to no hive (an admin token) belongs to no hive. Only a token bound
to the owning hive, or an admin token, may overwrite it (``POST /services`` again), ``PUT`` it,
send its heartbeat or ``DELETE`` it; every change keeps the owner. No token or an unknown one is
a 401, a token of another hive a 403 naming the owner. The name is free again once the service
is removed (``DELETE``, or five minutes without a heartbeat).

infini-registry's clients send no token. ``serve --allow-anonymous-services`` (off by default)
lets a service write come without one: the service it registers is ``anonymous``, and anyone
(with a token or without) may change it; a service registered with a token still belongs to its
owner, and a write without a token is refused it (401). Every service write passes its writer
(:func:`~runtime.service.endpoints.writer`) to the registry, which applies the one rule,
:func:`runtime.service.services.check_writer`.
"""

from __future__ import annotations

import time

from starlette.requests import Request

from runtime.service.endpoints import Endpoint, query_bool, read_body, writer
from runtime.service.services import HealthChecker
from runtime.service.state import State
from runtime.service.types import (
    Health,
    ServiceAnswer,
    ServiceBeaten,
    ServiceHealth,
    ServiceHeartbeat,
    ServiceList,
    ServiceRegistration,
    ServiceRemoved,
    ServiceUpdate,
    ServiceWritten,
    Stats,
)


class ServiceRoutes:
    """The handlers over the state's services; ``/health`` reads its hives too."""

    def __init__(self, state: State, checker: HealthChecker, started: float) -> None:
        self.state = state
        self.checker = checker
        self.services = state.services
        self.hives = state.hives
        self.started = started  # time.monotonic() when the server started

    def endpoints(self) -> list[Endpoint]:
        """The rows, in the order ``/openapi.json`` lists them."""
        E = Endpoint
        return [
            E("POST", "/services", self.register_service, "Register (or overwrite) a service",
              ServiceRegistration, ServiceWritten, status=201, access="service"),
            E("GET", "/services", self.list_services, "Registered services", answer=ServiceList,
              query=("healthy", "status")),
            E("GET", "/services/{name}", self.get_service, "One service", answer=ServiceAnswer),
            E("PUT", "/services/{name}", self.put_service, "Change fields of a service",
              ServiceUpdate, ServiceWritten, access="service"),
            E("DELETE", "/services/{name}", self.delete_service, "Deregister a service",
              answer=ServiceRemoved, access="service"),
            E("POST", "/services/{name}/heartbeat", self.service_heartbeat,
              "A service's heartbeat", ServiceHeartbeat, ServiceBeaten, access="service"),
            E("GET", "/services/{name}/health", self.service_health,
              "Check a service's health endpoint now", answer=ServiceHealth),
            E("GET", "/health", self.health, "The server's own state", answer=Health),
            E("GET", "/stats", self.stats, "The service registry in numbers", answer=Stats),
        ]  # fmt: skip

    async def register_service(self, request: Request) -> ServiceWritten:
        reg = await read_body(request, ServiceRegistration)
        view = await self.state.register_service(reg, writer(request))
        message = f"Service '{reg.name}' registered successfully"
        return ServiceWritten(message=message, service=ServiceAnswer.of(view))

    async def list_services(self, request: Request) -> ServiceList:
        found = self.services.find(
            healthy=query_bool(request, "healthy"), status=request.query_params.get("status")
        )
        answers = [ServiceAnswer.of(v) for v in found]
        return ServiceList(services=answers, total=len(answers), timestamp=self.services.now())

    async def get_service(self, request: Request) -> ServiceAnswer:
        return ServiceAnswer.of(self.services.get(request.path_params["name"]))

    async def put_service(self, request: Request) -> ServiceWritten:
        change = await read_body(request, ServiceUpdate)
        name = request.path_params["name"]
        view = await self.state.update_service(name, change, writer(request))
        message = f"Service '{name}' updated successfully"
        return ServiceWritten(message=message, service=ServiceAnswer.of(view))

    async def delete_service(self, request: Request) -> ServiceRemoved:
        name = request.path_params["name"]
        await self.state.remove_service(name, writer(request))
        return ServiceRemoved(message=f"Service '{name}' unregistered successfully")

    async def service_heartbeat(self, request: Request) -> ServiceBeaten:
        beat = await read_body(request, ServiceHeartbeat, empty=ServiceHeartbeat())
        name = request.path_params["name"]
        view = await self.state.service_heartbeat(name, beat, writer(request))
        return ServiceBeaten(
            message="Heartbeat received", timestamp=view.last_heartbeat,
            service=ServiceAnswer.of(view),
        )  # fmt: skip

    async def service_health(self, request: Request) -> ServiceHealth:
        return await self.checker.check_now(request.path_params["name"])

    async def health(self, request: Request) -> Health:
        total, online = self.hives.hive_count()
        frozen = self.hives.frozen
        stale = self.state.stale_for()
        services = self.services.find()
        return Health(
            status="degraded" if stale is not None else "frozen" if frozen else "healthy",
            registry="running",
            registered_services=len(services),
            healthy_services=sum(s.is_healthy for s in services),
            timestamp=self.services.now(),
            frozen=frozen,
            hives_total=total,
            hives_online=online,
            workers=self.hives.worker_counts()["total"],
            uptime_seconds=round(time.monotonic() - self.started, 3),
            state=self.state.kind,
            stale_seconds=stale,
        )

    async def stats(self, request: Request) -> Stats:
        return self.services.stats()
