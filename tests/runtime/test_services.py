"""The service registry and its active health checks, against real local HTTP services."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from service_fixtures import T0, FakeWallClock, LocalService, hung_service

from runtime.catalog import Catalog
from runtime.service_types import ServiceHeartbeat, ServiceRegistration, Stats
from runtime.services import (
    HealthChecker,
    ServiceNameMismatch,
    ServiceRegistry,
    UnknownService,
    http_probe,
)


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
    health = services.health("api")
    assert (health.is_healthy, health.seconds_since_heartbeat) == (False, 121.0)
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
        total=3, healthy=1, unhealthy=2, statuses={"running": 2, "stopped": 1},
        hosts={"n1": 2, "n2": 1}, uptime_seconds=stats.uptime_seconds,
    )  # fmt: skip


def test_update_and_remove() -> None:
    services = ServiceRegistry(now=FakeWallClock())
    with pytest.raises(UnknownService):
        services.update("api", reg("api"))
    services.register(reg("api"))
    assert services.update("api", reg("api", hostname="box")).hostname == "box"
    with pytest.raises(ServiceNameMismatch) as err:
        services.update("api", reg("web"))
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
    services = ServiceRegistry()
    services.register(reg("api", host="127.0.0.1", url=service.url))
    checker = HealthChecker(services, timeout=2.0)
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
    services = ServiceRegistry()
    try:
        with hung_service() as hung:
            for i in range(3):
                services.register(reg(f"hung{i}", url=hung))
            services.register(reg("ok", url=service.url))
            checker = HealthChecker(services, timeout=0.5)
            started = time.monotonic()
            results = asyncio.run(checker.check_all())
            elapsed = time.monotonic() - started
    finally:
        service.stop()
    assert results == {"hung0": False, "hung1": False, "hung2": False, "ok": True}
    assert elapsed < 1.0  # three 0.5 s timeouts, run at once


def test_probe_counts_answers_below_500_and_fails_on_nothing() -> None:
    service = LocalService()
    service.start()
    try:
        assert asyncio.run(http_probe(service.url, 2.0))
    finally:
        service.stop()
    assert not asyncio.run(http_probe(service.url, 2.0))
    assert not asyncio.run(http_probe("http://[::1", 2.0))
