"""The service registry and its active health checks, against real local HTTP services."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.service import (
    T0,
    FakeWallClock,
    LocalService,
    closed_port_url,
    hung_service,
    status_server,
)

from runtime.service.catalog import Catalog
from runtime.service.services import (
    HealthChecker,
    ServiceNameMismatch,
    ServiceOwned,
    ServiceRegistry,
    UnknownService,
    http_probe,
)
from runtime.service.state_memory import MemoryState
from runtime.service.types import ServiceHeartbeat, ServiceRegistration, ServiceUpdate, Stats


def reg(name: str, **fields: object) -> ServiceRegistration:
    return ServiceRegistration(name=name, host=str(fields.pop("host", "10.0.0.1")), port=8080,
                               **fields)  # type: ignore[arg-type]  # fmt: skip


def test_register_overwrite_and_read() -> None:
    wall = FakeWallClock()
    services = ServiceRegistry(now=wall)
    first = services.register(reg("api", metadata={"v": "1"}))
    assert (first.timestamp, first.last_heartbeat, first.is_healthy) == (T0, T0, True)
    assert first.health_status == "unknown"
    services.register(reg("api", metadata={"v": "2"}))
    assert services.get("api").metadata == {"v": "2"}
    assert len(services) == 1


def test_health_follows_heartbeats_and_status() -> None:
    wall = FakeWallClock()
    services = ServiceRegistry(now=wall)
    services.register(reg("api"))
    wall.advance(121)
    assert not services.get("api").is_healthy
    health = services.health("api", "http://10.0.0.1:8080/health")
    assert (health.is_healthy, health.seconds_since_heartbeat) == (False, 121.0)
    assert health.last_heartbeat == T0.timestamp()
    services.heartbeat("api", ServiceHeartbeat())
    assert services.get("api").is_healthy
    services.heartbeat("api", ServiceHeartbeat(status="draining"))
    assert (services.get("api").status, services.get("api").is_healthy) == ("draining", False)
    wall.advance(301)
    assert services.find() == []
    with pytest.raises(UnknownService) as err:
        services.get("api")
    assert str(err.value) == (
        "service 'api' is not registered (or was removed after 300 s without a heartbeat); "
        "register it with POST /services"
    )


def test_find_and_stats() -> None:
    wall = FakeWallClock()
    services = ServiceRegistry(now=wall)
    services.register(reg("a", host="n1"))
    services.register(reg("b", host="n1", status="stopped"))
    services.register(reg("c", host="n2"))
    services.record_check("c", up=False)
    assert [s.name for s in services.find(healthy=True)] == ["a"]
    assert [s.name for s in services.find(healthy=False)] == ["b", "c"]
    assert [s.name for s in services.find(status="running")] == ["a", "c"]
    stats = services.stats()
    assert stats == Stats(
        total_services=3, healthy_services=1, unhealthy_services=2,
        status_distribution={"running": 2, "stopped": 1}, host_distribution={"n1": 2, "n2": 1},
        uptime=stats.uptime, timestamp=T0,
    )  # fmt: skip


def test_update_and_remove() -> None:
    services = ServiceRegistry(now=FakeWallClock())
    with pytest.raises(UnknownService):
        services.update("api", ServiceUpdate())
    services.register(reg("api"))
    assert services.update("api", ServiceUpdate(hostname="box")).hostname == "box"
    with pytest.raises(ServiceNameMismatch) as err:
        services.update("api", ServiceUpdate(name="web"))
    assert str(err.value) == (
        "$.name: the body names service 'web' but the path names 'api'; use the same name in "
        "both (POST /services registers a new one)"
    )
    services.remove("api")
    with pytest.raises(UnknownService):
        services.remove("api")


def test_services_persist_in_the_catalog(tmp_path: Path) -> None:
    wall = FakeWallClock()
    cat = Catalog(tmp_path / "c.db", now=wall)
    ServiceRegistry(cat, now=wall).register(reg("api", url="http://10.0.0.1:8080/health"))
    cat.close()
    again = ServiceRegistry(Catalog(tmp_path / "c.db", now=wall), now=wall)
    assert again.get("api").url == "http://10.0.0.1:8080/health"


def test_a_service_that_goes_down_and_comes_back() -> None:
    service = LocalService()
    state = MemoryState.open()
    services = state.services
    services.register(reg("api", host="127.0.0.1", url=service.url))
    checker = HealthChecker(state, timeout=2.0)
    service.start()
    try:
        assert asyncio.run(checker.check_all()) == {"api": True}
        assert services.get("api").health_status == "healthy"
        service.stop()
        assert asyncio.run(checker.check_all()) == {"api": False}
        assert (services.get("api").health_status, services.get("api").is_healthy) == (
            "unhealthy",
            False,
        )
        service.start()
        assert asyncio.run(checker.check_all()) == {"api": True}
        assert services.get("api").is_healthy
    finally:
        service.stop()


def test_a_hung_service_delays_no_other() -> None:
    service = LocalService()
    service.start()
    state = MemoryState.open()
    try:
        with hung_service() as hung:
            for i in range(3):
                state.services.register(reg(f"hung{i}", url=hung))
            state.services.register(reg("ok", url=service.url))
            checker = HealthChecker(state, timeout=0.5)
            started = time.monotonic()
            results = asyncio.run(checker.check_all())
            elapsed = time.monotonic() - started
    finally:
        service.stop()
    assert results == {"hung0": False, "hung1": False, "hung2": False, "ok": True}
    assert elapsed < 1.0  # three 0.5 s timeouts, run at once


@pytest.mark.parametrize(
    ("path", "up"),
    [
        ("/200", True),
        ("/204", True),
        ("/404", False),
        ("/500", False),
        ("/503", False),
        ("/302?to=/200", True),
        ("/301?to={base}/204", True),  # an absolute Location
        ("/307?to=/302%3Fto%3D/200", True),  # two hops
        ("/302?to=/404", False),
        ("/302", False),  # a redirect that says nowhere
        ("/loop", False),  # followed MAX_REDIRECTS times, then down
    ],
)
def test_probe_counts_only_2xx_after_redirects(path: str, up: bool) -> None:
    with status_server() as base:
        assert asyncio.run(http_probe(base + path.format(base=base), 2.0)) is up


def test_probe_fails_on_nothing() -> None:
    assert not asyncio.run(http_probe(closed_port_url(), 2.0))  # connection refused
    assert not asyncio.run(http_probe("http://[::1", 2.0))
    assert not asyncio.run(http_probe("ftp://127.0.0.1/", 2.0))


def test_a_service_answering_404_is_unhealthy() -> None:
    state = MemoryState.open()
    services = state.services
    with status_server() as base:
        services.register(reg("missing", url=f"{base}/404"))
        services.register(reg("moved", url=f"{base}/302?to=/200"))
        services.register(reg("gone", url=closed_port_url()))
        results = asyncio.run(HealthChecker(state, timeout=2.0).check_all())
    assert results == {"missing": False, "moved": True, "gone": False}
    assert (services.get("missing").health_status, services.get("missing").is_healthy) == (
        "unhealthy",
        False,
    )
    assert services.get("moved").is_healthy


# -- ownership ------------------------------------------------------------------------------


def test_a_hive_changes_only_its_own_services() -> None:
    services = ServiceRegistry(now=FakeWallClock())
    assert services.register(reg("api"), by="a").owner == "a"
    refused = (
        "service 'api' belongs to hive 'a' and this token is bound to hive 'b'; use a token "
        "of hive 'a' or an admin token (bound to no hive)"
    )
    attempts: list[Callable[[], object]] = [
        lambda: services.register(reg("api", hostname="evil"), by="b"),
        lambda: services.update("api", ServiceUpdate(hostname="evil"), by="b"),
        lambda: services.heartbeat("api", ServiceHeartbeat(status="stopped"), by="b"),
        lambda: services.remove("api", by="b"),
    ]
    for attempt in attempts:
        with pytest.raises(ServiceOwned) as err:
            attempt()
        assert str(err.value) == refused
    assert (services.get("api").hostname, services.get("api").status) == (None, "running")
    assert services.update("api", ServiceUpdate(hostname="a-1"), by="a").owner == "a"
    assert services.register(reg("api", hostname="fixed"), by=None).owner == "a"  # admin keeps it
    assert services.heartbeat("api", ServiceHeartbeat(), by="a").hostname == "fixed"
    services.remove("api", by="a")
    assert services.register(reg("api"), by="b").owner == "b"  # the name is free again


def test_an_admin_service_refuses_every_hive() -> None:
    services = ServiceRegistry(now=FakeWallClock())
    assert services.register(reg("db")).owner is None
    with pytest.raises(ServiceOwned) as err:
        services.remove("db", by="a")
    assert str(err.value) == (
        "service 'db' was registered with an admin token and this token is bound to hive 'a'; "
        "use an admin token (bound to no hive)"
    )
    services.remove("db", by=None)


def test_a_silent_service_frees_its_name() -> None:
    wall = FakeWallClock()
    services = ServiceRegistry(now=wall)
    services.register(reg("api"), by="a")
    wall.advance(301)
    assert services.register(reg("api"), by="b").owner == "b"


def test_the_owner_survives_a_restart(tmp_path: Path) -> None:
    wall = FakeWallClock()
    cat = Catalog(tmp_path / "c.db", now=wall)
    ServiceRegistry(cat, now=wall).register(reg("api"), by="a")
    cat.close()
    again = ServiceRegistry(Catalog(tmp_path / "c.db", now=wall), now=wall)
    assert again.get("api").owner == "a"
    with pytest.raises(ServiceOwned):
        again.remove("api", by="b")
