"""HTTP-only behaviour of :class:`runtime.storage.http.HttpStore`, against real local servers.

The read contract it shares with every store is in ``test_store.py``; the download path that
streams through it (resume, restart, verification) is in ``tests/runtime/client/test_download.py``.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import cast

import blake3
import pytest
import urllib3
from support.faults import Faults, serve
from urllib3.util import Timeout

from runtime.errors import KeyNotFound
from runtime.storage.http import (
    HttpStatusError,
    HttpStore,
    _socket_readinto,
    default_retries,
)
from runtime.storage.store import ObjectTooLarge, PutMode, ReadOnlyStore, StoreUnreachable

PAYLOAD = os.urandom(3 << 20)


@pytest.fixture
def faults(tmp_path: Path) -> Faults:
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "p.xyb").write_bytes(PAYLOAD)
    (tmp_path / "index.json").write_bytes(b"{}")
    return Faults(tmp_path)


@pytest.fixture
def url(faults: Faults) -> Iterator[str]:
    yield from serve(faults)


def fast(url: str, **options: int) -> HttpStore:
    return HttpStore(url, retries=default_retries(total=3, backoff=0.01), **options)


def read_all(store: HttpStore, key: str) -> bytes:
    with store.open(key) as reader:
        return b"".join(iter(lambda: reader.read(1 << 20), b""))


def test_a_cut_stream_resumes_where_it_broke(faults: Faults, url: str) -> None:
    faults.cut_once.add("blobs/p.xyb")
    assert read_all(fast(url), "blobs/p.xyb") == PAYLOAD
    assert faults.requests == [
        ("blobs/p.xyb", None),
        ("blobs/p.xyb", f"bytes={len(PAYLOAD) // 2}-"),
    ]


def test_a_server_that_ignores_range_is_skipped_to_where_it_broke(faults: Faults, url: str) -> None:
    faults.cut_once.add("blobs/p.xyb")
    faults.honor_range = False
    assert read_all(fast(url), "blobs/p.xyb") == PAYLOAD
    assert len(faults.requests) == 2


def test_503_is_retried_then_answered(faults: Faults, url: str) -> None:
    faults.fail_503["index.json"] = 2
    assert fast(url).get("index.json")[0] == b"{}"
    assert faults.paths() == ["index.json"] * 3


def test_503_forever_names_the_registry(faults: Faults, url: str) -> None:
    faults.fail_503["index.json"] = 100
    with pytest.raises(StoreUnreachable) as caught:
        fast(url).get("index.json")
    assert str(caught.value) == (
        f"the registry {url} answered HTTP 503 for index.json after retries; "
        "try again later, or pass --offline to use the cached index"
    )


def test_connection_refused_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = HttpStore(f"http://127.0.0.1:{port}", retries=default_retries(1, 0.01))
    with pytest.raises(StoreUnreachable, match=r"^cannot reach the registry http://127"):
        store.get("index.json")


def test_a_status_it_cannot_use_is_named() -> None:
    with running(_Forbidden) as base, pytest.raises(HttpStatusError) as caught:
        fast(base).get("index.json")
    assert str(caught.value) == (
        f"the registry {base} answered HTTP 403 for index.json; "
        "check the registry URL and its access rules"
    )
    assert not isinstance(caught.value, KeyNotFound | StoreUnreachable)


def test_credentials_go_in_a_header_and_never_in_a_message(faults: Faults, url: str) -> None:
    store = fast(url.replace("http://", "http://ci:s3cret@"))
    assert store.location == url
    assert store.get("index.json")[0] == b"{}"
    with pytest.raises(KeyNotFound) as caught:
        store.get("nothing.json")
    assert str(caught.value) == f"nothing.json not found in {url}"


@pytest.mark.parametrize(
    ("call", "doing"),
    [
        (lambda s: list(s.list("aliases/m/")), "listing aliases/m/"),
        (
            lambda s: s.put("aliases/m/prod.json", b"{}", PutMode.MATCH, "x"),
            "writing aliases/m/prod.json",
        ),
        (lambda s: s.put_file("blobs/a.xyb", Path("/dev/null")), "writing blobs/a.xyb"),
        (lambda s: s.delete("blobs/a.xyb"), "deleting blobs/a.xyb"),
    ],
)
def test_listing_and_writes_are_refused_naming_what_to_use(
    call: Callable[[HttpStore], object], doing: str
) -> None:
    with pytest.raises(ReadOnlyStore) as caught:
        call(HttpStore("https://ci:tok@example.org/reg"))
    assert str(caught.value) == (
        f"https://example.org/reg is read-only (HTTP): {doing} needs a writable location; use "
        "the directory or s3:// location it is served from"
    )


class _Forbidden(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(403)

    def log_message(self, *args: object) -> None:
        pass


class _Hostile(BaseHTTPRequestHandler):
    """index.json: declares 10 GB; stream.json: no length, bytes until the client hangs up;
    small.json: no length, a few bytes, then the end of the connection."""

    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self.send_response(200)
        if self.path == "/index.json":
            self.send_header("Content-Length", str(10 << 30))
        self.end_headers()
        if self.path == "/small.json":
            self.wfile.write(b"[1, 2, 3]")
            return
        try:
            for _ in range(1024):  # at most 64 MiB, then give up
                self.wfile.write(b"[" * (64 << 10))
        except OSError:
            return

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def running(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A ThreadingHTTPServer with ``handler`` on a free loopback port; yields its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_document_without_a_length_is_read_to_its_end() -> None:
    with running(_Hostile) as base:
        assert fast(base, max_get_bytes=1 << 20).get("small.json") == (b"[1, 2, 3]", "")


@pytest.mark.parametrize("key", ["index.json", "stream.json"])
def test_a_document_larger_than_the_limit_is_refused_without_holding_it(key: str) -> None:
    tracemalloc.start()
    try:
        with running(_Hostile) as base, pytest.raises(ObjectTooLarge) as caught:
            fast(base, max_get_bytes=1 << 20).get(key)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20  # the server offered 64 MiB (or claimed 10 GiB)
    assert str(caught.value) == (
        f"{key} from {base} is larger than 1048576 bytes, the most a document may have: the "
        "registry is corrupt or hostile; check the registry location"
    )


class _Streams:
    """What a :func:`streaming` server saw, and whether it stalls its first answer."""

    def __init__(self, stall_first: bool) -> None:
        self.stall_first = stall_first
        self.seen: list[tuple[int, str | None]] = []  # (client port, Range)
        self.resumed = threading.Event()


def streaming(streams: _Streams) -> type[BaseHTTPRequestHandler]:
    """An HTTP/1.1 handler (keep-alive) that serves PAYLOAD at any path and honours Range; with
    ``stall_first`` its first answer stops half-way until the client asks again."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            asked = self.headers.get("Range")
            streams.seen.append((self.client_address[1], asked))
            start = int(asked.removeprefix("bytes=").removesuffix("-")) if asked else 0
            self.send_response(206 if start else 200)
            if start:
                self.send_header(
                    "Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"
                )
            self.send_header("Content-Length", str(len(PAYLOAD) - start))
            self.end_headers()
            if streams.stall_first and len(streams.seen) == 1:
                self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
                streams.resumed.wait(10)
                self.close_connection = True
                return
            streams.resumed.set()
            self.wfile.write(PAYLOAD[start:])

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def test_a_stream_reads_into_the_callers_buffer_without_allocating() -> None:
    buffer, hasher = memoryview(bytearray(1 << 20)), blake3.blake3()
    with running(streaming(_Streams(stall_first=False))) as base:
        store = fast(base)
        tracemalloc.start()
        try:
            with store.open("blobs/p.xyb") as reader:
                while count := cast(io.RawIOBase, reader).readinto(buffer):
                    hasher.update(buffer[:count])
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            store.pool.clear()
    assert hasher.digest() == blake3.blake3(PAYLOAD).digest()
    assert peak < 256 << 10  # 3 MiB received through a 1 MiB buffer, no bytes object per read


