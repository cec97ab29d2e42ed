"""The hive agent against a live server: heartbeats, bad providers, back-off, the CLI."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.service import (
    T0,
    Client,
    FakeWallClock,
    LocalService,
    closed_port_url,
    free_port,
    serve,
    status_server,
    wait_for,
    worker,
)

from runtime.service.agent import (
    Agent,
    AgentConfig,
    AgentConfigError,
    HeartbeatRefused,
    Provider,
    ProviderError,
    command_provider,
    file_provider,
    no_workers,
    read_token,
)
from runtime.service.server import Runtime, build_runtime, create_app
from runtime.service.tokens import Tokens

TOKEN = "hive-token"
CLI = [sys.executable, "-c", "import sys; from runtime.cli import main; sys.exit(main())"]


@pytest.fixture
def runtime() -> Runtime:
    return build_runtime(tokens=Tokens({TOKEN: "h1"}))


@pytest.fixture
def server(runtime: Runtime) -> Iterator[str]:
    with serve(create_app(runtime)) as url:
        yield url


def agent(url: str, provider: Provider = no_workers, **kw: Any) -> Agent:
    config = AgentConfig(**{"server": url, "hive_id": "h1", "token": TOKEN, "host": "box", **kw})
    return Agent(config, provider, rng=random.Random(3), now=FakeWallClock())


def test_heartbeat_from_a_workers_file(server: str, tmp_path: Path) -> None:
    workers = tmp_path / "workers.json"
    workers.write_text(json.dumps([worker("w1", model_id="m"), {"worker_id": "w2",
                       "state": "Busy", "health_status": "healthy"}]))  # fmt: skip
    assert agent(server, file_provider(workers)).beat_once()
    hive = Client(server).get("/v1/hives/h1").body
    assert [w["worker_id"] for w in hive["workers"]] == ["w1", "w2"]
    assert hive["workers"][1]["last_heartbeat"] == "2026-01-01T00:00:00Z"  # filled in by the agent
    assert Client(server).get("/v1/schedule?model=m").body["worker"]["worker"]["worker_id"] == "w1"


def test_a_provider_printing_garbage_is_logged_and_survived(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = command_provider(f"{sys.executable} -c \"print('<<garbage>>')\"")
    with caplog.at_level(logging.WARNING, logger="runtime.service.agent"):
        assert agent(server, garbage).beat_once()
    assert Client(server).get("/v1/hives/h1").body["workers"] == []
    [record] = caplog.records
    assert record.getMessage().startswith(
        "hive h1: bad worker list, sending the last good one (0 workers): workers command "
    )
    assert "not JSON" in record.getMessage()


def test_a_bad_worker_list_keeps_the_last_good_one(server: str, tmp_path: Path) -> None:
    workers = tmp_path / "workers.json"
    workers.write_text(json.dumps([worker("w1", model_id="m")]))
    sender = agent(server, file_provider(workers))
    assert sender.beat_once()
    workers.write_text("<<garbage>>")
    assert sender.beat_once()
    assert [w["worker_id"] for w in Client(server).get("/v1/hives/h1").body["workers"]] == ["w1"]
    assert Client(server).get("/v1/schedule?model=m").body["worker"]["worker"]["worker_id"] == "w1"


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ('{"a": 1}', "expected a JSON list of worker objects"),
        ("[1, 2]", "expected a JSON list of worker objects"),
    ],
)
def test_provider_shapes(tmp_path: Path, output: str, message: str) -> None:
    path = tmp_path / "w.json"
    path.write_text(output)
    with pytest.raises(ProviderError) as err:
        file_provider(path)()
    assert str(err.value) == f"workers file {path}: {message}"
    with pytest.raises(ProviderError, match="cannot read it"):
        file_provider(path.with_name("missing"))()


def test_a_worker_the_server_would_reject_is_dropped_locally(server: str, tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"workers": [worker("w1", state="Asleep")]}))
    assert agent(server, file_provider(path)).beat_once()
    assert Client(server).get("/v1/hives/h1").body["workers"] == []


def refusal(url: str, hive: str, status: int, reason: str, fix: str) -> str:
    return f"server {url} refused the heartbeat of hive {hive!r} ({status}): {reason}; {fix}"


FIX_403 = "use a token bound to this hive (or to no hive), or the --hive-id the token is bound to"
FIX_401 = "give --token-file a token listed in the server's token file"
FIX_OTHER = "fix the agent's settings and start it again"


def test_a_token_of_another_hive_stops_the_agent(server: str) -> None:
    a = agent(server, interval=0.01, max_backoff=0.01)
    a.config.hive_id = "h2"  # the token is bound to h1
    raised: list[BaseException] = []

    def run() -> None:
        try:
            a.run(stop)
        except HeartbeatRefused as exc:
            raised.append(exc)

    stop = threading.Event()
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=5)  # it returns at once instead of retrying forever
    stop.set()
    thread.join(timeout=5)
    assert [str(e) for e in raised] == [
        refusal(server, "h2", 403,
                "this token is bound to hive 'h1' and cannot speak for hive 'h2'", FIX_403)
    ]  # fmt: skip
    assert a.sent == 0


def test_an_unknown_token_and_a_bad_body_stop_the_agent(server: str) -> None:
    with pytest.raises(HeartbeatRefused) as err:
        agent(server, token="guess").beat_once()
    assert str(err.value) == refusal(
        server, "h1", 401, "the bearer token is not one this server accepts", FIX_401
    )
    with pytest.raises(HeartbeatRefused) as err:
        agent(server, host="x" * 300).beat_once()
    assert str(err.value) == refusal(
        server, "h1", 422, "invalid body: Expected `str` of length <= 256 - at `$.host`",
        FIX_OTHER,
    )  # fmt: skip


@pytest.mark.parametrize("status", [400, 404, 409, 413, 422])
def test_other_refusals_stop_the_agent(status: int) -> None:
    with status_server() as base, pytest.raises(HeartbeatRefused) as err:
        agent(f"{base}/{status}").beat_once()
    assert str(err.value) == refusal(f"{base}/{status}", "h1", status, f"status {status}",
                                     FIX_OTHER)  # fmt: skip


def test_a_redirect_stops_the_agent_naming_where() -> None:
    with status_server() as base, pytest.raises(HeartbeatRefused) as err:
        agent(f"{base}/301?to=https://elsewhere/").beat_once()
    assert str(err.value) == refusal(
        f"{base}/301?to=https://elsewhere/", "h1", 301,
        "a redirect to https://elsewhere/v1/heartbeat (point --server at that server)", FIX_OTHER,
    )  # fmt: skip


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_busy_servers_are_retried_with_back_off(status: int) -> None:
    with status_server() as base:
        a = agent(f"{base}/{status}", max_backoff=8.0)
        delays = []
        for _ in range(5):
            delivered = a.beat_once()
            assert not delivered
            delays.append(a.next_delay(delivered))
    caps = [1, 2, 4, 8, 8]
    assert all(cap / 2 <= d <= cap for d, cap in zip(delays, caps, strict=True)), delays


def test_run_keeps_retrying_a_busy_server_until_stopped() -> None:
    with status_server() as base:
        a = agent(f"{base}/503", max_backoff=0.05)
        stop = threading.Event()
        thread = threading.Thread(target=a.run, args=(stop,))
        thread.start()
        deadline = time.monotonic() + 10
        while a.failures < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        thread.join(timeout=5)
    assert a.failures >= 5
    assert not thread.is_alive()


def test_backs_off_while_the_server_is_down() -> None:
    a = agent(closed_port_url(), timeout=1.0, max_backoff=8.0)
    delays = []
    for _ in range(6):
        delivered = a.beat_once()
        assert not delivered
        delays.append(a.next_delay(delivered))
    caps = [1, 2, 4, 8, 8, 8]
    assert all(cap / 2 <= d <= cap for d, cap in zip(delays, caps, strict=True)), delays
    assert 13.5 <= a.next_delay(True) <= 16.5
    assert a.failures == 0


def test_run_sends_until_stopped(server: str, runtime: Runtime) -> None:
    a = agent(server, interval=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=a.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 10
    while runtime.hives.counters.heartbeats < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(timeout=5)
    assert runtime.hives.counters.heartbeats >= 3
    assert not thread.is_alive()


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(AgentConfigError) as err:
        Agent(AgentConfig(server="localhost:8081", hive_id="h"))
    assert str(err.value) == (
        "server 'localhost:8081' is not an http(s) URL; pass --server http://HOST:PORT"
    )
    tokens = tmp_path / "t"
    tokens.write_text("# comment\n\n  tok h1\n")
    assert read_token(tokens) == "tok"
    tokens.write_text("# only a comment\n")
    with pytest.raises(AgentConfigError) as err:
        read_token(tokens)
    assert str(err.value) == f"token file {tokens}: no token in it; put the token on the first line"
    with pytest.raises(AgentConfigError) as err:
        Agent(AgentConfig(server="http://127.0.0.1:1", hive_id="gpu/01"))
    assert str(err.value) == (
        "hive id 'gpu/01' is not a valid name: use 1-128 letters, digits, '.', '_' or '-', "
        "starting and ending with a letter or digit, without '..'; fix --hive-id"
    )


def test_the_agent_command_against_the_server(
    server: str, tmp_path: Path, runtime: Runtime
) -> None:
    tokens = tmp_path / "token"
    tokens.write_text(f"{TOKEN}\n")
    workers = tmp_path / "workers.json"
    workers.write_text(json.dumps([worker("w1", model_id="m")]))
    proc = subprocess.Popen(
        [*CLI, "agent", "--server", server, "--hive-id", "h1", "--token-file", str(tokens),
         "--interval", "0.1", "--workers-file", str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while runtime.hives.counters.heartbeats < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert runtime.hives.counters.heartbeats >= 2
    view = Client(server).get("/v1/workers/w1").body
    assert (view["hive_id"], view["worker"]["last_heartbeat"]) == (
        "h1",
        T0.isoformat().replace("+00:00", "Z"),
    )


def test_the_agent_command_exits_on_a_refusal(server: str, tmp_path: Path) -> None:
    tokens = tmp_path / "token"
    tokens.write_text(f"{TOKEN}\n")
    done = subprocess.run(
        [*CLI, "agent", "--server", server, "--hive-id", "h2", "--token-file", str(tokens),
         "--interval", "0.1"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    started, error = done.stderr.splitlines()
    assert started.endswith(f" INFO hive h2: sending heartbeats to {server} every 0.1 s")
    assert (done.returncode, error) == (
        1,
        "Error: " + refusal(
            server, "h2", 403,
            "this token is bound to hive 'h1' and cannot speak for hive 'h2'", FIX_403,
        ),
    )  # fmt: skip


def test_the_agent_command_rejects_a_bad_url() -> None:
    done = subprocess.run(
        [*CLI, "agent", "--server", "nowhere", "--hive-id", "h1"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (
        1,
        "Error: server 'nowhere' is not an http(s) URL; pass --server http://HOST:PORT\n",
    )


def test_the_agent_logs_its_start_first_success_and_recovery(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    a = agent(url, interval=0.05, max_backoff=0.05, timeout=1.0)
    stop = threading.Event()
    thread = threading.Thread(target=a.run, args=(stop,))
    with caplog.at_level(logging.INFO, logger="runtime.service.agent"):
        with serve(create_app(runtime), port=port):
            thread.start()
            assert wait_for(lambda: a.sent >= 2)
        assert wait_for(lambda: a.failures >= 2)  # the server is gone
        failed = a.failures
        with serve(create_app(runtime), port=port):
            assert wait_for(lambda: a.sent >= 4)
        stop.set()
        thread.join(timeout=5)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos[:2] == [
        f"hive h1: sending heartbeats to {url} every 0.05 s",
        f"hive h1: first heartbeat accepted by {url} (0 workers)",
    ]
    [again] = infos[2:]
    assert re.fullmatch(r"hive h1: heartbeats accepted again after (\d+) failed attempts", again)
    assert int(again.split()[-3]) >= failed
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned[0].startswith(f"hive h1: server {url} unreachable: ")


EXAMPLE = Path(__file__).parents[3] / "examples" / "list-workers.py"


def test_the_example_workers_command_feeds_the_agent(server: str) -> None:
    command = f"{EXAMPLE} --model tiny-llama --cpu --prefix h1 --host 10.0.0.5 --port 9000"
    assert agent(server, command_provider(command)).beat_once()  # run as it is (its #! line)
    [view] = Client(server).get("/v1/workers").body["workers"]
    assert view["worker"] == {
        "worker_id": "h1-cpu0", "state": "Idle", "last_heartbeat": "2026-01-01T00:00:00Z",
        "health_status": "healthy", "url": "http://10.0.0.5:9000", "model_id": "tiny-llama",
        "backend": "cpu", "device_id": 0,
    }  # fmt: skip


def test_the_example_reports_each_gpu_and_probes_health(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nprintf '0, 35, 1024\\n1, 80.5, 2048\\n'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    alive = LocalService()
    alive.start()
    try:
        command = (f"{sys.executable} {EXAMPLE} --model m --prefix h1 --host 127.0.0.1 "
                   f"--port {alive.port} --probe")  # fmt: skip
        assert agent(server, command_provider(command)).beat_once()
    finally:
        alive.stop()
    reports = [v["worker"] for v in Client(server).get("/v1/workers").body["workers"]]
    assert [(w["worker_id"], w["backend"], w["gpu_percent"], w["vram_bytes"], w["health_status"])
            for w in reports] == [
        ("h1-gpu0", "cuda", 35.0, 1024 * 1024 * 1024, "healthy"),  # its /health answers
        ("h1-gpu1", "cuda", 80.5, 2048 * 1024 * 1024, "degraded"),  # nothing on port + 1
    ]  # fmt: skip
    assert alive.paths == ["/health"]
