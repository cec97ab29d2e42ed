"""The service registry: services announce themselves, send heartbeats, and are checked.

A service is healthy when its status is ``running``, it sent a heartbeat within
``healthy_within`` seconds (default 120), and the last active check did not fail. One silent for
``remove_after`` seconds (default 300) is no longer listed, and is removed from the store by the
next cleanup (every ``serve --cleanup-interval`` seconds, :meth:`ServiceRegistry.prune`). Every
change is written to the :class:`~runtime.service.catalog.Catalog`, so registrations survive a
restart.

A service belongs to whoever registered it, and keeps that owner through every change: ``owner``
is the hive of the registering token, or None for a token bound to no hive (an admin); a service
registered without a token (``serve --allow-anonymous-services``) is ``anonymous``. Every write
names its writer (``by``: a hive id, None for an admin, or
:data:`~runtime.service.tokens.ANONYMOUS`), and :func:`check_writer` is the one ownership rule:
anyone may change an anonymous service; an admin may change any service, a hive only its own; a
write without a token may not change a service that a token registered (401: send that token).
Ownership ends when the service is removed (DELETE, or ``remove_after`` seconds without a
heartbeat).

The write methods are the memory state's; the rules they apply (:meth:`ServiceRegistry.registered`,
``updated``, ``beaten``, ``removable``, ``checked``) take the current value and return the new one,
so a shared state (:mod:`runtime.service.state_redis`) applies the very same rules in its
compare-and-set loop, and keeps a ServiceRegistry as its read-only mirror.

The :class:`HealthChecker` probes every service each ``interval`` (30 s) with a ``timeout`` (5 s):
all probes run at once on the event loop, so one hung service delays no other. Replicas sharing a
state each run one; a service is probed by the replica that claims it for the interval
(:meth:`Checks.claim_check`), so once per interval in all. ``GET /services/{name}/health`` runs
one check at once (:meth:`HealthChecker.check_now`); a check that passes there counts as a
heartbeat, as in infini-registry.

A probe GETs the service's health endpoint (:func:`probe_url`): ``{url}/health`` (a ``url``
whose path already ends in ``/health`` as it is; without an http(s) ``url``,
``http://host:port/health``), and for a service whose ``metadata.type`` is ``openai-api`` its
babysitter's, ``http://host:(port + 1)/health``. A 2xx answer is up, a redirect (3xx with a
``Location``) is followed up to :data:`MAX_REDIRECTS` times, anything else (4xx, 5xx, no answer,
too many redirects) is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol

import msgspec

from runtime.errors import RegistryError
from runtime.service.catalog import Catalog
from runtime.service.tokens import ANONYMOUS, Writer
from runtime.service.types import (
    UNSET,
    ServiceHealth,
    ServiceHeartbeat,
    ServiceRegistration,
    ServiceUpdate,
    ServiceView,
    Stats,
)
from runtime.storage.location import redact

log = logging.getLogger(__name__)

Probe = Callable[[str, float], Awaitable[bool]]

_UPDATABLE = ("host", "port", "hostname", "url", "status", "metadata")

MAX_REDIRECTS = 5
MAX_HEADER_LINES = 100


class UnknownService(RegistryError, LookupError):
    """Raised when a request names a service that is not registered (or was removed)."""


class ServiceNameMismatch(RegistryError, ValueError):
    """Raised when ``PUT /services/{name}`` carries a body whose ``name`` is another service."""


class ServiceOwned(RegistryError, PermissionError):
    """Raised when a token bound to one hive changes a service that another hive, or an admin
    token, registered (403)."""


class ServiceNeedsToken(RegistryError, PermissionError):
    """Raised when a write without a token (``--allow-anonymous-services``) changes a service
    that was registered with a token (401: send a token of its owner)."""


def check_writer(service: ServiceView, by: Writer) -> None:
    """The ownership rule: ``by`` (a hive id, None for an admin token, or ANONYMOUS) may change
    ``service`` when the service is anonymous, ``by`` is an admin, or ``by`` is the hive that owns
    it; else raise :class:`ServiceOwned` (or :class:`ServiceNeedsToken` for no token)."""
    if service.anonymous or by is None or by == service.owner:
        return
    if by is ANONYMOUS:
        raise _needs_token(service)
    if service.owner is None:
        raise ServiceOwned(
            f"service {service.name!r} was registered with an admin token and this token is "
            f"bound to hive {by!r}; use an admin token (bound to no hive)"
        )
    raise ServiceOwned(
        f"service {service.name!r} belongs to hive {service.owner!r} and this token is bound to "
        f"hive {by!r}; use a token of hive {service.owner!r} or an admin token (bound to no hive)"
    )


def _needs_token(service: ServiceView) -> ServiceNeedsToken:
    if service.owner is None:
        whose = "was registered with an admin token"
        fix = "an admin token (bound to no hive)"
    else:
        whose = f"belongs to hive {service.owner!r}"
        fix = f"a token of hive {service.owner!r} or an admin token"
    return ServiceNeedsToken(
        f"service {service.name!r} {whose} and this request has no token; send "
        f"'Authorization: Bearer <token>' with {fix}"
    )


def probe_url(service: ServiceView) -> str:
    """The URL a health check of ``service`` GETs (see the module notes)."""
    host = f"[{service.host}]" if ":" in service.host else service.host
    if service.metadata.get("type") == "openai-api":
        return f"http://{host}:{service.port + 1}/health"
    url = service.url if service.url and service.url.startswith(("http://", "https://")) else None
    parts = urllib.parse.urlsplit(url or f"http://{host}:{service.port}")
    path = parts.path.rstrip("/")
    if not path.endswith("/health"):
        path += "/health"
    return urllib.parse.urlunsplit(parts._replace(path=path))


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ServiceRegistry:
    """Registered services, persisted in ``catalog``, judged on the wall clock ``now``."""

    def __init__(
        self,
        catalog: Catalog | None = None,
        *,
        now: Callable[[], datetime] = _utcnow,
        healthy_within: float = 120.0,
        remove_after: float = 300.0,
    ) -> None:
        self.catalog = catalog
        self.now = now
        self.healthy_within = healthy_within
        self.remove_after = remove_after
        self.started = time.monotonic()
        self._services = {s.name: s for s in (catalog.services() if catalog else [])}

    # -- writes (the memory state's) -----------------------------------------------------------

    def register(self, reg: ServiceRegistration, *, by: Writer = None) -> ServiceView:
        """Add a service owned by ``by``, or overwrite the one of the same name (``by`` must be
        allowed to change it; its owner stays). ``by`` is the writer's hive, None for an admin,
        or ANONYMOUS."""
        return self._store(self.registered(self._services.get(reg.name), reg, by))

    def update(self, name: str, change: ServiceUpdate, *, by: Writer = None) -> ServiceView:
        """Change the fields ``change`` gives of a registered service; raises
        :class:`UnknownService`, :class:`ServiceOwned` or :class:`ServiceNameMismatch`."""
        return self._store(self.updated(self._services.get(name), name, change, by))

    def heartbeat(self, name: str, beat: ServiceHeartbeat, *, by: Writer = None) -> ServiceView:
        """Record a heartbeat (and optionally a new status); raises :class:`UnknownService` or
        :class:`ServiceOwned`."""
        return self._store(self.beaten(self._services.get(name), name, beat, by))

    def record_check(self, name: str, up: bool, *, beat: bool = False) -> None:
        """Store an active check's result, a passing one as a heartbeat too with ``beat``
        (ignored if the service went away meanwhile)."""
        changed = self.checked(self._services.get(name), up, beat=beat)
        if changed is not None:
            self._store(changed)

    def remove(self, name: str, *, by: Writer = None) -> None:
        """Deregister a service; raises :class:`UnknownService` or :class:`ServiceOwned`."""
        self.removable(self._services.get(name), name, by)
        self._drop(name)

    # -- the rules: what a write makes of the current value (None: not registered) ------------

    def registered(
        self, current: ServiceView | None, reg: ServiceRegistration, by: Writer
    ) -> ServiceView:
        """The service ``reg`` registers over ``current``: a silent service's name is free
        again, not held by its old owner; else ``by`` must be allowed to change it."""
        current = self._live(current)
        if current is None:
            return self._new(reg, None if by is ANONYMOUS else by, anonymous=by is ANONYMOUS)
        check_writer(current, by)
        return self._new(reg, current.owner, anonymous=current.anonymous)

    def updated(
        self, current: ServiceView | None, name: str, change: ServiceUpdate, by: Writer
    ) -> ServiceView:
        """``current`` with the fields ``change`` gives (``PUT /services/{name}``), heard from
        now; a new health endpoint is not checked yet (``unknown``)."""
        found = self._writable(current, name, by)
        if change.name is not UNSET and change.name != name:
            raise ServiceNameMismatch(
                f"$.name: the body names service {change.name!r} but the path names {name!r}; "
                "use the same name in both (POST /services registers a new one)"
            )
        given = {f: v for f in _UPDATABLE if (v := getattr(change, f)) is not UNSET}
        new = msgspec.structs.replace(found, **given, last_heartbeat=self.now())
        if probe_url(new) != probe_url(found):
            new = msgspec.structs.replace(new, health_status="unknown")
        return new

    def beaten(
        self, current: ServiceView | None, name: str, beat: ServiceHeartbeat, by: Writer
    ) -> ServiceView:
        """``current`` after a heartbeat (and optionally a new status)."""
        found = self._writable(current, name, by)
        status = found.status if beat.status is None else beat.status
        return msgspec.structs.replace(found, last_heartbeat=self.now(), status=status)

    def removable(self, current: ServiceView | None, name: str, by: Writer) -> None:
        """Raise unless ``by`` may deregister ``current``."""
        self._writable(current, name, by)

    def checked(
        self, current: ServiceView | None, up: bool, *, beat: bool = False
    ) -> ServiceView | None:
        """``current`` with an active check's result (a passing one heard from now, with
        ``beat``); None when nothing changes."""
        health = "healthy" if up else "unhealthy"
        if current is None:
            return None
        if up and beat:
            return msgspec.structs.replace(current, health_status=health, last_heartbeat=self.now())
        if current.health_status == health:
            return None
        return msgspec.structs.replace(current, health_status=health)

    def silent(self, current: ServiceView) -> bool:
        """Whether ``current`` has been silent longer than ``remove_after`` (it is removed)."""
        return (self.now() - current.last_heartbeat).total_seconds() > self.remove_after

    # -- the view (the memory state's, or a mirror of a shared one) ---------------------------

    def put(self, service: ServiceView) -> None:
        """Hold ``service`` as a shared state stored it (no catalog write)."""
        self._services[service.name] = service

    def discard(self, name: str) -> None:
        """Forget a service the shared state removed (no-op when not held)."""
        self._services.pop(name, None)

    def held(self) -> dict[str, ServiceView]:
        """Every service held, by name (as stored, without fresh health fields)."""
        return dict(self._services)

    def replace_all(self, services: Iterable[ServiceView]) -> None:
        """Hold exactly ``services``, as a shared state's snapshot says."""
        self._services = {s.name: s for s in services}

    def judged(self, service: ServiceView) -> ServiceView:
        """``service`` with its health fields as of now."""
        return self._judged(service, self.now())

    def get(self, name: str) -> ServiceView:
        """A service with fresh health fields; raises :class:`UnknownService`."""
        return self._judged(self._get(name), self.now())

    def find(self, *, healthy: bool | None = None, status: str | None = None) -> list[ServiceView]:
        """Services by name, filtered by health and status when given."""
        self.prune()
        now = self.now()
        views = [self._judged(self._services[n], now) for n in sorted(self._services)]
        return [
            v
            for v in views
            if (healthy is None or v.is_healthy == healthy)
            and (status is None or v.status == status)
        ]

    def health(self, name: str, probed: str) -> ServiceHealth:
        """A service's health after a check of ``probed``; raises :class:`UnknownService`."""
        view = self.get(name)
        now = self.now()
        return ServiceHealth(
            service=name,
            health_status=view.health_status,
            is_healthy=view.is_healthy,
            last_heartbeat=round(view.last_heartbeat.timestamp(), 3),
            timestamp=now,
            status=view.status,
            seconds_since_heartbeat=round((now - view.last_heartbeat).total_seconds(), 3),
            probed=redact(probed),
        )

    def stats(self) -> Stats:
        """Totals, health, status and host distributions, and uptime."""
        views = self.find()
        healthy = sum(v.is_healthy for v in views)
        return Stats(
            total_services=len(views),
            healthy_services=healthy,
            unhealthy_services=len(views) - healthy,
            status_distribution=dict(Counter(v.status for v in views)),
            host_distribution=dict(Counter(v.host for v in views)),
            uptime=round(time.monotonic() - self.started, 3),
            timestamp=self.now(),
        )

    def prune(self) -> list[str]:
        """Remove services silent for longer than ``remove_after``; returns their names."""
        gone = [s.name for s in self._services.values() if self.silent(s)]
        for name in gone:
            self._drop(name)
        return gone

    def probe_targets(self) -> dict[str, str]:
        """Service name -> the URL an active check asks."""
        return {s.name: probe_url(s) for s in self._services.values()}

    def __len__(self) -> int:
        return len(self._services)

    def _get(self, name: str) -> ServiceView:
        service = self._services.get(name)
        if service is None:
            raise self._unknown(name)
        return service

    def _unknown(self, name: str) -> UnknownService:
        return UnknownService(
            f"service {name!r} is not registered (or was removed after "
            f"{self.remove_after:g} s without a heartbeat); register it with POST /services"
        )

    def _live(self, current: ServiceView | None) -> ServiceView | None:
        return None if current is None or self.silent(current) else current

    def _writable(self, current: ServiceView | None, name: str, by: Writer) -> ServiceView:
        if current is None:
            raise self._unknown(name)
        check_writer(current, by)
        return current

    def _drop(self, name: str) -> None:
        del self._services[name]
        if self.catalog:
            self.catalog.delete_service(name)

    def _new(self, reg: ServiceRegistration, owner: str | None, *, anonymous: bool) -> ServiceView:
        now = self.now()
        return ServiceView(
            name=reg.name,
            host=reg.host,
            port=reg.port,
            hostname=reg.hostname,
            url=reg.url,
            status=reg.status,
            metadata=dict(reg.metadata),
            timestamp=now,
            last_heartbeat=now,
            health_status="unknown",
            is_healthy=False,
            owner=owner,
            anonymous=anonymous,
        )

    def _store(self, service: ServiceView) -> ServiceView:
        self._services[service.name] = service
        if self.catalog:
            self.catalog.save_service(service)
        return self._judged(service, self.now())

    def _judged(self, service: ServiceView, now: datetime) -> ServiceView:
        fresh = (now - service.last_heartbeat).total_seconds() <= self.healthy_within
        healthy = service.status == "running" and fresh and service.health_status != "unhealthy"
        return msgspec.structs.replace(service, is_healthy=healthy)


