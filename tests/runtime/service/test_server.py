"""The assembled service: restarts, ``/openapi.json``, the alias routes over a registry, the
``serve`` command, and generated requests against every route."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.service import (
    ADMIN,
    HIVE_A,
    T0,
    Client,
    fleet,
    free_port,
    heartbeat,
    reachable,
    serve,
    wait_for,
    worker,
)

from registry_build.commit import commit
from runtime.errors import RegistryError
from runtime.registry.wire import BundleDescriptor, Location, blob_key
from runtime.service.scheduler import Scheduler
from runtime.service.server import Runtime, ServeOptions, build_runtime, create_app, summary
from runtime.service.server import serve as run_server
from runtime.service.services import HealthChecker
from runtime.service.state import MEMORY, StateChoice, parse_state
from runtime.service.state_memory import MemoryState
from runtime.service.tokens import Tokens
from runtime.storage.local import LocalStore
from runtime.storage.location import open_store

CLI = [sys.executable, "-c", "import sys; from runtime.cli import main; sys.exit(main())"]
SVC = {"name": "svc1", "host": "10.0.0.1", "port": 8080}


def test_restart_keeps_services_and_the_hive_catalog(tmp_path: Path) -> None:
    db = tmp_path / "rt.db"
    tokens = Tokens({ADMIN: None})
    rt = build_runtime(tokens=tokens, db=db)
    with serve(create_app(rt)) as url:
        client = Client(url, ADMIN)
        client.post("/services", {"name": "api", "host": "10.0.0.1", "port": 80})
        client.post("/v1/heartbeat", heartbeat("a", worker("a1"), host="gpu-a", devices=["cuda:0"]))
    rt.state.close()
    again = build_runtime(tokens=tokens, db=db)
    with serve(create_app(again)) as url:
        client = Client(url, ADMIN)
        assert client.get("/services/api").body["host"] == "10.0.0.1"
        listed = client.get("/v1/hives").body  # heartbeat state is soft; the catalog is not
        assert (listed["total"], listed["online"]) == (1, 0)
        assert listed["hives"] == [client.get("/v1/hives/a").body]
        assert listed["hives"][0] == {
            "hive_id": "a", "status": "Unknown", "online": False, "age_seconds": None,
            "timestamp": "2026-01-01T00:00:00Z", "workers": [], "host": "gpu-a", "port": None,
            "devices": ["cuda:0"], "resources": {
                "workers": 0, "idle": 0, "busy": 0, "loading": 0, "vram_bytes": 0, "ram_bytes": 0,
                "cpu_percent": 0.0, "gpu_percent": None, "gpu_percent_per_worker": {}},
        }  # fmt: skip
        assert client.get("/v1/hives?online=true").body["hives"] == []
    [hive] = asyncio.run(again.state.catalog_hives())
    assert (hive.hive_id, hive.host, hive.devices, hive.status) == (
        "a",
        "gpu-a",
        ["cuda:0"],
        "Unknown",
    )
    assert hive.last_heartbeat == T0
    again.state.close()


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


def _registry_with(root: Path, model: str, version: str) -> Path:
    descriptor = BundleDescriptor(
        id=model, version=version, target="universal", hash="a" * 64, size_bytes=1,
        location=Location("remote", blob_key("a" * 64)),
    )  # fmt: skip
    commit(LocalStore(root), [descriptor])
    return root


def test_alias_routes_over_a_registry_served_by_http_server(
    runtime: Runtime, tmp_path: Path, http_server: Callable[[Path], str]
) -> None:
    site = _registry_with(tmp_path / "site", "tiny", "1.0")
    with serve(create_app(runtime, registry=open_store(http_server(site)))) as url:
        client = Client(url, ADMIN)
        resolved = client.get("/v1/resolve?ref=tiny")
        assert (resolved.status, resolved.body["version"]) == (200, "1.0")
        assert client.get("/v1/aliases?model=tiny").body == {"model": "tiny", "aliases": []}
        promotion = {"model": "tiny", "alias": "production", "version": "1.0", "actor": "ci"}
        refused = client.post("/v1/promote", promotion)
        assert refused.status == 501
        assert refused.body["error"].endswith(
            "is read-only (HTTP): writing aliases/tiny/production/1.json needs a writable "
            "location; use the directory or s3:// location it is served from"
        )


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


@contextlib.contextmanager
def taken_port() -> Iterator[int]:
    """A loopback port that something listens on for the duration of the block."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        yield taken.getsockname()[1]


