"""Replicas of the service over one Redis (a real redis-server on a loopback port): real
``serve`` processes where a process must die (kill -9), in-process replicas through uvicorn where
speed matters (a Redis restart, health-check leases)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from support.service import (
    ADMIN,
    HIVE_A,
    Client,
    LocalService,
    RedisServer,
    free_port,
    heartbeat,
    reachable,
    serve,
    wait_for,
    worker,
)

from runtime.service.server import build_runtime, create_app
from runtime.service.state import parse_state
from runtime.service.tokens import Tokens

from .conftest import TOKENS, need_redis

CLI = [sys.executable, "-c", "import sys; from runtime.cli import main; sys.exit(main())"]
LLAMA = heartbeat("a", worker("a1", model_id="llama", url="http://10.0.0.1:9001"))


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (it stops and starts it)."""
    need_redis()
    server = RedisServer(tmp_path / "redis")
    server.root.mkdir()
    server.start()
    yield server
    server.stop()


def token_file(root: Path) -> Path:
    path = root / "tokens"
    path.write_text(f"{ADMIN}\n{HIVE_A} a\n")
    return path


@contextmanager
def replica(
    root: Path, args: list[str], env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], Client]]:
    """``registry-runtime serve`` in a process on a free port, with the admin token's client."""
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--token-file", str(token_file(root)), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONWARNINGS": "", **(env or {})},
    )  # fmt: skip
    client = Client(f"http://127.0.0.1:{port}", ADMIN)
    try:
        assert wait_for(lambda: reachable(client) or proc.poll() is not None, timeout=20)
        assert proc.poll() is None, proc.communicate()[1]
        yield proc, client
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=10)