class Checks(Protocol):
    """What the health checker needs from a state (:class:`runtime.service.state.State`)."""

    @property
    def services(self) -> ServiceRegistry:
        """The services to check."""
        ...

    async def claim_check(self, name: str, interval: float) -> bool:
        """Whether this process checks ``name`` in this interval (no other replica does)."""
        ...

    async def record_check(self, name: str, up: bool, *, beat: bool = False) -> None:
        """Store a check's result (a passing one as a heartbeat too, with ``beat``)."""
        ...


class HealthChecker:
    """Probes every registered service each ``interval`` seconds, all at once; with replicas
    sharing a state, each service is probed by the one replica that claims it."""

    def __init__(
        self,
        state: Checks,
        *,
        interval: float = 30.0,
        timeout: float = 5.0,
        probe: Probe | None = None,
    ) -> None:
        self.state = state
        self.interval = interval
        self.timeout = timeout
        self.probe = probe or http_probe

    async def check_all(self) -> dict[str, bool]:
        """Probe every service this process claims, concurrently; store and return the
        results."""
        targets = self.state.services.probe_targets()
        names = [n for n in targets if await self.state.claim_check(n, self.interval)]
        results = await asyncio.gather(*(self._check(targets[n]) for n in names))
        for name, up in zip(names, results, strict=True):
            await self.state.record_check(name, up)
        return dict(zip(names, results, strict=True))

    async def check_now(self, name: str) -> ServiceHealth:
        """Probe one service at once (``GET /services/{name}/health``); a passing check counts
        as its heartbeat. Raises :class:`UnknownService`."""
        services = self.state.services
        url = probe_url(services.get(name))
        up = await self._check(url)
        await self.state.record_check(name, up, beat=up)
        return services.health(name, url)

    async def run(self) -> None:
        """Check forever, every ``interval`` seconds (cancel the task to stop)."""
        while True:
            try:
                await self.check_all()
            except Exception:  # a bad round must not end the checks for good
                log.exception("service health checks failed; retrying in %g s", self.interval)
            await asyncio.sleep(self.interval)

    async def _check(self, url: str) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                return await self.probe(url, self.timeout)
        except TimeoutError:
            log.info("health check of %s timed out after %g s", url, self.timeout)
            return False


