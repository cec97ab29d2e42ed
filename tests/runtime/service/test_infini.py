"""The service as a drop-in for infini-registry (seed 003): its Python client, unmodified, against
the app on uvicorn; the shapes it and its other users read; anonymous writes and who owns what;
health checks of the service's health endpoint, with the openai-api babysitter rule.

:class:`SeedClient` sends what infini-registry's ``RegistryClient`` and its registration script
(``register_service.py``) send, request for request: ``requests``, no token, the same bodies, and
the same checks of the answers (the status codes they test and the keys they read).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
import requests
from support.service import (
    ADMIN,
    HIVE_A,
    Client,
    FakeWallClock,
    LocalService,
    free_port,
    serve,
    wait_for,
)

from runtime.service.server import Runtime, build_runtime, create_app
from runtime.service.services import probe_url
from runtime.service.state import StateChoice
from runtime.service.tokens import Tokens
from runtime.service.types import ServiceRegistration, ServiceView

from .conftest import TOKENS


class SeedClient:
    """infini-registry's client, as it is: no token, its bodies, its checks."""

    def __init__(self, registry_url: str) -> None:
        self.registry_url = registry_url.rstrip("/")
        self.session = requests.Session()

    def register_service(
        self, name: str, host: str, port: int, url: str, metadata: dict[str, Any] | None = None
    ) -> bool:
        service_data = {
            "name": name, "host": host, "hostname": host, "port": port, "url": url,
            "status": "running", "metadata": metadata or {},
        }  # fmt: skip
        response = self.session.post(f"{self.registry_url}/services", json=service_data)
        return response.status_code == 201

    def unregister_service(self, name: str) -> bool:
        response = self.session.delete(f"{self.registry_url}/services/{name}")
        return response.status_code == 200

    def send_heartbeat(self, name: str) -> bool:
        response = self.session.post(f"{self.registry_url}/services/{name}/heartbeat")
        return response.status_code == 200

    def get_service_health(self, name: str) -> dict[str, Any] | None:
        response = self.session.get(f"{self.registry_url}/services/{name}/health")
        health: dict[str, Any] | None = response.json() if response.status_code == 200 else None
        return health

    def list_services(self) -> list[dict[str, Any]]:
        return self._services(f"{self.registry_url}/services")

    def get_healthy_services(self) -> list[dict[str, Any]]:
        return self._services(f"{self.registry_url}/services?healthy=true")

    def _services(self, url: str) -> list[dict[str, Any]]:
        response = self.session.get(url)
        found: list[dict[str, Any]] = []
        if response.status_code == 200:
            found = response.json().get("services", [])
        return found

    def check_registry_health(self) -> int | None:
        """The number of services the registry reports, None when it is not healthy."""
        response = self.session.get(f"{self.registry_url}/health")
        if response.status_code != 200:
            return None
        count: int = response.json().get("registered_services", 0)
        return count


@pytest.fixture
def anonymous(state_choice: StateChoice, tmp_path: Path) -> Iterator[tuple[str, Runtime]]:
    """The app with anonymous service writes allowed, on each state in turn; its URL."""
    rt = build_runtime(tokens=Tokens(TOKENS), state=state_choice, db=tmp_path / "rt.db",
                       check_timeout=2.0)  # fmt: skip
    try:
        with serve(create_app(rt, anonymous_services=True)) as url:
            yield url, rt
    finally:
        rt.state.close()


@pytest.fixture
def babysat() -> Iterator[tuple[LocalService, LocalService]]:
    """A service answering its own /health, and a babysitter answering for an openai-api one."""
    own, babysitter = LocalService(), LocalService()
    own.start()
    babysitter.start()
    yield own, babysitter
    own.stop()
    babysitter.stop()


