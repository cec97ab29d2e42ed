"""Small helpers shared by the benchmarks: timing, temp dirs, printing, local servers."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextlib.contextmanager
def scratch(name: str) -> Iterator[Path]:
    """A temporary directory for generated data, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def best_of(runs: int, fn: Callable[[], object]) -> float:
    """The fastest of ``runs`` wall-clock timings of ``fn`` (seconds)."""
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return min(timings)


def median_of(runs: int, fn: Callable[[], object]) -> float:
    """The median of ``runs`` wall-clock timings of ``fn`` (seconds)."""
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def row(label: str, value: str) -> None:
    """One aligned result line."""
    print(f"  {label:<48} {value}")


class MotoLog:
    """WSGI layer in front of moto: one request at a time, each one recorded.

    S3 applies ``If-None-Match``/``If-Match`` atomically with the write; moto 5's threaded server
    checks and then stores without a lock (so two racing conditional writes could both succeed),
    and a GET racing a PUT of the same key can read a buffer the PUT just closed (a 500).
    Serialising requests gives S3's guarantees; clients still race between requests.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str, str]] = []  # method, unquoted path, query string

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        with self.lock:
            path = unquote(environ.get("PATH_INFO", ""))
            self.seen.append((environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", "")))
            return self.app(environ, start_response)

    def take(self) -> list[tuple[str, str, str]]:
        """The requests seen since the last call."""
        with self.lock:
            seen, self.seen = self.seen, []
        return seen


@contextlib.contextmanager
def moto_server() -> Iterator[tuple[str, MotoLog]]:
    """moto's S3 server on a loopback port (dummy AWS credentials set); yields its URL and log."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    os.environ.update(AWS_ENV)
    app = MotoLog(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", app
    finally:
        server.shutdown()
        thread.join()


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def child(
    argv: list[str], log: Path, ready: Callable[[subprocess.Popen[bytes]], None]
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process with its output in ``log``; ``ready(proc)`` waits until it serves.
    Stopped (killed if it does not stop within 10 s) when the block ends."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out)
    try:
        ready(proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
