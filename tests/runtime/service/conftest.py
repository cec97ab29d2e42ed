"""Fixtures of the service tests: a runtime on a fake clock and the app serving it; a real Redis
and the same app on either state, for the tests that must hold on both."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.service import (
    ADMIN,
    HIVE_A,
    HIVE_B,
    Client,
    FakeClock,
    RedisServer,
    redis_missing,
    serve,
)

from runtime.service.server import Runtime, build_runtime, create_app
from runtime.service.state import MEMORY, StateChoice, parse_state
from runtime.service.tokens import Tokens

TOKENS = {ADMIN: None, HIVE_A: "a", HIVE_B: "b"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runtime(clock: FakeClock, tmp_path: Path) -> Iterator[Runtime]:
    """An admin token and tokens of hives a and b; the catalog under ``tmp_path``."""
    rt = build_runtime(tokens=Tokens(TOKENS), db=tmp_path / "rt.db", clock=clock)
    yield rt
    rt.state.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Client]:
    """A client with the admin token of the app serving ``runtime`` through uvicorn."""
    with serve(create_app(runtime)) as url:
        yield Client(url, ADMIN)


def need_redis() -> None:
    """Skip, naming the reason, where Redis cannot run; fail instead on CI, which installs it
    (.ci/run), so the Redis tests cannot be skipped there unnoticed."""
    reason = redis_missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Redis tests: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session (tests that stop Redis start their own)."""
    need_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    client = redis_server.client()
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(params=["memory", "redis"])
def state_choice(request: pytest.FixtureRequest) -> StateChoice:
    """Each state in turn: the tests using it hold on both."""
    if request.param == "memory":
        return MEMORY
    url: str = request.getfixturevalue("redis_url")
    return parse_state(url)


@pytest.fixture
def any_client(state_choice: StateChoice, tmp_path: Path) -> Iterator[Client]:
    """A client with the admin token of the app on each state in turn (real clocks)."""
    rt = build_runtime(tokens=Tokens(TOKENS), state=state_choice, db=tmp_path / "rt.db")
    try:
        with serve(create_app(rt)) as url:
            yield Client(url, ADMIN)
    finally:
        rt.state.close()