def test_the_seed_client_works_unchanged(
    anonymous: tuple[str, Runtime], babysat: tuple[LocalService, LocalService]
) -> None:
    url, _rt = anonymous
    own, babysitter = babysat
    seed = SeedClient(url)
    assert seed.check_registry_health() == 0
    own_url = f"http://127.0.0.1:{own.port}"
    meta = {"type": "babysitter", "models": ["a", "b"], "gpus": 2}
    assert seed.register_service("babysitter", "127.0.0.1", own.port, own_url, meta)
    openai = babysitter.port - 1  # its API is not asked: its babysitter is, on port + 1
    openai_url = f"http://127.0.0.1:{openai}"
    assert seed.register_service("llm", "127.0.0.1", openai, openai_url, {"type": "openai-api"})
    assert seed.check_registry_health() == 2
    assert seed.send_heartbeat("llm")
    assert [s["name"] for s in seed.list_services()] == ["babysitter", "llm"]
    assert [s["name"] for s in seed.get_healthy_services()] == ["babysitter", "llm"]
    for name, checked in [("babysitter", own), ("llm", babysitter)]:
        health = seed.get_service_health(name)
        assert health is not None
        assert (health["service"], health["health_status"], health["is_healthy"]) == (
            name, "healthy", True,
        )  # fmt: skip
        assert abs(health["last_heartbeat"] - time.time()) < 5  # epoch seconds
        assert datetime.fromisoformat(health["timestamp"])
        assert checked.paths[-1] == "/health"  # the health endpoint, not the URL itself
    listed = seed.list_services()
    assert listed[0]["metadata"] == {"type": "babysitter", "models": ["a", "b"], "gpus": 2}
    assert (listed[0]["url"], listed[0]["status"], listed[0]["health_status"]) == (
        f"http://127.0.0.1:{own.port}", "running", "healthy",
    )  # fmt: skip
    assert seed.get_service_health("nope") is None
    assert not seed.send_heartbeat("nope")
    assert seed.unregister_service("llm")
    assert not seed.unregister_service("llm")
    assert seed.check_registry_health() == 1


def test_every_route_answers_the_shapes_of_the_seed(anonymous: tuple[str, Runtime]) -> None:
    url, _rt = anonymous
    http = requests.Session()
    body = {"name": "svc", "host": "10.0.0.9", "hostname": "node-9", "port": 8000,
            "url": "10.0.0.9:8000", "status": "running", "metadata": {"tags": ["x"], "n": 1},
            "timestamp": datetime.now().isoformat()}  # fmt: skip
    created = http.post(f"{url}/services", json=body)
    assert (created.status_code, created.json()["message"]) == (
        201, "Service 'svc' registered successfully",
    )  # fmt: skip
    service = created.json()["service"]
    assert {k: service[k] for k in ("name", "host", "hostname", "port", "url", "status")} == {
        k: body[k] for k in ("name", "host", "hostname", "port", "url", "status")
    }
    assert (service["metadata"], service["health_status"], service["is_healthy"]) == (
        {"tags": ["x"], "n": 1}, "unknown", True,
    )  # fmt: skip
    assert isinstance(service["last_heartbeat"], float)
    assert (service["owner"], service["anonymous"]) == (None, True)
    updated = http.put(f"{url}/services/svc", json={"status": "draining"})
    assert (updated.status_code, updated.json()["message"]) == (
        200, "Service 'svc' updated successfully",
    )  # fmt: skip
    assert (updated.json()["service"]["status"], updated.json()["service"]["port"]) == (
        "draining", 8000,
    )  # fmt: skip
    beat = http.post(f"{url}/services/svc/heartbeat", json={"status": "running", "load": 0.3})
    assert (beat.status_code, beat.json()["message"]) == (200, "Heartbeat received")
    assert set(beat.json()) >= {"message", "timestamp"}
    listed = http.get(f"{url}/services?status=running").json()
    assert (listed["total"], set(listed)) == (1, {"services", "total", "timestamp"})
    health = http.get(f"{url}/health").json()
    assert (health["status"], health["registry"], health["registered_services"]) == (
        "healthy", "running", 1,
    )  # fmt: skip
    assert set(health) >= {"status", "registry", "registered_services", "healthy_services",
                           "timestamp"}  # fmt: skip
    stats = http.get(f"{url}/stats").json()
    assert {k: stats[k] for k in ("total_services", "healthy_services", "unhealthy_services",
                                  "status_distribution", "host_distribution")} == {
        "total_services": 1, "healthy_services": 1, "unhealthy_services": 0,
        "status_distribution": {"running": 1}, "host_distribution": {"10.0.0.9": 1},
    }  # fmt: skip
    assert isinstance(stats["uptime"], float) and datetime.fromisoformat(stats["timestamp"])
    gone = http.delete(f"{url}/services/svc")
    assert (gone.status_code, gone.json()) == (
        200, {"message": "Service 'svc' unregistered successfully"},
    )  # fmt: skip


