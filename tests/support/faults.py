"""A tiny threaded HTTP server over a directory that records requests and injects faults.

It honours ``Range: bytes=N-`` (206) unless told not to, can cut the first response of a path
half-way (full Content-Length, half the bytes, then close), can answer 503 a number of times, and
can hold blob requests until several have arrived (to prove downloads overlap).
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Faults:
    """What the server does wrong, and what it saw."""

    root: Path
    honor_range: bool = True
    cut_once: set[str] = field(default_factory=set)  # paths whose first response is cut
    fail_503: dict[str, int] = field(default_factory=dict)  # path -> 503s still to send
    gate: threading.Barrier | None = None  # blob requests wait here for each other
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self) -> list[str]:
        """The paths requested so far, in order."""
        with self.lock:
            return [p for p, _ in self.requests]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        faults = self.server.faults
        path = self.path.lstrip("/")
        with faults.lock:
            faults.requests.append((path, self.headers.get("Range")))
            cut = path in faults.cut_once
            faults.cut_once.discard(path)
            failing = faults.fail_503.get(path, 0)
            if failing:
                faults.fail_503[path] = failing - 1
        if failing:
            self._send(503, b"busy")
            return
        if faults.gate is not None and path.startswith("blobs/"):
            faults.gate.wait()
        file = faults.root / path
        if not file.is_file():
            self._send(404, b"not found")
            return
        data = file.read_bytes()
        start = self._range_start() if faults.honor_range else 0
        if cut:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])
            return
        self._send(200, data)

    def _range_start(self) -> int:
        value = self.headers.get("Range") or ""
        if value.startswith("bytes=") and value.endswith("-"):
            return int(value.removeprefix("bytes=").removesuffix("-"))
        return 0

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    faults: Faults


def serve(faults: Faults) -> Generator[str, None, None]:
    """Run the server for ``faults`` on loopback; yields its base URL, stops afterwards."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.faults = faults
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