def test_the_serve_command_rejects_a_bad_token_file_even_when_the_port_is_taken(
    tmp_path: Path,
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("one two three\n")
    with taken_port() as port:
        done = subprocess.run(
            [*CLI, "serve", "--port", str(port), "--token-file", str(tokens)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert (done.returncode, done.stderr) == (
        1,
        f"Error: token file {tokens}, line 1: expected 'TOKEN' or 'TOKEN HIVE_ID', got 3 words; "
        "put one token per line\n",
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"token_file": Path("tokens")}, "token file tokens, line 1: expected 'TOKEN' or 'TOKEN "
         "HIVE_ID', got 3 words; put one token per line"),
        ({"registry": "s3://"}, "'s3://' names no host or bucket: write s3://BUCKET/PREFIX"),
        ({"state": "redis://127.0.0.1:1/0", "db": Path("rt.db")}, "--db rt.db goes with --state "
         "memory only: with --state redis://127.0.0.1:1/0 the services and the hive catalog live "
         "in Redis; drop --db"),
    ],
)  # fmt: skip
def test_serve_checks_its_inputs_before_the_port(
    fields: dict[str, Any], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("tokens").write_text("one two three\n")
    with taken_port() as port, pytest.raises(RegistryError) as raised:
        run_server(ServeOptions(port=port, **fields))
    assert str(raised.value) == message


# -- property-based: no generated request gets a 5xx ---------------------------------------

_PATHS = [
    "/v1/heartbeat", "/v1/worker-heartbeat", "/v1/hives", "/v1/hives/{x}", "/v1/workers",
    "/v1/workers/{x}", "/v1/schedule", "/services", "/services/{x}", "/services/{x}/heartbeat",
    "/services/{x}/health", "/health", "/stats", "/metrics", "/openapi.json", "/v1/models",
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
    st.builds(lambda m, u: {"name": "s", "host": "127.0.0.1", "port": 1, "metadata": m, "url": u},
              _json, _json),
    st.builds(lambda s, m: {"status": s, "metadata": m}, st.text(max_size=8), _json),
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


@pytest.mark.parametrize(
    ("options", "state", "tokens", "line"),
    [
        (ServeOptions(), MEMORY, 1, "registry-runtime: serving on http://127.0.0.1:8081; state "
         "memory (db registry-runtime.db); registry none; writes need the one-run token printed "
         "above; service writes without a token refused"),
        (ServeOptions(host="::", port=9000, token_file=Path("tokens"), registry="site",
                      allow_anonymous_services=True),
         parse_state("redis://:s3cret@cache:6379/2"), 3,
         "registry-runtime: serving on http://[::]:9000; state redis://cache:6379/2; registry "
         "{site}; writes need one of 3 tokens of tokens; service writes without a token "
         "allowed"),
    ],
)  # fmt: skip
def test_the_line_serve_prints_on_start(
    options: ServeOptions, state: StateChoice, tokens: int, line: str, tmp_path: Path
) -> None:
    store = None if options.registry is None else LocalStore(tmp_path / "site")
    assert summary(options, state, store, tokens) == line.format(site=tmp_path / "site")


def test_the_serve_command_names_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    from runtime.cli import main

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"Error: cannot listen on 127.0.0.1:{port}: ")
    assert err.endswith("; stop what uses it or choose another --port\n")


class SwallowingState(MemoryState):
    """The memory state with redis-py's fault: the first cancellation that arrives while the
    health checker claims a service is swallowed."""

    swallowed = False

    async def claim_check(self, name: str, interval: float) -> bool:
        if not self.swallowed:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                self.swallowed = True
        return False


def test_the_server_stops_when_a_task_swallows_its_cancellation(tmp_path: Path) -> None:
    state = SwallowingState.open(tmp_path / "rt.db")
    checker = HealthChecker(state, interval=0.01)
    rt = Runtime(state, Scheduler(state.hives), Tokens({ADMIN: None}), checker)
    started = time.monotonic()
    with serve(create_app(rt)) as url:
        assert Client(url, ADMIN).post("/services", SVC).status == 201
        time.sleep(0.1)  # the checker is claiming the service now
    state.close()
    assert state.swallowed
    assert time.monotonic() - started < 5  # the helper also fails if uvicorn is still running
