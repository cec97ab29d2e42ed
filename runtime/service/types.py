"""Request and response bodies of the runtime service, as msgspec types.

These are the service's own wire format (heartbeats, workers, scheduling, the service registry);
the static registry's formats live in :mod:`runtime.registry.wire`. Decoding a body with these
types is the
service's only validation: a bad field is reported with its path (``$.workers[0].state``), and
everything downstream works on the decoded, typed values. ``/openapi.json`` is generated from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from runtime.names import NAME_PATTERN

WorkerState = Literal["Idle", "Busy", "Loading"]
HealthStatus = Literal["healthy", "degraded"]
Backend = Literal["cpu", "cuda", "metal"]
HiveStatus = Literal["Unknown", "Online", "Offline"]

Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN, description="1-128 safe characters")]
Count = Annotated[int, msgspec.Meta(ge=0)]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Url = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s]+$", max_length=2048)]
Text = Annotated[str, msgspec.Meta(max_length=256)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True, description="RFC 3339 with a UTC offset")]

MAX_WORKERS = 256


class WorkerReport(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One worker as its hive reports it in a heartbeat."""

    worker_id: Name
    state: WorkerState
    last_heartbeat: Timestamp
    health_status: HealthStatus
    url: Url | None = None
    model_id: Name | None = None
    backend: Backend | None = None
    device_id: Count | None = None
    vram_bytes: Count | None = None
    ram_bytes: Count | None = None
    cpu_percent: Percent | None = None
    gpu_percent: Percent | None = None


class HiveHeartbeat(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/heartbeat``: a hive's full state; it replaces what the server knew."""

    hive_id: Name
    timestamp: Timestamp
    workers: Annotated[list[WorkerReport], msgspec.Meta(max_length=MAX_WORKERS)]
    host: Text | None = None
    port: Port | None = None
    devices: Annotated[list[Text], msgspec.Meta(max_length=64)] | None = None


class WorkerHeartbeat(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/worker-heartbeat``: one worker's health, between its hive's heartbeats."""

    worker_id: Name
    timestamp: Timestamp
    health_status: HealthStatus


class Resources(msgspec.Struct, kw_only=True):
    """A hive's resources, summed from its workers' own reports (missing values count as 0)."""

    workers: int
    idle: int
    busy: int
    loading: int
    vram_bytes: int
    ram_bytes: int
    cpu_percent: float
    gpu_percent: float


class WorkerView(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A worker with the hive it runs on and whether that hive is online."""

    hive_id: str
    online: bool
    worker: WorkerReport


class HiveView(msgspec.Struct, kw_only=True):
    """A hive's last heartbeat, how old it is, and its summed resources."""

    hive_id: str
    online: bool
    age_seconds: float
    timestamp: datetime
    workers: list[WorkerReport]
    resources: Resources


class HiveList(msgspec.Struct, kw_only=True):
    """``GET /v1/hives``: every hive the server holds, and how many are online; ``stale`` when
    the list comes from a replica's mirror out of touch with the shared state."""

    total: int
    online: int
    frozen: bool
    hives: list[HiveView]
    stale: bool = False


class WorkerList(msgspec.Struct, kw_only=True):
    """``GET /v1/workers``: the workers matching the query, and all online workers by state."""

    count: int
    counts: dict[str, int]
    workers: list[WorkerView]


class ScheduleAnswer(msgspec.Struct, kw_only=True):
    """``GET /v1/schedule``: the chosen worker and how old the data behind the choice is;
    ``stale`` when it comes from a replica's mirror out of touch with the shared state."""

    model: str
    model_loaded: bool
    candidates: int
    data_age_seconds: float
    worker: WorkerView
    stale: bool = False


class Accepted(msgspec.Struct, kw_only=True):
    """The answer to a heartbeat."""

    hive_id: str
    workers: int
    ttl_seconds: float


class ServiceRegistration(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /services`` and ``PUT /services/{name}``: a service announcing itself."""

    name: Name
    host: Text
    port: Port
    hostname: Text | None = None
    url: Url | None = None
    status: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,31}$")] = "running"
    metadata: Annotated[dict[str, Text], msgspec.Meta(max_length=64)] = {}


class ServiceHeartbeat(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /services/{name}/heartbeat``: optionally with a new status."""

    status: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,31}$")] | None = None


class ServiceView(msgspec.Struct, kw_only=True):
    """A registered service with its liveness and the result of the last active check.

    ``owner`` is the hive whose token registered it, or None when a token bound to no hive (an
    admin token) did: only a token of that hive, or an admin token, may change it.
    """

    name: str
    host: str
    port: int
    hostname: str | None
    url: str | None
    status: str
    metadata: dict[str, str]
    timestamp: datetime
    last_heartbeat: datetime
    health_status: str
    is_healthy: bool
    owner: str | None = None


class ServiceList(msgspec.Struct, kw_only=True):
    """``GET /services``: the services matching the query."""

    count: int
    services: list[ServiceView]


class ServiceHealth(msgspec.Struct, kw_only=True):
    """``GET /services/{name}/health``."""

    name: str
    is_healthy: bool
    health_status: str
    status: str
    seconds_since_heartbeat: float


class Stats(msgspec.Struct, kw_only=True):
    """``GET /stats``: the service registry in numbers."""

    total: int
    healthy: int
    unhealthy: int
    statuses: dict[str, int]
    hosts: dict[str, int]
    uptime_seconds: float


class Health(msgspec.Struct, kw_only=True):
    """``GET /health``: the server's own state: ``frozen`` when eviction is suspended,
    ``degraded`` while the shared state is unreachable (reads come from this replica's mirror,
    ``stale_seconds`` old; writes are refused). ``state`` is ``memory`` or ``redis``."""

    status: Literal["ok", "frozen", "degraded"]
    frozen: bool
    hives_total: int
    hives_online: int
    workers: int
    services: int
    uptime_seconds: float
    state: str = "memory"
    stale_seconds: float | None = None


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every error answer: a message naming the problem, and the bad field's path when known."""

    error: str
    field: str | None = None