class Pruning(Protocol):
    """What the cleanup needs from a state (:class:`runtime.service.state.State`)."""

    async def prune_services(self) -> list[str]:
        """Remove the silent services; their names."""
        ...


async def clean_up(state: Pruning, interval: float) -> None:
    """Remove the services silent for longer than ``remove_after`` from the store, every
    ``interval`` seconds, forever (``serve --cleanup-interval``; cancel the task to stop)."""
    while True:
        await asyncio.sleep(interval)
        try:
            gone = await state.prune_services()
        except Exception:  # a bad round must not end the cleanup for good
            log.exception("service cleanup failed; retrying in %g s", interval)
            continue
        if gone:
            log.info("removed %d silent services: %s", len(gone), ", ".join(gone[:10]))


async def http_probe(url: str, timeout: float) -> bool:
    """True when a GET of ``url`` answers 2xx within ``timeout``, following at most
    :data:`MAX_REDIRECTS` redirects; a 4xx, a 5xx, no answer or a redirect loop is False."""
    try:
        async with asyncio.timeout(timeout):
            for _ in range(MAX_REDIRECTS + 1):
                status, location = await _ask(url)
                if not (300 <= status < 400 and location):
                    return 200 <= status < 300
                url = urllib.parse.urljoin(url, location)
    except (OSError, TimeoutError, ValueError, UnicodeError):
        return False
    log.info("health check of %s: more than %d redirects", url, MAX_REDIRECTS)
    return False


async def _ask(url: str) -> tuple[int, str | None]:
    """One GET of ``url``: the status (0 when the answer is not HTTP) and any ``Location``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url[:60]!r}")
    https = parts.scheme == "https"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n"
        "User-Agent: registry-runtime-health\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection(
        parts.hostname, parts.port or (443 if https else 80), ssl=True if https else None
    )
    try:
        writer.write(request.encode())
        await writer.drain()
        return await _read_head(reader)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, str | None]:
    fields = (await reader.readline()).split()
    ok = len(fields) >= 2 and fields[0].startswith(b"HTTP/") and fields[1].isdigit()
    status = int(fields[1]) if ok else 0
    location = None
    for _ in range(MAX_HEADER_LINES):
        line = await reader.readline()
        if not line.strip():
            break
        key, _, value = line.decode("latin-1").partition(":")
        if key.strip().lower() == "location":
            location = value.strip()
    return status, location
