"""Helpers for the runtime-service tests: tokens, a fake clock, uvicorn on a loopback port, a
client, a small fleet, small real HTTP servers to check and to refuse, and a real redis-server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import urllib3
import uvicorn
from starlette.applications import Starlette

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ADMIN = "admin-token"
HIVE_A = "token-of-a"
HIVE_B = "token-of-b"


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeWallClock:
    """A wall clock (aware datetimes) that moves only when told to."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Answer:
    """An HTTP answer: status, headers and the decoded JSON body (or the text)."""

    status: int
    headers: dict[str, str]
    body: Any


class Client:
    """A small JSON client over urllib3 for a live server."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url
        self.token = token
        self.http = urllib3.PoolManager(retries=False, timeout=10.0)

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        raw: bytes | None = None,
        token: str | None = None,
    ) -> Answer:
        headers = {"Content-Type": "application/json"}
        bearer = token if token is not None else self.token
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        resp = self.http.request(method, self.base_url + path, body=data, headers=headers)
        text = resp.data.decode()
        kind = resp.headers.get("content-type", "")
        parsed = json.loads(text) if kind.startswith("application/json") and text else text
        return Answer(resp.status, dict(resp.headers), parsed)

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(self, path: str, body: object = None, **kw: Any) -> Answer:
        return self.request("POST", path, body, **kw)


@contextmanager
def serve(app: Starlette, port: int = 0) -> Iterator[str]:
    """Run ``app`` under uvicorn on loopback ``port`` (0: a free one) in a thread; yields its
    base URL."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without
    # it keep-alive requests stall 40 ms on Nagle + delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", ws="none", access_log=False, http="h11"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        # A server still running would go on writing to a state the next test uses.
        assert not thread.is_alive(), f"uvicorn did not stop within 10 s:\n{_stack(thread)}"


def _stack(thread: threading.Thread) -> str:
    """Where ``thread`` is now (to show where a server hangs)."""
    frame = sys._current_frames().get(thread.ident or 0)
    return "".join(traceback.format_stack(frame)) if frame else "(no frame)"


def worker(worker_id: str, **fields: Any) -> dict[str, Any]:
    """A worker report as a hive sends it; ``fields`` override the defaults."""
    report: dict[str, Any] = {
        "worker_id": worker_id,
        "state": "Idle",
        "last_heartbeat": T0.isoformat(),
        "health_status": "healthy",
    }
    report.update(fields)
    return report


def heartbeat(hive_id: str, *workers: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A hive heartbeat body."""
    beat: dict[str, Any] = {"hive_id": hive_id, "timestamp": T0.isoformat(), "workers": [*workers]}
    beat.update(fields)
    return beat


class _OkHandler(BaseHTTPRequestHandler):
    hits: list[float]  # set per server: when each GET arrived
    paths: list[str]  # and the path it asked for

    def do_GET(self) -> None:
        self.hits.append(time.monotonic())
        self.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LocalService:
    """A real HTTP service on a fixed loopback port that can go down and come back."""

    def __init__(self) -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port: int = probe.getsockname()[1]
        probe.close()
        self.url = f"http://127.0.0.1:{self.port}/health"
        self.hits: list[float] = []  # when each request arrived (monotonic)
        self.paths: list[str] = []  # the path of each
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        handler = type("Handler", (_OkHandler,), {"hits": self.hits, "paths": self.paths})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None


@contextmanager
def hung_service() -> Iterator[str]:
    """A port that accepts connections and never answers; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        sock.close()


class _StatusHandler(BaseHTTPRequestHandler):
    """Any method on ``/CODE[/...]`` answers CODE with ``{"error": "status CODE"}``;
    ``/CODE+N[/...]`` adds ``Retry-After: N``, ``?to=URL`` adds ``Location: URL``; ``/loop``
    redirects to itself. Every request's method and path are noted in the server's
    ``requests``."""

    def do_GET(self) -> None:
        cast(StatusServer, self.server).requests.append((self.command, self.path))
        parts = urllib.parse.urlsplit(self.path)
        first = parts.path.strip("/").split("/")[0]
        if first == "loop":
            self._answer(302, "/loop")
            return
        to = urllib.parse.parse_qs(parts.query).get("to")
        code, _, after = first.partition("+")
        self._answer(int(code), to[0] if to else None, after or None)

    do_POST = do_PUT = do_DELETE = do_GET

    def _answer(self, status: int, location: str | None, after: str | None = None) -> None:
        if self.headers.get("Content-Length"):
            self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"error": f"status {status}"}).encode()
        self.send_response(status)
        if location is not None:
            self.send_header("Location", location)
        if after is not None:
            self.send_header("Retry-After", after)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class StatusServer(ThreadingHTTPServer):
    """The server of :class:`_StatusHandler`, with the requests it got."""

    requests: list[tuple[str, str]]


@contextmanager
def status_server(requests: list[tuple[str, str]] | None = None) -> Iterator[str]:
    """A real HTTP server on a free loopback port answering the status its path names (see
    :class:`_StatusHandler`); yields its base URL. ``requests`` collects (method, path)."""
    server = StatusServer(("127.0.0.1", 0), _StatusHandler)
    server.requests = requests if requests is not None else []
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def fleet(client: Client) -> None:
    """Hive a (workers a1 with llama idle, a2 with llama busy) and hive b (b1 with whisper)."""
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


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Whether ``condition()`` became true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def reachable(client: Client) -> bool:
    """Whether the server behind ``client`` answers ``/health``."""
    try:
        return client.get("/health").status == 200
    except Exception:
        return False


def free_port() -> int:
    """A loopback port free now (for a server started in a subprocess)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


REDIS_SERVER = "/usr/bin/redis-server"


def redis_missing() -> str | None:
    """Why the Redis tests cannot run here (None when they can)."""
    if shutil.which("redis-server") is None and not os.path.exists(REDIS_SERVER):
        return "redis-server is not installed (Debian: apt-get install redis-server; .ci/run does)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py is not installed: pip install 'bundle-registry[redis]'"
    return None


class RedisServer:
    """Debian's redis-server on a free loopback port, its files in ``root``, keeping nothing on
    disk (``--save '' --appendonly no``): stopped and started again on the same port, it comes
    back empty, as a Redis without persistence does after a restart."""

    def __init__(self, root: Path, password: str | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server") or REDIS_SERVER
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.root)]  # fmt: skip
        if self.password:
            argv += ["--requirepass", self.password]
        self._proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_for(self._answers, timeout=10):
            raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)
            self._proc = None

    def client(self) -> Any:
        """A redis-py client of this server."""
        import redis

        return redis.Redis.from_url(self.url)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False
