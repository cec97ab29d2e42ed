"""A threaded HTTP server over a directory that answers conditional GETs as nginx does (an ETag on
every file, 304 to a matching ``If-None-Match``) and logs each request with its status and the
body bytes it sent, so a test counts requests and bytes at the server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import blake3


@dataclass
class Log:
    """What the server saw: (path, status, body bytes) per request."""

    root: Path
    seen: list[tuple[str, int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> list[tuple[str, int, int]]:
        """The requests since the last call."""
        with self.lock:
            seen, self.seen = self.seen, []
        return seen


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        path = self.path.lstrip("/")
        file = self.server.log.root / path
        if not file.is_file():
            self._send(path, 404, b"not found", None)
            return
        data = file.read_bytes()
        etag = f'"{blake3.blake3(data).hexdigest()[:16]}"'
        if self.headers.get("If-None-Match") == etag:
            self._send(path, 304, b"", etag)
        else:
            self._send(path, 200, data, etag)

    def _send(self, path: str, status: int, body: bytes, etag: str | None) -> None:
        with self.server.log.lock:
            self.server.log.seen.append((path, status, len(body)))
        self.send_response(status)
        if etag:
            self.send_header("ETag", etag)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    log: Log


def serve(log: Log) -> Iterator[str]:
    """Serve ``log.root`` on loopback; yields the base URL, stops afterwards."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.log = log
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
