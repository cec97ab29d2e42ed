"""The service registry's routes, and who may change a service, through the app on uvicorn."""

from __future__ import annotations

from pathlib import Path

from support.service import ADMIN, HIVE_A, HIVE_B, Client, LocalService, serve, wait_for

from runtime.service.server import build_runtime, create_app
from runtime.service.tokens import Tokens


def test_service_registry_endpoints(any_client: Client) -> None:
    body = {"name": "api", "host": "10.0.0.1", "port": 8080, "metadata": {"team": "ml"}}
    created = any_client.post("/services", body)
    assert (created.status, created.body["name"], created.body["is_healthy"]) == (201, "api", True)
    assert any_client.post("/services", {**body, "port": 9090}).status == 201
    assert any_client.get("/services/api").body["port"] == 9090
    any_client.post(
        "/services", {"name": "db", "host": "10.0.0.2", "port": 5432, "status": "stopped"}
    )
    listed = any_client.get("/services?healthy=true&status=running").body
    assert [s["name"] for s in listed["services"]] == ["api"]
    put = any_client.request("PUT", "/services/api", {**body, "hostname": "api-1"})
    assert put.body["hostname"] == "api-1"
    mismatch = any_client.request("PUT", "/services/api", {**body, "name": "web"})
    assert (mismatch.status, mismatch.body["field"]) == (422, "$.name")
    assert any_client.request("PUT", "/services/nope", {**body, "name": "nope"}).status == 404
    assert any_client.post("/services/api/heartbeat").status == 200
    beat = any_client.post("/services/api/heartbeat", {"status": "draining"})
    assert (beat.body["status"], beat.body["is_healthy"]) == ("draining", False)
    assert any_client.post("/services/nope/heartbeat").status == 404
    health = any_client.get("/services/api/health").body
    assert (health["is_healthy"], health["status"]) == (False, "draining")
    stats = any_client.get("/stats").body
    assert (stats["total"], stats["healthy"], stats["statuses"]) == (
        2,
        0,
        {"draining": 1, "stopped": 1},
    )
    assert any_client.request("DELETE", "/services/api").status == 204
    assert any_client.request("DELETE", "/services/api").status == 404
    assert any_client.get("/services/api").body == {
        "error": "service 'api' is not registered (or was removed after 300 s without a "
        "heartbeat); register it with POST /services"
    }


SVC = {"name": "svc1", "host": "10.0.0.1", "port": 8080}


def test_a_service_belongs_to_the_hive_that_registered_it(any_client: Client) -> None:
    created = any_client.post("/services", SVC, token=HIVE_A)
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
        answer = any_client.request(method, path, body, token=HIVE_B)
        assert (answer.status, answer.body) == (403, {"error": refused}), (method, path)
        for token, error in [
            ("", "this request needs a header 'Authorization: Bearer <token>'"),
            ("guess", "the bearer token is not one this server accepts"),
        ]:
            answer = any_client.request(method, path, body, token=token)
            assert (answer.status, answer.body) == (401, {"error": error}), (method, path)
    assert (
        any_client.get("/services/svc1").body["port"],
        any_client.get("/stats").body["statuses"],
    ) == (
        8080,
        {"running": 1},
    )
    assert (
        any_client.request("PUT", "/services/svc1", {**SVC, "port": 1}, token=HIVE_A).status == 200
    )
    assert any_client.post("/services/svc1/heartbeat", token=HIVE_A).status == 200
    assert any_client.post("/services", {**SVC, "port": 2}, token=HIVE_A).status == 201
    fixed = any_client.request("PUT", "/services/svc1", {**SVC, "port": 3})  # an admin token
    assert (fixed.status, fixed.body["port"], fixed.body["owner"]) == (200, 3, "a")
    assert any_client.request("DELETE", "/services/svc1", token=HIVE_A).status == 204
    taken = any_client.post("/services", SVC, token=HIVE_B)  # the name is free again
    assert (taken.status, taken.body["owner"]) == (201, "b")
    assert any_client.request("DELETE", "/services/svc1").status == 204  # an admin token


def test_a_service_an_admin_registered_refuses_hive_tokens(any_client: Client) -> None:
    assert any_client.post("/services", SVC).body["owner"] is None
    answer = any_client.post("/services/svc1/heartbeat", token=HIVE_A)
    assert (answer.status, answer.body["error"]) == (
        403,
        "service 'svc1' was registered with an admin token and this token is bound to hive "
        "'a'; use an admin token (bound to no hive)",
    )
    assert any_client.post("/services/svc1/heartbeat").status == 200


def test_ownership_survives_a_restart(tmp_path: Path) -> None:
    tokens = Tokens({ADMIN: None, HIVE_A: "a", HIVE_B: "b"})
    rt = build_runtime(tokens=tokens, db=tmp_path / "rt.db")
    with serve(create_app(rt)) as url:
        assert Client(url, HIVE_A).post("/services", SVC).status == 201
    rt.state.close()
    again = build_runtime(tokens=tokens, db=tmp_path / "rt.db")
    with serve(create_app(again)) as url:
        assert Client(url, HIVE_B).request("DELETE", "/services/svc1").status == 403
        assert Client(url, HIVE_A).request("DELETE", "/services/svc1").status == 204
    again.state.close()


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