def test_without_the_flag_the_seed_client_is_refused(client: Client) -> None:
    seed = SeedClient(client.base_url)
    assert not seed.register_service("svc", "127.0.0.1", 8000, "http://127.0.0.1:8000")
    refused = requests.post(f"{client.base_url}/services", json={"name": "s", "host": "h",
                                                                  "port": 1})  # fmt: skip
    assert (refused.status_code, refused.json()) == (
        401, {"error": "this request needs a header 'Authorization: Bearer <token>'"},
    )  # fmt: skip
    assert seed.check_registry_health() == 0


def test_anonymous_services_and_token_owned_ones(anonymous: tuple[str, Runtime]) -> None:
    url, _rt = anonymous
    nobody, admin, hive_a = Client(url), Client(url, ADMIN), Client(url, HIVE_A)
    assert hive_a.post("/services", {"name": "owned", "host": "h", "port": 1}).status == 201
    assert admin.post("/services", {"name": "admins", "host": "h", "port": 1}).status == 201
    for name, error in [
        ("owned", "service 'owned' belongs to hive 'a' and this request has no token; send "
                  "'Authorization: Bearer <token>' with a token of hive 'a' or an admin token"),
        ("admins", "service 'admins' was registered with an admin token and this request has no "
                   "token; send 'Authorization: Bearer <token>' with an admin token (bound to no "
                   "hive)"),
    ]:  # fmt: skip
        for method, path, body in [
            ("POST", "/services", {"name": name, "host": "evil", "port": 1}),
            ("PUT", f"/services/{name}", {"host": "evil"}),
            ("POST", f"/services/{name}/heartbeat", None),
            ("DELETE", f"/services/{name}", None),
        ]:
            answer = nobody.request(method, path, body)
            assert (answer.status, answer.body) == (401, {"error": error}), (method, path)
            assert answer.headers["www-authenticate"] == "Bearer"
    wrong = nobody.request(
        "POST", "/services", {"name": "x", "host": "h", "port": 1}, token="guess"
    )
    assert wrong.status == 401  # a token that is sent must be a known one
    assert nobody.post("/services", {"name": "open", "host": "h", "port": 1}).status == 201
    changed = hive_a.request("PUT", "/services/open", {"port": 2})  # anyone may change it
    assert (changed.status, changed.body["service"]["owner"]) == (200, None)
    assert changed.body["service"]["anonymous"] is True  # and it stays anonymous
    assert nobody.request("DELETE", "/services/open").status == 200
    assert Client(url, HIVE_A).get("/services/owned").body["host"] == "h"


def test_the_openapi_document_says_service_writes_take_no_token(
    anonymous: tuple[str, Runtime],
) -> None:
    paths = Client(anonymous[0]).get("/openapi.json").body["paths"]
    assert paths["/services"]["post"]["security"] == [{"bearer": []}, {}]
    assert paths["/v1/heartbeat"]["post"]["security"] == [{"bearer": []}]


def service(**fields: Any) -> ServiceView:
    base: dict[str, Any] = {
        "name": "s", "host": "10.0.0.1", "port": 8000, "hostname": None, "url": None,
        "status": "running", "metadata": {}, "timestamp": datetime.now(), "health_status": "x",
        "last_heartbeat": datetime.now(), "is_healthy": True,
    }  # fmt: skip
    return ServiceView(**{**base, **fields})


@pytest.mark.parametrize(
    ("fields", "probed"),
    [
        ({}, "http://10.0.0.1:8000/health"),
        ({"url": "http://10.0.0.1:8000"}, "http://10.0.0.1:8000/health"),
        ({"url": "http://10.0.0.1:8000/"}, "http://10.0.0.1:8000/health"),
        ({"url": "https://api.example/v1?k=1"}, "https://api.example/v1/health?k=1"),
        ({"url": "http://10.0.0.1:8000/health"}, "http://10.0.0.1:8000/health"),
        ({"url": "10.0.0.1:8000"}, "http://10.0.0.1:8000/health"),  # not http(s): host:port
        ({"metadata": {"type": "openai-api"}, "url": "http://x:1"}, "http://10.0.0.1:8001/health"),
        ({"host": "::1"}, "http://[::1]:8000/health"),
    ],
)
def test_what_a_health_check_asks(fields: dict[str, Any], probed: str) -> None:
    assert probe_url(service(**fields)) == probed


