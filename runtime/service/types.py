"""Request and response bodies of the runtime service, as msgspec types.

These are the service's own wire format (heartbeats, workers, scheduling, models, the service
registry); the static registry's formats live in :mod:`runtime.registry.wire`. Decoding a body
with these types is the service's only validation: a bad field is reported with its path
(``$.workers[0].state``), and everything downstream works on the decoded, typed values.
``/openapi.json`` is generated from them, and the Python client (:mod:`runtime.service.client`)
decodes the answers with them.

The service registry's routes (``/services``, ``/health``, ``/stats``) answer in the shapes of
the infini-registry they replace (``total``, ``last_heartbeat`` in epoch seconds,
``{"message", "service"}`` after a write, ...), with this service's own fields beside them
(``owner``, ``anonymous``, ``seconds_since_heartbeat``, ...): a JSON client of either reads what
it expects. What is stored (:class:`ServiceView`) is not what is answered
(:class:`ServiceAnswer`), so the stored form never changes with the wire.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from runtime.names import NAME_PATTERN
from runtime.registry.wire import MAX_ACTOR, MAX_REASON, AliasRecord

WorkerState = Literal["Idle", "Busy", "Loading"]
HealthStatus = Literal["healthy", "degraded"]
Backend = Literal["cpu", "cuda", "metal"]
HiveStatus = Literal["Unknown", "Online", "Offline"]

Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN, description="1-128 safe characters")]
Count = Annotated[int, msgspec.Meta(ge=0)]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Url = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s]+$", max_length=2048)]
AnyUrl = Annotated[str, msgspec.Meta(max_length=2048, description="a URL; http(s) to be probed")]
Text = Annotated[str, msgspec.Meta(max_length=256)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True, description="RFC 3339 with a UTC offset")]
Status = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Metadata = Annotated[dict[Text, Any], msgspec.Meta(max_length=64)]
Unset = msgspec.UnsetType
UNSET = msgspec.UNSET

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
    """A hive's resources from its workers' own reports: counts by state; VRAM, RAM and CPU
    summed (a missing value counts as 0: CPU percent is of one core, so 250 is two and a half
    cores busy); GPU load per worker and its mean over the workers that report one (None when
    none does), since the sum of percentages of different GPUs means nothing."""

    workers: int
    idle: int
    busy: int
    loading: int
    vram_bytes: int
    ram_bytes: int
    cpu_percent: float
    gpu_percent: float | None
    gpu_percent_per_worker: dict[str, float]


class WorkerView(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A worker with the hive it runs on and whether that hive is online."""

    hive_id: str
    online: bool
    worker: WorkerReport


class HiveView(msgspec.Struct, kw_only=True):
    """A hive: its last heartbeat and how old it is, its resources, and what the hive catalog
    knows of it (host, port, devices). ``status`` is ``Online`` (heard from within the TTL),
    ``Offline`` (silent, or evicted) or ``Unknown`` (in the catalog, not heard from since the
    server started): a hive known only from the catalog has no workers and no age."""

    hive_id: str
    status: HiveStatus
    online: bool
    age_seconds: float | None
    timestamp: datetime | None
    workers: list[WorkerReport]
    resources: Resources
    host: str | None = None
    port: int | None = None
    devices: list[str] = []


class HiveList(msgspec.Struct, kw_only=True):
    """``GET /v1/hives``: every hive held and every hive of the catalog (``total``), how many are
    online, and those the query asked for; ``stale`` when the list comes from a replica's mirror
    out of touch with the shared state."""

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


# -- models -----------------------------------------------------------------------------------


class ModelUse(msgspec.Struct, kw_only=True):
    """How often ``/v1/schedule`` answered for a model, and when it last did."""

    count: int
    last_used: datetime


class ModelPlace(msgspec.Struct, kw_only=True):
    """A worker on an online hive that has a model loaded."""

    hive_id: str
    worker_id: str
    state: WorkerState
    health_status: HealthStatus


class ModelView(msgspec.Struct, kw_only=True):
    """A model of ``GET /v1/models``: the registry's card (its other keys, such as the model's
    metadata, sit beside these in the JSON), where it is loaded now, and how much it is used.
    ``health`` is ``healthy`` when a healthy worker on an online hive has it loaded, else
    ``unavailable``; ``last_used`` is in epoch seconds (like ``created``)."""

    id: str
    object: str = "model"
    created: int | None = None
    owned_by: str | None = None
    description: str | None = None
    versions: list[str] = []
    targets: list[str] = []
    default: bool = False
    in_registry: bool = False
    health: Literal["healthy", "unavailable"] = "unavailable"
    hives: list[str] = []
    workers: list[ModelPlace] = []
    use_count: int = 0
    last_used: float | None = None


class ModelList(msgspec.Struct, kw_only=True):
    """``GET /v1/models``: the OpenAI-style list, each model with its live state."""

    object: str = "list"
    data: list[ModelView] = []
    registry: str | None = None
    stale: bool = False


# -- the service registry (the shapes of infini-registry, with ours beside them) --------------


