"""The routes of hives, workers and scheduling, through the app on uvicorn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.service import (
    ADMIN,
    HIVE_A,
    Client,
    FakeClock,
    fleet,
    heartbeat,
    serve,
    wait_for,
    worker,
)

from runtime.service.server import build_runtime, create_app
from runtime.service.state import StateChoice
from runtime.service.tokens import Tokens

from .conftest import TOKENS


def test_heartbeats_then_every_query(client: Client, clock: FakeClock) -> None:
    fleet(client)
    clock.advance(3)
    hives = client.get("/v1/hives").body
    assert (hives["total"], hives["online"], hives["frozen"]) == (2, 2, False)
    assert [h["hive_id"] for h in hives["hives"]] == ["a", "b"]
    hive = client.get("/v1/hives/a").body
    assert (hive["status"], hive["online"], hive["age_seconds"], hive["timestamp"]) == (
        "Online",
        True,
        3.0,
        "2026-01-01T00:00:00Z",
    )
    assert (hive["host"], hive["port"], hive["devices"]) == ("gpu-a", 9000, ["cuda:0", "cuda:1"])
    assert hive["resources"] == {
        "workers": 2, "idle": 1, "busy": 1, "loading": 0, "vram_bytes": 100, "ram_bytes": 0,
        "cpu_percent": 0.0, "gpu_percent": 67.5,
        "gpu_percent_per_worker": {"a1": 40.0, "a2": 95.0},
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
    any_ = client.get("/v1/schedule?model=mistral").body  # any idle worker, to load it
    assert (any_["worker"]["worker"]["worker_id"], any_["model_loaded"]) == ("b1", False)
    health = client.get("/health").body
    assert {k: health[k] for k in ("status", "hives_total", "hives_online", "workers")} == {
        "status": "healthy", "hives_total": 2, "hives_online": 2, "workers": 3,
    }  # fmt: skip
    assert client.request("DELETE", "/v1/hives/b").status == 204
    assert client.get("/v1/hives/b").status == 404
    assert client.get("/v1/hives?online=true").body["total"] == 1
    metrics = client.get("/metrics").body
    for series in [
        'runtime_http_requests_total{method="POST",route="/v1/heartbeat",status="200"} 2.0',
        'runtime_http_requests_total{method="GET",route="/v1/hives/{hive_id}",status="200"} 1.0',
        'runtime_http_requests_total{method="GET",route="/v1/hives/{hive_id}",status="404"} 1.0',
        'runtime_http_request_seconds_count{method="GET",route="/v1/schedule"} 2.0',
    ]:
        assert f"\n{series}\n" in metrics, series


def test_worker_heartbeat(any_client: Client) -> None:
    fleet(any_client)
    body = {"worker_id": "a1", "timestamp": "2026-01-01T00:01:00Z", "health_status": "degraded"}
    answer = any_client.post("/v1/worker-heartbeat", body)
    assert answer.body["worker"]["health_status"] == "degraded"
    gone = any_client.get("/v1/schedule?model=llama&fallback=none")
    assert (gone.status, gone.body) == (
        503,
        {"error": "no healthy idle worker on an online hive has model 'llama' loaded; drop "
         "fallback=none to accept an idle worker that would load it"},
    )  # fmt: skip
    other = any_client.get("/v1/schedule?model=llama").body  # the idle whisper worker
    assert (other["worker"]["worker"]["worker_id"], other["model_loaded"]) == ("b1", False)
    assert any_client.post("/v1/worker-heartbeat", {**body, "worker_id": "zz"}).status == 404


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
    any_client: Client, body: bytes, status: int, error: str, field: str
) -> None:
    answer = any_client.post("/v1/heartbeat", raw=body)
    assert (answer.status, answer.body) == (status, {"error": error, "field": field})


def test_body_size_limit(any_client: Client) -> None:
    answer = any_client.post("/v1/heartbeat", raw=b" " * (256 * 1024 + 1))
    assert (answer.status, answer.body["error"]) == (
        413,
        "the request body is 262145 bytes; the limit is 262144 bytes",
    )


def test_tokens_and_binding(any_client: Client) -> None:
    no = any_client.post("/v1/heartbeat", heartbeat("a"), token="")
    assert (no.status, no.body["error"]) == (
        401,
        "this request needs a header 'Authorization: Bearer <token>'",
    )
    assert no.headers["www-authenticate"] == "Bearer"
    wrong = any_client.post("/v1/heartbeat", heartbeat("a"), token="guess")
    assert (wrong.status, wrong.body["error"]) == (
        401,
        "the bearer token is not one this server accepts",
    )
    assert (
        any_client.post("/v1/heartbeat", heartbeat("a", worker("a1")), token=HIVE_A).status == 200
    )
    other = any_client.post("/v1/heartbeat", heartbeat("b"), token=HIVE_A)
    assert (other.status, other.body["error"]) == (
        403,
        "this token is bound to hive 'a' and cannot speak for hive 'b'",
    )
    any_client.post("/v1/heartbeat", heartbeat("b", worker("b1")))
    wb = {"worker_id": "b1", "timestamp": "2026-01-01T00:01:00Z", "health_status": "healthy"}
    assert any_client.post("/v1/worker-heartbeat", wb, token=HIVE_A).status == 403
    assert (
        any_client.post("/v1/worker-heartbeat", {**wb, "worker_id": "a1"}, token=HIVE_A).status
        == 200
    )
    assert any_client.request("DELETE", "/v1/hives/b", token=HIVE_A).status == 403
    assert (
        any_client.post("/services", {"name": "s", "host": "h", "port": 1}, token="").status == 401
    )
    assert any_client.get("/v1/hives").status == 200  # reads need no token


def test_conflicting_worker_ids(any_client: Client) -> None:
    fleet(any_client)
    answer = any_client.post("/v1/heartbeat", heartbeat("c", worker("a1")))
    assert answer.status == 409
    assert answer.body["field"] == "$.workers[0].worker_id"


def test_bad_query_parameters(any_client: Client) -> None:
    cases = {
        "/v1/schedule": (
            "query parameter model is required: this server has no --registry to take a default "
            "model from; ask /v1/schedule?model=NAME", "model"),
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
        answer = any_client.get(path)
        assert (answer.status, answer.body) == (400, {"error": error, "field": field}), path
    missing = any_client.get("/v2/nothing")
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
    assert client.get("/health").body["hives_total"] == 5
    listed = client.get("/v1/hives").body  # the catalog keeps it, Offline
    assert (listed["total"], listed["hives"][-1]["hive_id"], listed["hives"][-1]["status"]) == (
        6, "f", "Offline",
    )  # fmt: skip
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
    assert client.get("/health").body["status"] == "healthy"
    assert client.get("/health").body["hives_total"] == 3
    assert "runtime_heartbeats_total 14.0" in client.get("/metrics").body


def test_the_catalog_lists_evicted_hives_and_nothing_can_serve(
    state_choice: StateChoice, tmp_path: Path
) -> None:
    rt = build_runtime(tokens=Tokens(TOKENS), state=state_choice, db=tmp_path / "rt.db", ttl=0.3)
    try:
        with serve(create_app(rt)) as url:
            client = Client(url, ADMIN)
            beat = heartbeat("a", worker("a1", model_id="m"), host="gpu-a", devices=["cuda:0"])
            assert client.post("/v1/heartbeat", beat).status == 200
            assert wait_for(lambda: client.get("/health").body["hives_total"] == 0)  # evicted
            listed = client.get("/v1/hives").body
            one = client.get("/v1/hives/a").body
            nothing = client.get("/v1/schedule?model=m")
    finally:
        rt.state.close()
    assert (listed["total"], listed["online"], listed["hives"]) == (1, 0, [one])
    keys = ("status", "online", "age_seconds", "host", "devices", "workers")
    assert {k: one[k] for k in keys} == {
        "status": "Offline", "online": False, "age_seconds": None, "host": "gpu-a",
        "devices": ["cuda:0"], "workers": [],
    }  # fmt: skip
    assert (nothing.status, nothing.body) == (
        503,
        {"error": "no worker can serve model 'm': no healthy idle worker on an online hive; "
         "retry when one is idle (GET /v1/workers lists the workers)"},
    )  # fmt: skip
