"""The runtime service over HTTP, through uvicorn on a loopback port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support.service import T0, Client, FakeClock, LocalService, heartbeat, serve, worker

from registry_build.publish import commit
from runtime.errors import PreconditionFailed, RegistryError
from runtime.registry.wire import BundleDescriptor, Location, blob_key
from runtime.service.server import Runtime, Tokens, authorize, build_runtime, create_app
from runtime.storage.store import LocalStore

ADMIN = "admin-token"
CLI = [sys.executable, "-c", "import sys; from runtime.cli import main; sys.exit(main())"]
HIVE_A = "token-of-a"
HIVE_B = "token-of-b"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runtime(clock: FakeClock, tmp_path: Path) -> Iterator[Runtime]:
    rt = build_runtime(
        tokens=Tokens({ADMIN: None, HIVE_A: "a", HIVE_B: "b"}), db=tmp_path / "rt.db", clock=clock
    )
    yield rt
    rt.catalog.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Client]:
    with serve(create_app(runtime)) as url:
        yield Client(url, ADMIN)


def fleet(client: Client) -> None:
    beats = [
        heartbeat(
            "a",
            worker("a1", model_id="llama", backend="cuda", gpu_percent=40.0, vram_bytes=100,
                   url="http://10.0.0.1:9001"),
            worker("a2", model_id="llama", backend="cuda", state="Busy", gpu_percent=95.0),
            host="gpu-a", port=9000, devices=["cuda:0", "cuda:1"],
        ),
        heartbeat("b", worker("b1", model_id="whisper", backend="cpu", gpu_percent=0.0)),
    ]  # fmt: skip
    for beat in beats:
        answer = client.post("/v1/heartbeat", beat)
        assert answer.status == 200, answer.body


def test_heartbeats_then_every_query(client: Client, clock: FakeClock) -> None:
    fleet(client)
    clock.advance(3)
    hives = client.get("/v1/hives").body
    assert (hives["total"], hives["online"], hives["frozen"]) == (2, 2, False)
    assert [h["hive_id"] for h in hives["hives"]] == ["a", "b"]
    hive = client.get("/v1/hives/a").body
    assert (hive["online"], hive["age_seconds"], hive["timestamp"]) == (
        True,
        3.0,
        "2026-01-01T00:00:00Z",
    )
    assert hive["resources"] == {
        "workers": 2, "idle": 1, "busy": 1, "loading": 0, "vram_bytes": 100, "ram_bytes": 0,
        "cpu_percent": 0.0, "gpu_percent": 135.0,
    }  # fmt: skip

    def ids(query: str) -> list[str]:
        return [w["worker"]["worker_id"] for w in client.get(f"/v1/workers{query}").body["workers"]]

    assert ids("") == ["a1", "a2", "b1"]
    assert ids("?model=llama") == ["a1", "a2"]
    assert ids("?backend=cpu") == ["b1"]
    assert ids("?state=Busy") == ["a2"]
    assert ids("?hive=b") == ["b1"]
    counts = client.get("/v1/workers?model=none").body["counts"]
    assert counts == {"total": 3, "Idle": 2, "Busy": 1, "Loading": 0}
    one = client.get("/v1/workers/a1").body
    assert (one["hive_id"], one["worker"]["url"]) == ("a", "http://10.0.0.1:9001")
    best = client.get("/v1/schedule?model=llama").body
    assert (best["worker"]["worker"]["worker_id"], best["model_loaded"]) == ("a1", True)
    assert (best["data_age_seconds"], best["candidates"]) == (3.0, 1)
    any_ = client.get("/v1/schedule?model=mistral&fallback=any").body
    assert (any_["worker"]["worker"]["worker_id"], any_["model_loaded"]) == ("b1", False)
    health = client.get("/health").body
    assert {k: health[k] for k in ("status", "hives_total", "hives_online", "workers")} == {
        "status": "ok", "hives_total": 2, "hives_online": 2, "workers": 3,
    }  # fmt: skip
    assert client.request("DELETE", "/v1/hives/b").status == 204
    assert client.get("/v1/hives/b").status == 404
    assert client.get("/v1/hives?online=true").body["total"] == 1


def test_worker_heartbeat(client: Client) -> None:
    fleet(client)
    body = {"worker_id": "a1", "timestamp": "2026-01-01T00:01:00Z", "health_status": "degraded"}
    answer = client.post("/v1/worker-heartbeat", body)
    assert answer.body["worker"]["health_status"] == "degraded"
    gone = client.get("/v1/schedule?model=llama")
    assert gone.status == 404
    assert gone.body == {
        "error": "no healthy idle worker on an online hive has model 'llama' loaded; ask with "
        "fallback=any to accept an idle worker without it"
    }
    assert client.post("/v1/worker-heartbeat", {**body, "worker_id": "zz"}).status == 404


@pytest.mark.parametrize(
    ("body", "status", "error", "field"),
    [
        (b"{", 400, "the body is not valid JSON: Input data was truncated", "$"),
        (b'{"hive_id": "a"}', 422, "invalid body: Object missing required field `timestamp`",
         "$.timestamp"),
        (json.dumps(heartbeat("a", worker("w", state="Sleeping"))).encode(), 422,
         "invalid body: Invalid enum value 'Sleeping' - at `$.workers[0].state`",
         "$.workers[0].state"),
        (json.dumps(heartbeat("a", worker("w", gpu_percent=120))).encode(), 422,
         "invalid body: Expected `float` <= 100.0 - at `$.workers[0].gpu_percent`",
         "$.workers[0].gpu_percent"),
        (json.dumps(heartbeat("a", timestamp="2026-01-01T00:00:00")).encode(), 422,
         "invalid body: Expected `datetime` with a timezone component - at `$.timestamp`",
         "$.timestamp"),
        (json.dumps({**heartbeat("a"), "extra": 1}).encode(), 422,
         "invalid body: Object contains unknown field `extra`", "$.extra"),
        (json.dumps(heartbeat("a", worker("w", vram_bytes="lots"))).encode(), 422,
         "invalid body: Expected `int | null`, got `str` - at `$.workers[0].vram_bytes`",
         "$.workers[0].vram_bytes"),
    ],
)  # fmt: skip
def test_bad_bodies_name_the_field(
    client: Client, body: bytes, status: int, error: str, field: str
) -> None:
    answer = client.post("/v1/heartbeat", raw=body)
    assert (answer.status, answer.body) == (status, {"error": error, "field": field})


def test_body_size_limit(client: Client) -> None:
    answer = client.post("/v1/heartbeat", raw=b" " * (256 * 1024 + 1))
    assert (answer.status, answer.body["error"]) == (
        413,
        "the request body is 262145 bytes; the limit is 262144 bytes",
    )


def test_tokens_and_binding(client: Client) -> None:
    no = client.post("/v1/heartbeat", heartbeat("a"), token="")
    assert (no.status, no.body["error"]) == (
        401,
        "this request needs a header 'Authorization: Bearer <token>'",
    )
    assert no.headers["www-authenticate"] == "Bearer"
    wrong = client.post("/v1/heartbeat", heartbeat("a"), token="guess")
    assert (wrong.status, wrong.body["error"]) == (
        401,
        "the bearer token is not one this server accepts",
    )
    assert client.post("/v1/heartbeat", heartbeat("a", worker("a1")), token=HIVE_A).status == 200
    other = client.post("/v1/heartbeat", heartbeat("b"), token=HIVE_A)
    assert (other.status, other.body["error"]) == (
        403,
        "this token is bound to hive 'a' and cannot speak for hive 'b'",
    )
    client.post("/v1/heartbeat", heartbeat("b", worker("b1")))
    wb = {"worker_id": "b1", "timestamp": "2026-01-01T00:01:00Z", "health_status": "healthy"}
    assert client.post("/v1/worker-heartbeat", wb, token=HIVE_A).status == 403
    assert (
        client.post("/v1/worker-heartbeat", {**wb, "worker_id": "a1"}, token=HIVE_A).status == 200
    )
    assert client.request("DELETE", "/v1/hives/b", token=HIVE_A).status == 403
    assert client.post("/services", {"name": "s", "host": "h", "port": 1}, token="").status == 401
    assert client.get("/v1/hives").status == 200  # reads need no token


def test_conflicting_worker_ids(client: Client) -> None:
    fleet(client)
    answer = client.post("/v1/heartbeat", heartbeat("c", worker("a1")))
    assert answer.status == 409
    assert answer.body["field"] == "$.workers[0].worker_id"


def test_bad_query_parameters(client: Client) -> None:
    cases = {
        "/v1/schedule": ("query parameter model is required: /v1/schedule?model=NAME", "model"),
        "/v1/schedule?model=bad%20name": (
            "model 'bad name' is not a valid name: use 1-128 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit, without '..'", "model"),
        "/v1/schedule?model=m&spread=3": (
            "query parameter spread='3' is not valid: use one of 1, 2", "spread"),
        "/v1/schedule?model=m&fallback=some": (
            "query parameter fallback='some' is not valid: use one of none, any", "fallback"),
        "/v1/hives?max_age=-1": (
            "query parameter max_age='-1' is not a non-negative number", "max_age"),
        "/services?healthy=yes": (
            "query parameter healthy='yes' is not valid: use one of true, false", "healthy"),
    }  # fmt: skip
    for path, (error, field) in cases.items():
        answer = client.get(path)
        assert (answer.status, answer.body) == (400, {"error": error, "field": field}), path
    missing = client.get("/v2/nothing")
    assert (missing.status, missing.body) == (
        404,
        {"error": "no route '/v2/nothing'; GET /openapi.json lists the routes"},
    )


def test_expiry_and_freeze_show_in_health_and_metrics(client: Client, clock: FakeClock) -> None:
    for name in "abcdef":
        client.post("/v1/heartbeat", heartbeat(name))
    clock.advance(20)
    for name in "abcde":
        client.post("/v1/heartbeat", heartbeat(name))
    clock.advance(15)  # f expired: a sixth of the fleet, so it is evicted
    assert client.get("/v1/hives").body["total"] == 5
    assert "runtime_evictions_total 1.0" in client.get("/metrics").body
    clock.advance(40)  # everything expired: the registry freezes instead of emptying
    health = client.get("/health").body
    assert (health["status"], health["frozen"], health["hives_total"], health["hives_online"]) == (
        "frozen", True, 5, 0,
    )  # fmt: skip
    metrics = client.get("/metrics").body
    assert "runtime_frozen 1.0" in metrics
    assert "runtime_hives 5.0" in metrics
    assert "runtime_hives_online 0.0" in metrics
    for name in "abc":
        client.post("/v1/heartbeat", heartbeat(name))
    clock.advance(1)  # d and e are two of five: evicted, and the freeze thaws
    assert client.get("/health").body["status"] == "ok"
    assert client.get("/v1/hives").body["total"] == 3
    assert "runtime_heartbeats_total 14.0" in client.get("/metrics").body


def test_service_registry_endpoints(client: Client) -> None:
    body = {"name": "api", "host": "10.0.0.1", "port": 8080, "metadata": {"team": "ml"}}
    created = client.post("/services", body)
    assert (created.status, created.body["name"], created.body["is_healthy"]) == (201, "api", True)
    assert client.post("/services", {**body, "port": 9090}).status == 201
    assert client.get("/services/api").body["port"] == 9090
    client.post("/services", {"name": "db", "host": "10.0.0.2", "port": 5432, "status": "stopped"})
    listed = client.get("/services?healthy=true&status=running").body
    assert [s["name"] for s in listed["services"]] == ["api"]
    put = client.request("PUT", "/services/api", {**body, "hostname": "api-1"})
    assert put.body["hostname"] == "api-1"
    mismatch = client.request("PUT", "/services/api", {**body, "name": "web"})
    assert (mismatch.status, mismatch.body["field"]) == (422, "$.name")
    assert client.request("PUT", "/services/nope", {**body, "name": "nope"}).status == 404
    assert client.post("/services/api/heartbeat").status == 200
    beat = client.post("/services/api/heartbeat", {"status": "draining"})
    assert (beat.body["status"], beat.body["is_healthy"]) == ("draining", False)
    assert client.post("/services/nope/heartbeat").status == 404
    health = client.get("/services/api/health").body
    assert (health["is_healthy"], health["status"]) == (False, "draining")
    stats = client.get("/stats").body
    assert (stats["total"], stats["healthy"], stats["statuses"]) == (
        2,
        0,
        {"draining": 1, "stopped": 1},
    )
    assert client.request("DELETE", "/services/api").status == 204
    assert client.request("DELETE", "/services/api").status == 404
    assert client.get("/services/api").body == {
        "error": "service 'api' is not registered (or was removed after 300 s without a "
        "heartbeat); register it with POST /services"
    }


SVC = {"name": "svc1", "host": "10.0.0.1", "port": 8080}


def test_a_service_belongs_to_the_hive_that_registered_it(client: Client) -> None:
    created = client.post("/services", SVC, token=HIVE_A)
    assert (created.status, created.body["owner"]) == (201, "a")
    refused = (
        "service 'svc1' belongs to hive 'a' and this token is bound to hive 'b'; use a token "
        "of hive 'a' or an admin token (bound to no hive)"
    )
    for method, path, body in [
        ("POST", "/services", {**SVC, "port": 6666}),
        ("PUT", "/services/svc1", {**SVC, "port": 6666}),
        ("POST", "/services/svc1/heartbeat", {"status": "stopped"}),
        ("DELETE", "/services/svc1", None),
    ]:
        answer = client.request(method, path, body, token=HIVE_B)
        assert (answer.status, answer.body) == (403, {"error": refused}), (method, path)
        for token, error in [
            ("", "this request needs a header 'Authorization: Bearer <token>'"),
            ("guess", "the bearer token is not one this server accepts"),
        ]:
            answer = client.request(method, path, body, token=token)
            assert (answer.status, answer.body) == (401, {"error": error}), (method, path)
    assert (client.get("/services/svc1").body["port"], client.get("/stats").body["statuses"]) == (
        8080,
        {"running": 1},
    )
    assert client.request("PUT", "/services/svc1", {**SVC, "port": 1}, token=HIVE_A).status == 200
    assert client.post("/services/svc1/heartbeat", token=HIVE_A).status == 200
    assert client.post("/services", {**SVC, "port": 2}, token=HIVE_A).status == 201
    fixed = client.request("PUT", "/services/svc1", {**SVC, "port": 3})  # an admin token
    assert (fixed.status, fixed.body["port"], fixed.body["owner"]) == (200, 3, "a")
    assert client.request("DELETE", "/services/svc1", token=HIVE_A).status == 204
    taken = client.post("/services", SVC, token=HIVE_B)  # the name is free again
    assert (taken.status, taken.body["owner"]) == (201, "b")
    assert client.request("DELETE", "/services/svc1").status == 204  # an admin token


def test_a_service_an_admin_registered_refuses_hive_tokens(client: Client) -> None:
    assert client.post("/services", SVC).body["owner"] is None
    answer = client.post("/services/svc1/heartbeat", token=HIVE_A)
    assert (answer.status, answer.body["error"]) == (
        403,
        "service 'svc1' was registered with an admin token and this token is bound to hive "
        "'a'; use an admin token (bound to no hive)",
    )
    assert client.post("/services/svc1/heartbeat").status == 200


def test_ownership_survives_a_restart(tmp_path: Path) -> None:
    tokens = Tokens({ADMIN: None, HIVE_A: "a", HIVE_B: "b"})
    rt = build_runtime(tokens=tokens, db=tmp_path / "rt.db")
    with serve(create_app(rt)) as url:
        assert Client(url, HIVE_A).post("/services", SVC).status == 201
    rt.catalog.close()
    again = build_runtime(tokens=tokens, db=tmp_path / "rt.db")
    with serve(create_app(again)) as url:
        assert Client(url, HIVE_B).request("DELETE", "/services/svc1").status == 403
        assert Client(url, HIVE_A).request("DELETE", "/services/svc1").status == 204
    again.catalog.close()


def test_active_checks_follow_a_service_down_and_back(tmp_path: Path) -> None:
    rt = build_runtime(tokens=Tokens({ADMIN: None}), db=tmp_path / "rt.db", check_interval=0.1,
                       check_timeout=1.0)  # fmt: skip
    service = LocalService()
    service.start()
    with serve(create_app(rt)) as url:
        client = Client(url, ADMIN)
        client.post("/services", {"name": "api", "host": "127.0.0.1", "port": service.port,
                                  "url": service.url})  # fmt: skip

        def status() -> str:
            value: str = client.get("/services/api/health").body["health_status"]
            return value

        assert wait_for(lambda: status() == "healthy")
        service.stop()
        assert wait_for(lambda: status() == "unhealthy")
        assert client.get("/services?healthy=false").body["count"] == 1
        service.start()
        assert wait_for(lambda: status() == "healthy")
        service.stop()


def test_restart_keeps_services_and_the_hive_catalog(tmp_path: Path) -> None:
    db = tmp_path / "rt.db"
    tokens = Tokens({ADMIN: None})
    rt = build_runtime(tokens=tokens, db=db)
    with serve(create_app(rt)) as url:
        client = Client(url, ADMIN)
        client.post("/services", {"name": "api", "host": "10.0.0.1", "port": 80})
        client.post("/v1/heartbeat", heartbeat("a", worker("a1"), host="gpu-a", devices=["cuda:0"]))
    rt.catalog.close()
    again = build_runtime(tokens=tokens, db=db)
    with serve(create_app(again)) as url:
        client = Client(url, ADMIN)
        assert client.get("/services/api").body["host"] == "10.0.0.1"
        assert client.get("/v1/hives").body["total"] == 0  # heartbeat state is soft
    [hive] = again.catalog.hives()
    assert (hive.hive_id, hive.host, hive.devices, hive.status) == (
        "a",
        "gpu-a",
        ["cuda:0"],
        "Unknown",
    )
    assert hive.last_heartbeat == T0
    again.catalog.close()


def test_openapi_is_built_from_the_types(client: Client) -> None:
    doc = client.get("/openapi.json").body
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) >= {"/v1/heartbeat", "/v1/schedule", "/services/{name}/health"}
    post = doc["paths"]["/v1/heartbeat"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/HiveHeartbeat"
    }
    assert post["security"] == [{"bearer": []}]
    state = doc["components"]["schemas"]["WorkerReport"]["properties"]["state"]
    assert state == {"enum": ["Busy", "Idle", "Loading"]}


def test_extra_routes_share_the_token_check(runtime: Runtime) -> None:
    async def promote(request: Request) -> Response:
        authorize(request, admin=True)
        return JSONResponse({"promoted": True})

    async def fail(request: Request) -> Response:
        raise PreconditionFailed("aliases/m/prod.json changed meanwhile; retry")

    app = create_app(
        runtime,
        extra_routes=[
            Route("/v1/promote", promote, methods=["POST"]),
            Route("/v1/fail", fail),
        ],
    )
    with serve(app) as url:
        client = Client(url, ADMIN)
        assert client.post("/v1/promote", {}).body == {"promoted": True}
        assert client.post("/v1/promote", {}, token="bad").status == 401
        bound = client.post("/v1/promote", {}, token=HIVE_A)
        assert (bound.status, bound.body["error"]) == (
            403,
            "this token is bound to hive 'a'; this change needs a token bound to no hive",
        )
        failed = client.get("/v1/fail")
        assert (failed.status, failed.body["error"]) == (
            412,
            "aliases/m/prod.json changed meanwhile; retry",
        )
        allow = client.request("DELETE", "/health").headers["allow"]
        assert sorted(allow.split(", ")) == ["GET", "HEAD"]


def _registry_with(root: Path, model: str, version: str) -> Path:
    descriptor = BundleDescriptor(
        id=model, version=version, target="universal", hash="a" * 64, size_bytes=1,
        location=Location("remote", blob_key("a" * 64)),
    )  # fmt: skip
    commit(LocalStore(root), [descriptor], render=lambda index, aliases: {})
    return root


def test_the_serve_command(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# admin\n{ADMIN}\n{HIVE_A} a\n")
    registry = _registry_with(tmp_path / "site", "tiny", "1.0")
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--db", str(tmp_path / "rt.db"),
         "--token-file", str(tokens), "--ttl", "5", "--registry", str(registry)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONWARNINGS": ""},
    )  # fmt: skip
    try:
        client = Client(f"http://127.0.0.1:{port}", HIVE_A)
        assert wait_for(lambda: reachable(client), timeout=20)
        assert client.post("/v1/heartbeat", heartbeat("a")).body["ttl_seconds"] == 5.0
        promotion = {"model": "tiny", "alias": "production", "version": "1.0", "actor": "ci"}
        assert client.post("/v1/promote", promotion).status == 403  # a hive's token
        assert client.post("/v1/promote", promotion, token=ADMIN).status == 200
        history = client.get("/v1/history?model=tiny&alias=production").body
        assert [r["version"] for r in history["records"]] == ["1.0"]
        paths = client.get("/openapi.json").body["paths"]
        assert {"/v1/promote", "/v1/resolve", "/v1/aliases", "/v1/history", "/v1/verify"} <= set(
            paths
        )
        assert paths["/v1/promote"]["post"]["security"] == [{"bearer": []}]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()


def test_a_second_server_on_one_database_refuses_to_start(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{ADMIN}\n")
    db = tmp_path / "rt.db"

    def start(port: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*CLI, "serve", "--port", str(port), "--db", str(db), "--token-file", str(tokens)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    first_port = free_port()
    first = start(first_port)
    try:
        client = Client(f"http://127.0.0.1:{first_port}", ADMIN)
        assert wait_for(lambda: reachable(client), timeout=20)
        assert client.post("/services", SVC).status == 201
        second_port = free_port()
        second = start(second_port)
        _, err = second.communicate(timeout=30)
        assert (second.returncode, err) == (
            1,
            f"Error: catalog {db} is in use by process {first.pid} on host "
            f"{socket.gethostname()} (lock file {db}.lock); stop that server or pass another "
            "--db\n",
        )
        assert not reachable(Client(f"http://127.0.0.1:{second_port}"))
    finally:
        first.kill()  # SIGKILL: no clean shutdown, the lock file stays behind
        first.communicate(timeout=10)
    assert (tmp_path / "rt.db.lock").read_text() == f"{first.pid} {socket.gethostname()}\n"
    third_port = free_port()
    third = start(third_port)
    try:
        client = Client(f"http://127.0.0.1:{third_port}", ADMIN)
        assert wait_for(lambda: reachable(client), timeout=20)
        assert client.get("/services/svc1").body["port"] == 8080
    finally:
        third.terminate()
        third.communicate(timeout=10)


def test_the_serve_command_rejects_a_bad_token_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("one two three\n")
    done = subprocess.run(
        [*CLI, "serve", "--token-file", str(tokens)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == (
        f"Error: token file {tokens}, line 1: expected 'TOKEN' or 'TOKEN HIVE_ID', got 3 words; "
        "put one token per line\n"
    )


# -- property-based: no generated request gets a 5xx ---------------------------------------

_PATHS = [
    "/v1/heartbeat", "/v1/worker-heartbeat", "/v1/hives", "/v1/hives/{x}", "/v1/workers",
    "/v1/workers/{x}", "/v1/schedule", "/services", "/services/{x}", "/services/{x}/heartbeat",
    "/services/{x}/health", "/health", "/stats", "/metrics", "/openapi.json",
]  # fmt: skip


def _nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    _nested,
    max_leaves=12,
)
_worker = st.fixed_dictionaries(
    {"worker_id": st.text(max_size=12), "state": st.sampled_from(["Idle", "Busy", "Loading", "x"]),
     "last_heartbeat": st.sampled_from([T0.isoformat(), "yesterday", "2026-01-01T00:00:00"]),
     "health_status": st.sampled_from(["healthy", "degraded", 3])},
    optional={"gpu_percent": _json | st.floats(0, 100), "vram_bytes": st.integers(-5, 2**70),
              "model_id": st.text(max_size=8), "url": st.text(max_size=20)},
)  # fmt: skip
_bodies = st.one_of(
    st.builds(lambda h, ws: {"hive_id": h, "timestamp": T0.isoformat(), "workers": ws},
              st.text(max_size=12), st.lists(_worker, max_size=3)),
    st.builds(lambda n, p: {"name": n, "host": "h", "port": p}, st.text(max_size=8), _json),
    _json,
)  # fmt: skip
_requests = st.tuples(
    st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    st.sampled_from(_PATHS),
    st.text(max_size=16),
    st.dictionaries(st.sampled_from(["model", "fallback", "spread", "state", "backend",
                                     "healthy", "status", "max_age", "online"]),
                    st.text(max_size=8), max_size=3),
    st.one_of(_bodies.map(lambda b: json.dumps(b).encode()), st.binary(max_size=64)),
)  # fmt: skip


@pytest.mark.slow
def test_generated_requests_never_get_a_5xx(runtime: Runtime) -> None:
    statuses: list[int] = []
    with serve(create_app(runtime)) as url:
        client = Client(url, ADMIN)
        fleet(client)

        @settings(max_examples=520, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
        @given(_requests)
        def check(request: tuple[str, str, str, dict[str, str], bytes]) -> None:
            method, template, param, query, body = request
            path = template.replace("{x}", urllib.parse.quote(param, safe="") or "x")
            if query:
                path += "?" + urllib.parse.urlencode(query)
            answer = client.request(method, path, raw=body if method in ("POST", "PUT") else None)
            statuses.append(answer.status)
            assert answer.status < 500, (method, path, body, answer.body)

        check()
    assert len(statuses) >= 500
    assert {200, 404, 422} <= set(statuses)


# -- helpers ---------------------------------------------------------------------------------


def wait_for(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def reachable(client: Client) -> bool:
    try:
        return client.get("/health").status == 200
    except Exception:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_serve_command_names_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    from runtime.cli import main

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"Error: cannot listen on 127.0.0.1:{port}: ")
    assert err.endswith("; stop what uses it or choose another --port\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("t1 a\nt1 b\n", "line 2: the token is already listed above; keep one line"),
        ("t1 bad/hive\n", "line 1: hive id 'bad/hive' is not a valid name"),
    ],
)
def test_token_file_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(RegistryError) as caught:
        Tokens.from_file(path)
    assert str(caught.value).startswith(f"token file {path}, {message}")