class ServiceRegistration(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /services``: a service announcing itself. ``timestamp`` is accepted, as
    infini-registry's clients send it, and not used: the server stamps the registration."""

    name: Name
    host: Text
    port: Port
    hostname: Text | None = None
    url: AnyUrl | None = None
    status: Status = "running"
    metadata: Metadata = {}
    timestamp: Text | None = None


class ServiceUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``PUT /services/{name}``: the fields to change; a field left out keeps its value, and
    ``null`` clears ``hostname`` or ``url``. ``name``, when given, must be the path's."""

    name: Name | Unset = UNSET
    host: Text | Unset = UNSET
    port: Port | Unset = UNSET
    hostname: Text | Unset | None = UNSET
    url: AnyUrl | Unset | None = UNSET
    status: Status | Unset = UNSET
    metadata: Metadata | Unset = UNSET
    timestamp: Text | Unset | None = UNSET


class ServiceHeartbeat(msgspec.Struct, kw_only=True):
    """``POST /services/{name}/heartbeat``: optionally with a new status; other keys are
    ignored (an empty body is a heartbeat too)."""

    status: Status | None = None


class ServiceView(msgspec.Struct, kw_only=True):
    """A registered service as stored (the catalog, Redis), with its liveness and the result of
    the last active check.

    ``owner`` is the hive whose token registered it, or None when a token bound to no hive (an
    admin token) did, or when no token did: then ``anonymous`` is true (only with
    ``serve --allow-anonymous-services``), and anyone may change it.
    """

    name: str
    host: str
    port: int
    hostname: str | None
    url: str | None
    status: str
    metadata: dict[str, Any]
    timestamp: datetime
    last_heartbeat: datetime
    health_status: str
    is_healthy: bool
    owner: str | None = None
    anonymous: bool = False


class ServiceAnswer(msgspec.Struct, kw_only=True):
    """A service as the routes answer it: infini-registry's fields (``last_heartbeat`` in epoch
    seconds, ``timestamp`` the registration time) and ours (``owner``, ``anonymous``)."""

    name: str
    host: str
    port: int
    hostname: str | None
    url: str | None
    status: str
    timestamp: datetime
    last_heartbeat: float
    health_status: str
    is_healthy: bool
    metadata: dict[str, Any]
    owner: str | None
    anonymous: bool

    @classmethod
    def of(cls, view: ServiceView) -> ServiceAnswer:
        """The answer for a stored service."""
        return cls(
            name=view.name, host=view.host, port=view.port, hostname=view.hostname, url=view.url,
            status=view.status, timestamp=view.timestamp,
            last_heartbeat=round(view.last_heartbeat.timestamp(), 3),
            health_status=view.health_status, is_healthy=view.is_healthy, metadata=view.metadata,
            owner=view.owner, anonymous=view.anonymous,
        )  # fmt: skip


class ServiceWritten(msgspec.Struct, kw_only=True):
    """The answer to ``POST /services`` (201) and ``PUT /services/{name}``."""

    message: str
    service: ServiceAnswer


class ServiceRemoved(msgspec.Struct, kw_only=True):
    """The answer to ``DELETE /services/{name}``."""

    message: str


class ServiceBeaten(msgspec.Struct, kw_only=True):
    """The answer to a service's heartbeat: infini-registry's ``message`` and ``timestamp``,
    and the service as it is now."""

    message: str
    timestamp: datetime
    service: ServiceAnswer


class ServiceList(msgspec.Struct, kw_only=True):
    """``GET /services``: the services matching the query."""

    services: list[ServiceAnswer]
    total: int
    timestamp: datetime


class ServiceHealth(msgspec.Struct, kw_only=True):
    """``GET /services/{name}/health``: the result of a check run now (``probed`` is the URL it
    asked), and the service's liveness."""

    service: str
    health_status: str
    is_healthy: bool
    last_heartbeat: float
    timestamp: datetime
    status: str
    seconds_since_heartbeat: float
    probed: str


class Stats(msgspec.Struct, kw_only=True):
    """``GET /stats``: the service registry in numbers (``uptime`` in seconds)."""

    total_services: int
    healthy_services: int
    unhealthy_services: int
    status_distribution: dict[str, int]
    host_distribution: dict[str, int]
    uptime: float
    timestamp: datetime


class Health(msgspec.Struct, kw_only=True):
    """``GET /health``: the server's own state. ``status`` is ``healthy``; ``frozen`` when
    eviction is suspended; ``degraded`` while the shared state is unreachable (reads come from
    this replica's mirror, ``stale_seconds`` old; writes are refused). ``state`` is ``memory``
    or ``redis``."""

    status: Literal["healthy", "frozen", "degraded"]
    registry: str
    registered_services: int
    healthy_services: int
    timestamp: datetime
    frozen: bool
    hives_total: int
    hives_online: int
    workers: int
    uptime_seconds: float
    state: str = "memory"
    stale_seconds: float | None = None


# -- aliases ----------------------------------------------------------------------------------


class PromoteRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/promote``: point ``model@alias`` at ``version``."""

    model: Name
    alias: Name
    version: Name
    actor: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ACTOR)]
    reason: Annotated[str, msgspec.Meta(max_length=MAX_REASON)] = ""


class PromoteResponse(msgspec.Struct):
    """The record the promotion wrote, the races it lost, and follow-ups that failed."""

    record: AliasRecord
    retries: int
    warnings: tuple[str, ...] = ()


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every error answer: a message naming the problem, and the bad field's path when known."""

    error: str
    field: str | None = None