def test_a_stream_read_to_its_end_leaves_its_connection_to_the_next_request() -> None:
    streams = _Streams(stall_first=False)
    with running(streaming(streams)) as base:
        store = fast(base)
        assert read_all(store, "blobs/p.xyb") == PAYLOAD
        assert store.get("index.json")[0] == PAYLOAD
        store.pool.clear()
    assert [port for port, _ in streams.seen] == [streams.seen[0][0]] * 2


def test_a_stalled_stream_is_resumed_where_it_stopped() -> None:
    streams = _Streams(stall_first=True)
    with running(streaming(streams)) as base:
        store = HttpStore(base, retries=default_retries(1, 0.01), timeout=Timeout(5, read=0.2))
        assert read_all(store, "blobs/p.xyb") == PAYLOAD
        store.pool.clear()
    # It stalled 1.5 MiB in, during the second 1 MiB read: the first MiB, handed over, is kept.
    assert [asked for _, asked in streams.seen] == [None, f"bytes={1 << 20}-"]


def test_a_body_without_an_http_client_response_is_read_through_urllib3() -> None:
    response = urllib3.HTTPResponse(body=io.BytesIO(b"bytes"), preload_content=False)
    buffer = bytearray(8)
    assert _socket_readinto(response)(memoryview(buffer)) == 5
    assert buffer[:5] == b"bytes"
