"""The state protocol: ``--state`` parsing, and one contract suite run against both states
(memory, and Redis on a real redis-server), in-process; the Redis state's own parts (one clock,
leases, the freeze across replicas, a Redis that lost its data) with two replicas in one loop."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from support.service import T0, RedisServer, free_port, heartbeat, worker

from runtime.extras import MissingExtra
from runtime.service.hives import UnknownHive, UnknownWorker, WorkerConflict
from runtime.service.services import ServiceOwned, UnknownService
from runtime.service.state import (
    MEMORY,
    State,
    StateChoice,
    StateChoiceError,
    open_state,
    parse_state,
)
from runtime.service.tokens import Forbidden
from runtime.service.types import (
    HiveHeartbeat,
    ServiceHeartbeat,
    ServiceRegistration,
    ServiceUpdate,
    WorkerHeartbeat,
)

# -- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "shown"),
    [
        ("memory", "memory", "memory"),
        ("redis://127.0.0.1:6379/0", "redis", "redis://127.0.0.1:6379/0"),
        ("redis://cache", "redis", "redis://cache"),
        ("rediss://:s3cret@cache.internal:6380/2", "redis", "rediss://cache.internal:6380/2"),
        ("redis://user:s3cret@cache:6379/1", "redis", "redis://cache:6379/1"),
    ],
)
def test_parse_state(text: str, kind: str, shown: str) -> None:
    choice = parse_state(text)
    assert (choice.kind, choice.url, choice.shown) == (kind, text, shown)
    assert "s3cret" not in repr(choice)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("postgres://db/1", "--state 'postgres://db/1' is not a state this server keeps; use "
         "memory, redis://HOST:PORT/DB or rediss://HOST:PORT/DB"),
        ("Memory", "--state 'Memory' is not a state this server keeps; use memory, "
         "redis://HOST:PORT/DB or rediss://HOST:PORT/DB"),
        ("redis://:s3cret@/0", "--state 'redis:///0': expected "
         "redis://[:PASSWORD@]HOST[:PORT][/DB] with a host and a database number (like "
         "redis://127.0.0.1:6379/0)"),
        ("redis://cache:6379/zero", "--state 'redis://cache:6379/zero': expected "
         "redis://[:PASSWORD@]HOST[:PORT][/DB] with a host and a database number (like "
         "redis://127.0.0.1:6379/0)"),
        ("redis://cache:99999/0", "--state 'redis://cache:99999/0': expected "
         "redis://[:PASSWORD@]HOST[:PORT][/DB] with a host and a database number (like "
         "redis://127.0.0.1:6379/0)"),
    ],
)  # fmt: skip
def test_parse_state_refuses(text: str, error: str) -> None:
    with pytest.raises(StateChoiceError) as err:
        parse_state(text)
    assert str(err.value) == error


def test_without_redis_py_the_redis_state_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fault that cannot be caused otherwise where redis-py is installed: hide it.
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    monkeypatch.delitem(sys.modules, "runtime.service.state_redis", raising=False)
    with pytest.raises(MissingExtra) as err:
        open_state(parse_state("redis://127.0.0.1:6379/0"))
    assert str(err.value) == "--state redis:// needs redis-py: pip install 'bundle-registry[redis]'"
    assert open_state(MEMORY).kind == "memory"  # the memory state never imports it


def test_the_serve_command_without_redis_py(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from runtime.cli import main

    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "runtime.service.state_redis", raising=False)
    tokens = tmp_path / "tokens"
    tokens.write_text("admin-token\n")
    argv = ["serve", "--port", str(free_port()), "--token-file", str(tokens)]
    monkeypatch.setenv("BUNDLE_REGISTRY_STATE", "redis://127.0.0.1:6379/0")
    assert main(argv) == 1
    assert capsys.readouterr().err == (
        "Error: --state redis:// needs redis-py: pip install 'bundle-registry[redis]'\n"
    )


# -- the contract, on both states ---------------------------------------------------------------


def beat(hive_id: str, *workers: dict[str, Any], **fields: Any) -> HiveHeartbeat:
    return msgspec.convert(heartbeat(hive_id, *workers, **fields), HiveHeartbeat)


def reg(name: str, **fields: Any) -> ServiceRegistration:
    return msgspec.convert({"name": name, "host": "10.0.0.1", "port": 80, **fields},
                           ServiceRegistration)  # fmt: skip


@asynccontextmanager
async def started(choice: StateChoice, **kw: Any) -> AsyncIterator[State]:
    state = open_state(choice, **kw)
    await state.start()
    try:
        yield state
    finally:
        await state.stop()
        state.close()


def contract(scenario: Callable[[State], Awaitable[None]]) -> Callable[[StateChoice], None]:
    """A test running ``scenario`` on a started state of each kind."""

    def test(state_choice: StateChoice) -> None:
        async def run() -> None:
            async with started(state_choice) as state:
                await scenario(state)

        asyncio.run(run())

    test.__name__ = scenario.__name__
    test.__doc__ = scenario.__doc__
    return test


async def _heartbeats_and_workers(state: State) -> None:
    await state.heartbeat(beat("a", worker("a1", model_id="llama"), host="gpu-a", port=9000,
                               devices=["cuda:0"]))  # fmt: skip
    assert [h.hive_id for h in state.hives.hives()] == ["a"]
    assert state.hives.hive("a").online
    with pytest.raises(WorkerConflict) as err:
        await state.heartbeat(beat("b", worker("b1"), worker("a1")))
    assert str(err.value) == (
        "$.workers[1].worker_id: worker 'a1' is already reported by online hive 'a'; worker ids "
        "must be unique across hives (rename the worker, or DELETE /v1/hives/a first)"
    )
    with pytest.raises(WorkerConflict) as err:
        await state.heartbeat(beat("b", worker("b1"), worker("b1")))
    assert str(err.value) == (
        "$.workers[1].worker_id: worker 'b1' is listed twice in the heartbeat of hive 'b'; list "
        "each worker once"
    )
    assert "b" not in {h.hive_id for h in state.hives.hives()}  # a refused heartbeat stores nothing
    await state.heartbeat(beat("a", worker("a2", model_id="llama")))  # a1 is free again
    await state.heartbeat(beat("b", worker("a1")))
    assert state.hives.worker("a1").hive_id == "b"


async def _worker_heartbeats(state: State) -> None:
    await state.heartbeat(beat("a", worker("a1", model_id="llama")))
    health = WorkerHeartbeat(worker_id="a1", timestamp=T0, health_status="degraded")
    with pytest.raises(Forbidden) as refused:
        await state.worker_heartbeat(health, "b")
    assert str(refused.value) == "this token is bound to hive 'b' and cannot speak for hive 'a'"
    view = await state.worker_heartbeat(health, "a")
    assert (view.hive_id, view.worker.health_status) == ("a", "degraded")
    assert state.hives.candidates("llama") == []  # a degraded worker is not scheduled
    with pytest.raises(UnknownWorker) as err:
        await state.worker_heartbeat(msgspec.structs.replace(health, worker_id="zz"), None)
    assert str(err.value) == (
        "worker 'zz' is not known: no hive reports it; its hive must send a heartbeat listing it "
        "first (GET /v1/workers lists the workers held)"
    )


async def _removing_hives_and_the_catalog(state: State) -> None:
    await state.heartbeat(beat("a", worker("a1"), host="gpu-a", port=9000, devices=["cuda:0"]))
    await state.heartbeat(beat("b"))
    [a, b] = await state.catalog_hives()
    assert (a.hive_id, a.host, a.port, a.devices, a.status, a.last_heartbeat) == (
        "a", "gpu-a", 9000, ["cuda:0"], "Online", T0,
    )  # fmt: skip
    assert (b.hive_id, b.host, b.devices) == ("b", None, [])
    await state.remove_hive("a")
    assert [h.hive_id for h in state.hives.hives()] == ["b"]
    assert [r.hive_id for r in await state.catalog_hives()] == ["b"]
    await state.heartbeat(beat("c", worker("a1")))  # its workers went with it
    with pytest.raises(UnknownHive) as err:
        await state.remove_hive("a")
    assert str(err.value) == (
        "hive 'a' is not known: it has not sent a heartbeat since the server started, or it was "
        "evicted or removed (GET /v1/hives lists the hives held)"
    )


async def _services_and_their_owners(state: State) -> None:
    created = await state.register_service(reg("api", metadata={"v": "1"}), "a")
    assert (created.owner, created.is_healthy, created.health_status) == ("a", True, "unknown")
    with pytest.raises(ServiceOwned) as err:
        await state.register_service(reg("api"), "b")
    assert str(err.value) == (
        "service 'api' belongs to hive 'a' and this token is bound to hive 'b'; use a token of "
        "hive 'a' or an admin token (bound to no hive)"
    )
    updated = await state.update_service("api", reg("api", hostname="api-1"), None)
    assert (updated.hostname, updated.owner) == ("api-1", "a")
    draining = await state.service_heartbeat("api", ServiceHeartbeat(status="draining"), "a")
    assert (draining.status, draining.is_healthy) == ("draining", False)
    await state.record_check("api", False)
    assert state.services.get("api").health_status == "unhealthy"
    await state.record_check("gone", True)  # a service that went away meanwhile: ignored
    with pytest.raises(ServiceOwned):
        await state.remove_service("api", "b")
    await state.remove_service("api", "a")
    assert state.services.find() == []
    with pytest.raises(UnknownService) as missing:
        await state.service_heartbeat("api", ServiceHeartbeat(), None)
    assert str(missing.value) == (
        "service 'api' is not registered (or was removed after 300 s without a heartbeat); "
        "register it with POST /services"
    )
    assert await state.claim_check("api", 1.0)


async def _partial_updates_checks_and_cleanup(state: State) -> None:
    await state.register_service(reg("api", metadata={"v": "1"}, url="http://10.0.0.1:80"), "a")
    changed = await state.update_service("api", ServiceUpdate(port=81, url=None), "a")
    assert (changed.host, changed.port, changed.url, changed.metadata) == (
        "10.0.0.1", 81, None, {"v": "1"},
    )  # fmt: skip
    await state.record_check("api", True, beat=True)
    assert state.services.get("api").health_status == "healthy"
    later = state.services.now() + timedelta(seconds=301)
    state.services.now = lambda: later  # five minutes without a heartbeat
    assert await state.prune_services() == ["api"]
    assert state.services.held() == {}
    assert await state.prune_services() == []


async def _model_use_counts(state: State) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    for model in ("m", "m", "n"):
        state.record_use(model)
    usage = await state.model_usage()
    assert {m: u.count for m, u in usage.items()} == {"m": 2, "n": 1}
    assert before <= usage["m"].last_used <= datetime.now(UTC) + timedelta(seconds=1)


async def _one_catalog_row(state: State) -> None:
    await state.heartbeat(beat("a", host="gpu-a", devices=["cuda:0"]))
    row = await state.catalog_hive("a")
    assert row is not None and (row.host, row.devices, row.status) == (
        "gpu-a",
        ["cuda:0"],
        "Online",
    )
    assert await state.catalog_hive("nope") is None


test_partial_updates_checks_and_cleanup = contract(_partial_updates_checks_and_cleanup)
test_model_use_counts = contract(_model_use_counts)
test_one_catalog_row = contract(_one_catalog_row)
test_heartbeats_and_workers = contract(_heartbeats_and_workers)
test_worker_heartbeats = contract(_worker_heartbeats)
test_removing_hives_and_the_catalog = contract(_removing_hives_and_the_catalog)
test_services_and_their_owners = contract(_services_and_their_owners)


def test_memory_state_is_never_stale(tmp_path: Path) -> None:
    state = open_state(MEMORY, db=str(tmp_path / "rt.db"))
    assert (state.kind, state.stale_for()) == ("memory", None)
    state.close()


# -- the Redis state: replicas in one loop ------------------------------------------------------


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_replicas_share_hives_and_services(redis_url: str) -> None:
    async def run() -> None:
        choice = parse_state(redis_url)
        async with started(choice) as a, started(choice) as b:
            await a.heartbeat(beat("h1", worker("w1", model_id="llama")))
            await until(lambda: b.hives.candidates("llama") != [])
            with pytest.raises(WorkerConflict):  # B checks ownership in Redis, not its mirror
                await b.heartbeat(beat("h2", worker("w1")))
            await b.register_service(reg("api"), "h1")
            await until(lambda: len(a.services) == 1)
            assert a.services.get("api").owner == "h1"
            age = b.hives.hive("h1").age_seconds  # one clock: B's age of A's heartbeat
            assert 0 <= age < 1.0

    asyncio.run(run())


def test_a_probe_lease_goes_to_one_replica_per_interval(redis_url: str) -> None:
    async def run() -> None:
        choice = parse_state(redis_url)
        async with started(choice) as a, started(choice) as b:
            claims = [await a.claim_check("api", 0.3), await b.claim_check("api", 0.3)]
            assert claims == [True, False]
            await asyncio.sleep(0.35)
            assert [await b.claim_check("api", 0.3), await a.claim_check("api", 0.3)] == [
                True,
                False,
            ]

    asyncio.run(run())


def test_eviction_and_the_freeze_are_decided_once_for_every_replica(redis_url: str) -> None:
    async def run() -> None:
        choice = parse_state(redis_url)
        async with started(choice, ttl=0.5) as a, started(choice, ttl=0.5) as b:
            for name in "abcd":
                await a.heartbeat(beat(name))
            await until(lambda: b.hives.frozen and a.hives.frozen)  # all four went quiet at once
            assert [len(s.hives.hives()) for s in (a, b)] == [4, 4]
            assert b.hives.hive_count() == (4, 0)
            for name in "abc":
                await b.heartbeat(beat(name))
            await until(lambda: not a.hives.frozen and len(a.hives.hives()) == 3)
            await until(lambda: not b.hives.frozen and len(b.hives.hives()) == 3)
            assert (a.hives.counters.evictions, b.hives.counters.evictions) == (1, 1)

    asyncio.run(run())


def test_a_redis_that_lost_its_data_gets_the_mirror_back(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.flushall()

    async def run() -> None:
        async with started(parse_state(redis_server.url)) as a:
            await a.heartbeat(beat("h1", worker("w1")))
            await a.register_service(reg("api"), None)
            seen = client.zscore("runtime:hives", "h1")
            client.flushall()  # as a restart without persistence leaves it
            await until(lambda: client.zscore("runtime:hives", "h1") is not None)
            assert client.zscore("runtime:hives", "h1") == seen  # its own heard-at time
            assert client.hget("runtime:owner", "w1") == b"h1"
            await until(lambda: client.hexists("runtime:services", "api"))
            assert [h.hive_id for h in a.hives.hives()] == ["h1"]

    asyncio.run(run())
    client.close()