def test_health_checks_every_interval_probe_the_health_endpoint(tmp_path: Path) -> None:
    target = LocalService()
    target.start()
    rt = build_runtime(tokens=Tokens(TOKENS), db=tmp_path / "rt.db", check_interval=0.1,
                       check_timeout=1.0)  # fmt: skip
    try:
        with serve(create_app(rt, anonymous_services=True)) as url:
            body = {"name": "api", "host": "127.0.0.1", "port": target.port,
                    "url": f"http://127.0.0.1:{target.port}/v1"}  # fmt: skip
            assert Client(url).post("/services", body).status == 201
            assert wait_for(lambda: len(target.paths) >= 3)
            answer = Client(url).get("/services/api").body
    finally:
        target.stop()
        rt.state.close()
    assert set(target.paths) == {"/v1/health"}
    assert answer["health_status"] == "healthy"


def test_silent_services_are_removed_every_cleanup_interval(tmp_path: Path) -> None:
    wall = FakeWallClock()
    rt = build_runtime(tokens=Tokens(TOKENS), db=tmp_path / "rt.db", now=wall,
                       cleanup_interval=0.05)  # fmt: skip
    with serve(create_app(rt)) as url:
        assert Client(url, ADMIN).post("/services", {"name": "s", "host": "h", "port": 1}).status
        wall.advance(299)
        time.sleep(0.2)
        assert list(rt.services.held()) == ["s"]  # 299 s silent: kept
        wall.advance(2)
        assert wait_for(lambda: rt.services.held() == {})  # 301 s: the cleanup removed it
    rt.state.close()
    again = build_runtime(tokens=Tokens(TOKENS), db=tmp_path / "rt.db")
    assert again.services.held() == {}  # from the catalog too
    again.state.close()


def test_a_live_check_counts_as_a_heartbeat(tmp_path: Path) -> None:
    wall = FakeWallClock()
    target = LocalService()
    target.start()
    rt = build_runtime(tokens=Tokens(TOKENS), db=tmp_path / "rt.db", now=wall)
    try:
        body = {"name": "api", "host": "127.0.0.1", "port": target.port}
        rt.services.register(msgspec.convert(body, ServiceRegistration))
        wall.advance(200)
        assert not rt.services.get("api").is_healthy  # silent for 200 s
        health = asyncio.run(rt.checker.check_now("api"))
        assert (health.health_status, health.is_healthy, health.seconds_since_heartbeat) == (
            "healthy", True, 0.0,
        )  # fmt: skip
        target.stop()
        wall.advance(10)
        down = asyncio.run(rt.checker.check_now("api"))
        assert (down.health_status, down.is_healthy, down.seconds_since_heartbeat) == (
            "unhealthy", False, 10.0,
        )  # fmt: skip
    finally:
        target.stop()
        rt.state.close()


def test_the_serve_command_with_the_seed_options(tmp_path: Path) -> None:
    target = LocalService()
    target.start()
    port = free_port()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{ADMIN}\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from runtime.cli import main; sys.exit(main())",
         "serve", "--port", str(port), "--db", str(tmp_path / "rt.db"), "--token-file",
         str(tokens), "--allow-anonymous-services", "--health-interval", "0.2",
         "--health-timeout", "1", "--cleanup-interval", "5", "--access-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        seed = SeedClient(f"http://127.0.0.1:{port}")
        assert wait_for(lambda: _answers(seed), timeout=20)
        assert seed.register_service("api", "127.0.0.1", target.port,
                                     f"http://127.0.0.1:{target.port}")  # fmt: skip
        assert wait_for(lambda: seed.list_services()[0]["health_status"] == "healthy")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
        target.stop()
    lines = err.splitlines()
    assert lines[0] == (
        f"registry-runtime: serving on http://127.0.0.1:{port}; state memory (db "
        f"{tmp_path / 'rt.db'}); registry none; writes need one of 1 token of {tokens}; service "
        "writes without a token allowed"
    )
    logged = re.compile(r'^\S+ \S+ 127\.0\.0\.1:\d+ "POST /services HTTP/1\.1" 201 [\d.]+ ms$')
    assert [line for line in lines if logged.match(line)] != [], lines


def _answers(seed: SeedClient) -> bool:
    try:
        return seed.check_registry_health() is not None
    except requests.ConnectionError:
        return False
