"""The service's Python client against a live server (the app on uvicorn), and against real small
servers that refuse, hang or redirect: every route, the errors, retries and their back-off,
timeouts, and one kept-alive connection."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from support.service import (
    ADMIN,
    HIVE_A,
    T0,
    closed_port_url,
    heartbeat,
    hung_service,
    serve,
    status_server,
    worker,
)

from registry_build.commit import commit
from runtime.errors import RegistryError
from runtime.registry.wire import BundleDescriptor, Location, blob_key
from runtime.service.client import (
    ClientConfigError,
    ServiceAnswerError,
    ServiceClient,
    ServiceError,
    ServiceUnreachable,
)
from runtime.service.server import Runtime, build_runtime, create_app
from runtime.service.tokens import Tokens
from runtime.service.types import (
    HiveHeartbeat,
    ServiceRegistration,
    ServiceUpdate,
    WorkerHeartbeat,
)
from runtime.storage.local import LocalStore

from .conftest import TOKENS


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, Runtime]]:
    """The app over a registry with model tiny@1.0 (its default), logging every request."""
    descriptor = BundleDescriptor(
        id="tiny", version="1.0", target="universal", hash="a" * 64, size_bytes=1,
        location=Location("remote", blob_key("a" * 64)),
    )  # fmt: skip
    store = LocalStore(tmp_path / "site")
    commit(store, [descriptor])
    models = tmp_path / "site" / "v1" / "models"
    models.write_text(models.read_text().replace('"id":"tiny"', '"id":"tiny","default":true'))
    rt = build_runtime(tokens=Tokens(TOKENS), db=tmp_path / "rt.db")
    with serve(create_app(rt, registry=store, log_requests=True)) as url:
        yield url, rt
    rt.state.close()


def beat(hive_id: str, *workers: dict[str, object]) -> HiveHeartbeat:
    return msgspec.convert(heartbeat(hive_id, *workers), HiveHeartbeat)


def test_every_route_through_the_client(live: tuple[str, Runtime]) -> None:
    url, _rt = live
    with ServiceClient(url, ADMIN) as service:
        accepted = service.heartbeat(beat("a", worker("a1", model_id="tiny"), worker("a2")))
        assert (accepted.hive_id, accepted.workers, accepted.ttl_seconds) == ("a", 2, 30.0)
        health = WorkerHeartbeat(worker_id="a2", timestamp=T0, health_status="degraded")
        assert service.worker_heartbeat(health).worker.health_status == "degraded"
        best = service.schedule()  # the registry's default model
        assert (best.model, best.worker.worker.worker_id, best.model_loaded) == ("tiny", "a1", True)
        assert service.schedule("tiny", fallback="none", spread=1).worker.hive_id == "a"
        assert [h.hive_id for h in service.hives(online=True).hives] == ["a"]
        assert service.hive("a").status == "Online"
        assert service.workers(model="tiny").count == 1
        assert service.worker("a2").worker.health_status == "degraded"
        [model] = service.models().data
        assert (model.id, model.default, model.use_count, model.hives) == ("tiny", True, 2, ["a"])
        reg = ServiceRegistration(name="api", host="127.0.0.1", port=1, metadata={"k": [1]})
        assert service.register_service(reg).metadata == {"k": [1]}
        assert service.update_service("api", ServiceUpdate(status="draining")).status == "draining"
        assert service.service_heartbeat("api", "running").status == "running"
        assert [s.name for s in service.services(status="running").services] == ["api"]
        assert service.service("api").owner is None
        assert service.check_service("api").health_status == "unhealthy"  # port 1: nothing
        service.remove_service("api")
        assert service.services().total == 0
        promoted = service.promote("tiny", "production", "1.0", "ci", "passed")
        assert (promoted.record.version, promoted.retries) == ("1.0", 0)
        assert service.health().status == "healthy"
        service.forget_hive("a")
        assert service.hives().total == 0


def test_refusals_are_service_errors_with_the_servers_message(live: tuple[str, Runtime]) -> None:
    url, _rt = live
    hive = ServiceClient(url, HIVE_A)
    with pytest.raises(ServiceError) as err:
        hive.heartbeat(beat("b"))
    assert isinstance(err.value, RegistryError)
    assert (err.value.status, err.value.message, err.value.field) == (
        403, "this token is bound to hive 'a' and cannot speak for hive 'b'", None,
    )  # fmt: skip
    assert str(err.value) == (
        f"POST {url}/v1/heartbeat: the service answered 403: this token is bound to hive 'a' "
        "and cannot speak for hive 'b'"
    )
    with pytest.raises(ServiceError) as err:
        hive.worker_heartbeat(
            WorkerHeartbeat(worker_id="zz", timestamp=T0, health_status="healthy")
        )
    assert err.value.status == 404
    with pytest.raises(ServiceError) as err:
        ServiceClient(url).schedule("bad name")
    assert (err.value.status, err.value.field) == (400, "model")
    with pytest.raises(ServiceError) as err:
        ServiceClient(url, ADMIN, retries=0).schedule("tiny")  # no worker at all
    assert (err.value.status, err.value.retryable) == (503, True)


def test_one_connection_is_kept_alive(
    live: tuple[str, Runtime], caplog: pytest.LogCaptureFixture
) -> None:
    url, _rt = live
    service = ServiceClient(url, ADMIN)
    with caplog.at_level(logging.INFO, logger="runtime.service.access"):
        for _ in range(5):
            service.health()
        service.hives()
    clients = {r.getMessage().split(" ")[0] for r in caplog.records}
    assert len(caplog.records) == 6
    assert len(clients) == 1, clients  # one client port: one connection


def sleeps_of(
    target: str, retries: int = 3, max_backoff: float = 8.0
) -> tuple[ServiceClient, list[float]]:
    """A client of ``target`` whose back-off sleeps are noted instead of slept."""
    slept: list[float] = []
    client = ServiceClient(target, ADMIN, retries=retries, max_backoff=max_backoff,
                           sleep=slept.append, rng=random.Random(1))  # fmt: skip
    return client, slept


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_busy_answers_are_retried_with_back_off(status: int) -> None:
    requests: list[tuple[str, str]] = []
    with status_server(requests) as base:
        client, slept = sleeps_of(f"{base}/{status}", retries=3)
        with pytest.raises(ServiceError) as err:
            client.hives()
    assert (err.value.status, err.value.message) == (status, f"status {status}")
    assert requests == [("GET", f"/{status}/v1/hives")] * 4
    caps = [0.25, 0.5, 1.0]
    assert all(cap / 2 <= s <= cap for s, cap in zip(slept, caps, strict=True)), slept


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 422, 501])
def test_refusals_are_never_retried(status: int) -> None:
    requests: list[tuple[str, str]] = []
    with status_server(requests) as base:
        client, slept = sleeps_of(f"{base}/{status}")
        with pytest.raises(ServiceError) as err:
            client.hive("h")
    assert (err.value.status, len(requests), slept) == (status, 1, [])


def test_retry_after_is_honoured_and_capped() -> None:
    with status_server() as base:
        client, slept = sleeps_of(f"{base}/503+3", retries=2, max_backoff=5.0)
        with pytest.raises(ServiceError):
            client.health()
        capped, slept_capped = sleeps_of(f"{base}/429+120", retries=1, max_backoff=5.0)
        with pytest.raises(ServiceError) as err:
            capped.health()
    assert (slept, slept_capped, err.value.retry_after) == ([3.0, 3.0], [5.0], 120.0)


def test_a_promotion_is_sent_again_only_when_it_surely_did_not_arrive() -> None:
    requests: list[tuple[str, str]] = []
    with status_server(requests) as base:
        for status in (503, 500):
            client, slept = sleeps_of(f"{base}/{status}")
            with pytest.raises(ServiceError):
                client.promote("m", "prod", "1.0", "ci")
            assert slept == []  # it may have been applied: not sent twice
        client, slept = sleeps_of(f"{base}/429")
        with pytest.raises(ServiceError):
            client.promote("m", "prod", "1.0", "ci")
        assert len(slept) == 3  # a 429 refused it before doing anything
    nobody, slept = sleeps_of(closed_port_url())
    with pytest.raises(ServiceUnreachable) as err:
        nobody.promote("m", "prod", "1.0", "ci")
    assert (len(slept), err.value.reached, err.value.status) == (3, False, None)


def test_a_hung_server_times_out() -> None:
    with hung_service() as hung:
        client = ServiceClient(hung, timeout=0.3, retries=1, backoff=0.01)
        started = time.monotonic()
        with pytest.raises(ServiceUnreachable) as err:
            client.hives()
        elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 2.0, elapsed  # two tries of 0.3 s
    assert str(err.value).startswith(f"GET {hung.rstrip('/')}/v1/hives: no answer (")
    assert str(err.value).endswith("); is the service running there?")
    assert err.value.reached


def test_an_answer_that_is_not_the_services() -> None:
    with status_server() as base, pytest.raises(ServiceAnswerError) as err:
        ServiceClient(f"{base}/200").hives()
    assert str(err.value) == (
        f"GET {base}/200/v1/hives: the answer (200) is not a HiveList (Object missing required "
        f"field `total`); is {base}/200 a registry-runtime server of this version?"
    )


def test_a_redirect_is_not_followed() -> None:
    with status_server() as base, pytest.raises(ServiceError) as err:
        ServiceClient(f"{base}/307?to=http://user:pw@elsewhere").health()
    assert (err.value.status, err.value.location, err.value.message) == (
        307, "http://elsewhere/health", "a redirect to http://elsewhere/health",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("url", "retries", "timeout", "error"),
    [
        ("localhost:8081", 3, 5.0, "service URL 'localhost:8081' is not an http(s) URL; use "
         "http://HOST:PORT"),
        ("http://h", -1, 5.0, "retries=-1, timeout=5.0: retries must be 0 or more and the "
         "timeout more than 0 seconds"),
        ("http://h", 3, 0.0, "retries=3, timeout=0.0: retries must be 0 or more and the "
         "timeout more than 0 seconds"),
    ],
)  # fmt: skip
def test_bad_settings(url: str, retries: int, timeout: float, error: str) -> None:
    with pytest.raises(ClientConfigError) as err:
        ServiceClient(url, retries=retries, timeout=timeout)
    assert str(err.value) == error
