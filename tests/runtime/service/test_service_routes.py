"""The service registry's routes, and who may change a service, through the app on uvicorn."""

from __future__ import annotations

from pathlib import Path

from support.service import (
    ADMIN,
    HIVE_A,
    HIVE_B,
    Client,
    LocalService,
    free_port,
    serve,
    wait_for,
)

from runtime.service.server import build_runtime, create_app
from runtime.service.tokens import Tokens


def test_service_registry_endpoints(any_client: Client) -> None:
    port = free_port()  # nothing listens there: the health check now finds it down
    body = {"name": "api", "host": "127.0.0.1", "port": 8080, "metadata": {"team": "ml"}}
    created = any_client.post("/services", body)
    assert (created.status, created.body["message"]) == (
        201,
        "Service 'api' registered successfully",
    )
    assert (created.body["service"]["name"], created.body["service"]["is_healthy"]) == ("api", True)
    assert any_client.post("/services", {**body, "port": port}).status == 201
    assert any_client.get("/services/api").body["port"] == port
    any_client.post(
        "/services", {"name": "db", "host": "10.0.0.2", "port": 5432, "status": "stopped"}
    )
    listed = any_client.get("/services?healthy=true&status=running").body
    assert ([s["name"] for s in listed["services"]], listed["total"]) == (["api"], 1)
    put = any_client.request("PUT", "/services/api", {"hostname": "api-1"})  # a partial update
    assert (put.status, put.body["message"]) == (200, "Service 'api' updated successfully")
    assert (put.body["service"]["hostname"], put.body["service"]["port"]) == ("api-1", port)
    assert put.body["service"]["metadata"] == {"team": "ml"}
    mismatch = any_client.request("PUT", "/services/api", {**body, "name": "web"})
    assert (mismatch.status, mismatch.body["field"]) == (422, "$.name")
    assert any_client.request("PUT", "/services/nope", {**body, "name": "nope"}).status == 404
    assert any_client.post("/services/api/heartbeat").status == 200
    beat = any_client.post("/services/api/heartbeat", {"status": "draining"})
    assert beat.body["message"] == "Heartbeat received"
    assert (beat.body["service"]["status"], beat.body["service"]["is_healthy"]) == (
        "draining", False,
    )  # fmt: skip
    assert any_client.post("/services/nope/heartbeat").status == 404
    health = any_client.get("/services/api/health").body
    assert (health["service"], health["is_healthy"], health["status"]) == ("api", False, "draining")
    assert (health["health_status"], health["probed"]) == (
        "unhealthy", f"http://127.0.0.1:{port}/health",
    )  # fmt: skip
    stats = any_client.get("/stats").body
    assert (stats["total_services"], stats["healthy_services"], stats["status_distribution"]) == (
        2,
        0,
        {"draining": 1, "stopped": 1},
    )
    gone = any_client.request("DELETE", "/services/api")
    assert (gone.status, gone.body) == (200, {"message": "Service 'api' unregistered successfully"})
    assert any_client.request("DELETE", "/services/api").status == 404
    assert any_client.get("/services/api").body == {
        "error": "service 'api' is not registered (or was removed after 300 s without a "
        "heartbeat); register it with POST /services"
    }


SVC = {"name": "svc1", "host": "10.0.0.1", "port": 8080}


def test_a_service_belongs_to_the_hive_that_registered_it(any_client: Client) -> None:
    created = any_client.post("/services", SVC, token=HIVE_A)
    assert (created.status, created.body["service"]["owner"]) == (201, "a")
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
        any_client.get("/stats").body["status_distribution"],
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
    assert (fixed.status, fixed.body["service"]["port"], fixed.body["service"]["owner"]) == (
        200, 3, "a",
    )  # fmt: skip
    assert any_client.request("DELETE", "/services/svc1", token=HIVE_A).status == 200
    taken = any_client.post("/services", SVC, token=HIVE_B)  # the name is free again
    assert (taken.status, taken.body["service"]["owner"]) == (201, "b")
    assert any_client.request("DELETE", "/services/svc1").status == 200  # an admin token


def test_a_service_an_admin_registered_refuses_hive_tokens(any_client: Client) -> None:
    assert any_client.post("/services", SVC).body["service"]["owner"] is None
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
        assert Client(url, HIVE_A).request("DELETE", "/services/svc1").status == 200
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

        def status() -> str:  # as the background checks left it
            value: str = client.get("/services/api").body["health_status"]
            return value

        assert wait_for(lambda: status() == "healthy")
        service.stop()
        assert wait_for(lambda: status() == "unhealthy")
        assert client.get("/services?healthy=false").body["total"] == 1
        service.start()
        assert wait_for(lambda: status() == "healthy")
        service.stop()