def test_a_heartbeat_through_a_is_scheduled_through_b_after_a_is_killed(
    redis_url: str, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        a, via_a = stack.enter_context(replica(tmp_path, ["--state", redis_url]))
        _b, via_b = stack.enter_context(
            replica(tmp_path, [], env={"BUNDLE_REGISTRY_STATE": redis_url})
        )
        assert via_a.post("/v1/heartbeat", LLAMA).status == 200
        assert (
            via_a.post("/services", {"name": "api", "host": "10.0.0.1", "port": 80}).status == 201
        )
        a.send_signal(signal.SIGKILL)  # right after the acknowledgements: nothing may be lost
        a.wait(timeout=10)
        best = via_b.get("/v1/schedule?model=llama")
        assert (best.status, best.body["worker"]["worker"]["worker_id"]) == (200, "a1")
        assert best.body["stale"] is False
        assert via_b.get("/services/api").body["host"] == "10.0.0.1"
        assert via_b.post("/v1/heartbeat", heartbeat("b", worker("b1"))).status == 200
        health = via_b.get("/health").body
        assert (health["status"], health["state"], health["hives_online"]) == (
            "healthy",
            "redis",
            2,
        )
        conflict = via_b.post("/v1/heartbeat", heartbeat("c", worker("a1")))
        assert (conflict.status, conflict.body["field"]) == (409, "$.workers[0].worker_id")


def test_the_serve_command_with_a_redis_it_cannot_use(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    tokens = token_file(tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [*CLI, "serve", "--port", str(free_port()), "--token-file", str(tokens), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    own_redis.stop()
    own_redis.password = "s3cret"
    own_redis.start()
    wrong = run("--state", f"redis://:guess@127.0.0.1:{own_redis.port}/0")
    assert (wrong.returncode, wrong.stderr) == (
        1,
        f"Error: --state redis://127.0.0.1:{own_redis.port}/0: Redis refused the connection "
        "(invalid username-password pair or user is disabled.); check the password and the "
        "database number in the URL\n",
    )
    with_db = run("--state", own_redis.url, "--db", "rt.db")
    assert (with_db.returncode, with_db.stderr) == (
        1,
        "Error: --db rt.db goes with --state memory only: with --state "
        f"redis://127.0.0.1:{own_redis.port}/0 the services and the hive catalog live in Redis; "
        "drop --db\n",
    )
    assert "s3cret" not in wrong.stderr + with_db.stderr


def test_a_replica_started_before_redis_serves_stale_then_catches_up(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    own_redis.stop()
    with replica(tmp_path, ["--state", own_redis.url]) as (proc, client):
        health = client.get("/health")
        assert (health.body["status"], health.headers["x-registry-stale"] != "") == (
            "degraded", True,
        )  # fmt: skip
        refused = client.post("/v1/heartbeat", LLAMA)
        assert (refused.status, refused.headers["retry-after"]) == (503, "1")
        own_redis.start()
        assert wait_for(lambda: healthy(client))
        assert client.post("/v1/heartbeat", LLAMA).status == 200
        assert "x-registry-stale" not in client.get("/v1/hives").headers
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert err.startswith(
        f"registry-runtime: --state {own_redis.url}: Redis is unreachable (Error 111 connecting "
    )


@contextmanager
def replicas(url: str, count: int, check_interval: float = 30.0) -> Iterator[list[Client]]:
    """``count`` in-process replicas on the Redis at ``url``, each through uvicorn."""
    with ExitStack() as stack:
        clients = []
        for _ in range(count):
            rt = build_runtime(tokens=Tokens(TOKENS), state=parse_state(url),
                               check_interval=check_interval, check_timeout=1.0)  # fmt: skip
            clients.append(Client(stack.enter_context(serve(create_app(rt))), ADMIN))
        yield clients


def healthy(client: Client) -> bool:
    status: str = client.get("/health").body["status"]
    return status == "healthy"


def test_a_redis_restart_leaves_reads_stale_writes_refused_and_evicts_nobody(
    own_redis: RedisServer,
) -> None:
    with replicas(own_redis.url, 2) as (a, b):
        for name in "abcde":
            assert (
                a.post("/v1/heartbeat", heartbeat(name, worker(f"{name}1", model_id="m"))).status
                == 200
            )
        assert a.post("/services", {"name": "api", "host": "10.0.0.1", "port": 80}).status == 201
        own_redis.stop()
        assert wait_for(lambda: b.get("/health").body["status"] == "degraded")
        best = b.get("/v1/schedule?model=m")
        assert (best.status, best.body["stale"], best.body["candidates"]) == (200, True, 5)
        assert float(best.headers["x-registry-stale"]) > 0
        assert b.get("/v1/hives").body["stale"] is True
        refused = b.post("/v1/heartbeat", heartbeat("f"))
        assert (refused.status, refused.headers["retry-after"]) == (503, "1")
        assert refused.body["error"].startswith(
            f"the shared state redis://127.0.0.1:{own_redis.port}/0 is unavailable ("
        )
        assert refused.body["error"].endswith("); writes resume when it is back: retry after 1 s")
        own_redis.start()  # empty: it kept nothing
        assert wait_for(lambda: healthy(a) and healthy(b))
        assert b.get("/v1/hives").body["online"] == 5  # nobody evicted
        redis = own_redis.client()
        assert wait_for(lambda: redis.zcard("runtime:hives") == 5)  # written back
        assert wait_for(lambda: redis.hexists("runtime:services", "api"))
        redis.close()
        with replicas(own_redis.url, 1) as (c,):  # a replica started now sees them too
            assert c.get("/v1/hives").body["total"] == 5
            assert c.get("/services/api").status == 200
        assert b.post("/v1/heartbeat", heartbeat("f")).status == 200


def test_two_replicas_probe_a_service_once_per_interval(redis_url: str) -> None:
    service = LocalService()
    service.start()
    try:
        with replicas(redis_url, 2, check_interval=0.2) as (a, b):
            body = {"name": "api", "host": "127.0.0.1", "port": service.port, "url": service.url}
            assert a.post("/services", body).status == 201
            assert wait_for(lambda: len(service.hits) > 0)
            start = len(service.hits)
            time.sleep(2.0)
            probes = len(service.hits) - start
            assert b.get("/services/api/health").body["health_status"] == "healthy"
    finally:
        service.stop()
    assert 7 <= probes <= 12, probes  # ten intervals; unshared, the two replicas would probe ~20
