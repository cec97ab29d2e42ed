"""Downloads: how the client reads a registry, and how a blob lands in the cache verified.

Two transports share one small protocol (:class:`Transport`): ``get(key)`` for small objects
(``index.json``, descriptors, pointer files) and ``download(key, sink)`` for blobs.

- :class:`HttpTransport` reads an ``http(s)://`` registry through one urllib3 ``PoolManager``
  (connection reuse), with retries and backoff on connection errors and on 429/5xx, and
  timeouts. A body cut mid-way is resumed with ``Range: bytes=<have>-``; a server that answers
  ``200`` instead of ``206`` restarts the file from zero.
- :class:`StoreTransport` reads a directory, ``file://`` or ``s3://`` location through the storage
  protocol (``store.get`` and streaming ``store.open``); boto3 is imported only for ``s3://``.

:func:`download_blob` writes to ``<blobs>/.<digest>.partial-<pid>-<random>`` (so processes fetching
the same bundle never write into each other's file), hashes the bytes as they arrive (BLAKE3, and
SHA-256 when the descriptor has one) on a helper thread, checks size and digests, and only then
renames the file to ``<blobs>/<digest>.xyb``. Anything unverified is deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import blake3
import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util import Retry, Timeout

from runtime.errors import IntegrityError, KeyNotFound, RegistryError
from runtime.registry.wire import BundleDescriptor
from runtime.storage.atomic import WRITEBACK_EVERY, Writeback, fsync_dir
from runtime.storage.store import Store

CHUNK = 1 << 20
HTTP_CHUNK = 4 << 20
PARTIAL_MARK = ".partial-"
RETRY_STATUSES = (429, 500, 502, 503, 504)


class RegistryUnreachable(RegistryError, ConnectionError):
    """Raised when a registry cannot be reached: connection refused or reset, timeouts, or
    429/5xx answers that outlast the retries."""


class HttpStatusError(RegistryError, OSError):
    """Raised when a registry answers an HTTP status the client cannot use (403, 416, ...)."""


def default_retries(total: int = 4, backoff: float = 0.25) -> Retry:
    """Retries for idempotent reads: connection errors and 429/5xx, exponential backoff; a
    server that accepts but stays silent gets one more try, not four (a stalled download
    resumes by itself from what it has)."""
    return Retry(
        total=total,
        read=1,
        backoff_factor=backoff,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )


class Transport(Protocol):
    """Read access to one registry location."""

    location: str

    def get(self, key: str) -> bytes:
        """The object's bytes; :class:`KeyNotFound` when it does not exist."""
        ...

    def download(self, key: str, sink: Sink) -> None:
        """Stream the object into ``sink`` (which may be asked to restart)."""
        ...


class Digests:
    """BLAKE3 (and optionally SHA-256) of a byte stream, computed on a helper thread.

    Both hash functions release the GIL on large buffers, so hashing overlaps with the socket and
    file I/O of the caller's thread.
    """

    def __init__(self, sha256: bool) -> None:
        self._want_sha256 = sha256
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=32)
        self._reset_hashers()
        self._thread = threading.Thread(target=self._run, name="digests", daemon=True)
        self._thread.start()

    def _reset_hashers(self) -> None:
        self._blake3 = blake3.blake3()
        self._sha256 = hashlib.sha256() if self._want_sha256 else None

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._blake3.update(chunk)
            if self._sha256 is not None:
                self._sha256.update(chunk)

    def update(self, chunk: bytes) -> None:
        """Hash ``chunk`` (asynchronously; :meth:`finish` waits for it)."""
        self._queue.put(chunk)

    def restart(self) -> None:
        """Forget every byte seen so far."""
        self.finish()
        self._reset_hashers()
        self._thread = threading.Thread(target=self._run, name="digests", daemon=True)
        self._thread.start()

    def finish(self) -> tuple[str, str]:
        """Wait for the hashing to catch up; (blake3 hex, sha256 hex or "")."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        sha = self._sha256.hexdigest() if self._sha256 is not None else ""
        return self._blake3.hexdigest(), sha


class Sink:
    """Where a download's bytes go: an open partial file, the digests, and a progress bar."""

    def __init__(
        self,
        handle: BinaryIO,
        digests: Digests,
        limit: int,
        label: str,
        writeback: Writeback | None = None,
    ) -> None:
        self.handle = handle
        self.digests = digests
        self.limit = limit
        self.label = label
        self.writeback = writeback
        self.written = 0
        self._synced = 0
        self.progress: Any = None

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``; refuse to grow past the size the descriptor names."""
        self.written += len(chunk)
        if self.written > self.limit:
            raise IntegrityError(
                f"{self.label}: the registry sent more than the {self.limit} bytes its "
                "descriptor names; the blob or the index is wrong: ask the publisher to rebuild"
            )
        self.handle.write(chunk)
        self.digests.update(chunk)
        if self.writeback is not None and self.written - self._synced >= WRITEBACK_EVERY:
            self.handle.flush()
            self.writeback.poke()
            self._synced = self.written
        if self.progress is not None:
            self.progress.update(len(chunk))

    def restart(self) -> None:
        """Throw away what was written (the server ignored our Range request)."""
        self.handle.seek(0)
        self.handle.truncate()
        self.digests.restart()
        if self.progress is not None:
            self.progress.reset()
        self.written = self._synced = 0


class HttpTransport:
    """An ``http(s)://`` registry read through a shared urllib3 pool."""

    def __init__(
        self,
        base_url: str,
        pool: urllib3.PoolManager | None = None,
        *,
        retries: Retry | None = None,
        timeout: Timeout | None = None,
        resume_attempts: int = 5,
    ) -> None:
        url = urllib3.util.parse_url(base_url.rstrip("/"))
        # https://user:token@host/...: basic auth in a header; the location shown is without it.
        self.auth = urllib3.util.make_headers(basic_auth=url.auth) if url.auth else {}
        self.location = url._replace(auth=None).url
        self.pool = pool or urllib3.PoolManager(num_pools=4, maxsize=4)
        self.retries = retries or default_retries()
        self.timeout = timeout or Timeout(connect=5.0, read=15.0)
        self.resume_attempts = resume_attempts

    def url(self, key: str) -> str:
        """The URL of a registry key."""
        return f"{self.location}/{key}"

    def _request(self, key: str, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        try:
            return self.pool.request(
                "GET",
                self.url(key),
                headers={"Accept-Encoding": "identity", **self.auth, **headers},
                preload_content=False,
                retries=self.retries,
                timeout=self.timeout,
                redirect=True,
            )
        except Urllib3Error as exc:
            raise RegistryUnreachable(
                f"cannot reach the registry {self.location} for {key}: {_reason(exc)}; "
                "check the URL and the network, or pass --offline to use the cached index"
            ) from None

    def _check(self, key: str, response: urllib3.BaseHTTPResponse) -> None:
        if response.status in (200, 206):
            return
        response.drain_conn()
        response.release_conn()
        if response.status == 404:
            raise KeyNotFound(f"{key} not found in {self.location} (HTTP 404)")
        if response.status in RETRY_STATUSES:
            raise RegistryUnreachable(
                f"the registry {self.location} answered HTTP {response.status} for {key} "
                "after retries; try again later, or pass --offline to use the cached index"
            )
        raise HttpStatusError(
            f"the registry {self.location} answered HTTP {response.status} for {key}; "
            "check the registry URL and its access rules"
        )

    def get(self, key: str) -> bytes:
        """The whole object (small objects: index, descriptors, pointer files)."""
        for attempt in range(self.resume_attempts + 1):
            response = self._request(key, {})
            self._check(key, response)
            try:
                return response.read()
            except Urllib3Error as exc:
                _pause(attempt, self.resume_attempts, self.location, key, exc)
            finally:
                response.release_conn()
        raise AssertionError("unreachable")  # pragma: no cover

    def download(self, key: str, sink: Sink) -> None:
        """Stream ``key`` into ``sink``, resuming with Range after a broken connection."""
        for attempt in range(self.resume_attempts + 1):
            headers = {"Range": f"bytes={sink.written}-"} if sink.written else {}
            response = self._request(key, headers)
            self._check(key, response)
            try:
                self._receive(response, sink)
                return
            except Urllib3Error as exc:
                _pause(attempt, self.resume_attempts, self.location, key, exc)
            finally:
                response.release_conn()

    def _receive(self, response: urllib3.BaseHTTPResponse, sink: Sink) -> None:
        if sink.written and not _continues(response, sink.written):
            sink.restart()
        # Big reads are much faster than read1's socket-sized pieces; on a cut, urllib3 hands
        # over the bytes that did arrive and raises on the next read, so the resume loses none.
        while chunk := response.read(HTTP_CHUNK, decode_content=False):
            sink.write(chunk)


def _continues(response: urllib3.BaseHTTPResponse, offset: int) -> bool:
    """True when a response is the 206 continuation that starts at ``offset``."""
    if response.status != 206:
        return False
    content_range = response.headers.get("Content-Range", "")
    return content_range.startswith(f"bytes {offset}-")


def _pause(attempt: int, attempts: int, location: str, key: str, exc: Exception) -> None:
    if attempt >= attempts:
        raise RegistryUnreachable(
            f"the download of {key} from {location} broke off {attempts + 1} times "
            f"(last: {_reason(exc)}); check the network and try again"
        ) from None
    time.sleep(min(0.1 * 2**attempt, 2.0))


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "reason", None)
    return str(inner or exc) or type(exc).__name__


class StoreTransport:
    """A directory, ``file://`` or ``s3://`` registry read through the storage protocol."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.location = store.location

    def get(self, key: str) -> bytes:
        """The whole object."""
        return self.store.get(key)[0]

    def download(self, key: str, sink: Sink) -> None:
        """Copy the object into ``sink`` as a stream."""
        with self.store.open(key) as reader:
            while chunk := reader.read(CHUNK):
                sink.write(chunk)


def partial_path(blobs: Path, digest: str) -> Path:
    """A download's private working file: named by digest plus a unique suffix."""
    return blobs / f".{digest}{PARTIAL_MARK}{os.getpid()}-{secrets.token_hex(4)}"


def download_blob(
    transport: Transport, descriptor: BundleDescriptor, blobs: Path, *, progress: bool | None = None
) -> Path:
    """Download the descriptor's blob into ``blobs``, verify it, and return its final path."""
    final = blobs / f"{descriptor.hash}.xyb"
    blobs.mkdir(parents=True, exist_ok=True)
    partial = partial_path(blobs, descriptor.hash)
    digests = Digests(sha256=bool(descriptor.sha256))
    label = f"{descriptor.id}@{descriptor.version} ({descriptor.target})"
    try:
        with open(partial, "xb") as handle:
            writeback = Writeback(handle.fileno())
            sink = Sink(handle, digests, descriptor.size_bytes, label, writeback)
            try:
                with _progress_bar(sink, descriptor, progress):
                    transport.download(descriptor.blob_key, sink)
            finally:
                writeback.close()
            handle.flush()
            os.fsync(handle.fileno())
        verify(descriptor, sink.written, *digests.finish(), source=transport.location)
        os.replace(partial, final)  # same bytes whoever wins a race: either rename is correct
        fsync_dir(blobs)
        return final
    finally:
        digests.finish()
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def verify(
    descriptor: BundleDescriptor, size: int, blake3_hex: str, sha256_hex: str, *, source: str
) -> None:
    """Raise :class:`IntegrityError` unless size and digests match the descriptor."""
    what = f"{descriptor.blob_key} from {source} ({descriptor.id}@{descriptor.version}"
    what += f" {descriptor.target})"
    fix = "the blob is corrupt or the index is stale: retry, or ask the publisher to rebuild"
    if size != descriptor.size_bytes:
        raise IntegrityError(f"{what} has {size} bytes, expected {descriptor.size_bytes}; {fix}")
    if blake3_hex != descriptor.hash:
        raise IntegrityError(f"{what} has BLAKE3 {blake3_hex}, expected {descriptor.hash}; {fix}")
    if descriptor.sha256 and sha256_hex != descriptor.sha256:
        raise IntegrityError(
            f"{what} has SHA-256 {sha256_hex}, expected {descriptor.sha256}; {fix}"
        )


@contextlib.contextmanager
def _progress_bar(sink: Sink, descriptor: BundleDescriptor, enabled: bool | None) -> Iterator[None]:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield
        return
    from tqdm import tqdm

    with tqdm(
        total=descriptor.size_bytes,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=f"{descriptor.id}@{descriptor.version}",
        file=sys.stderr,
        leave=False,
    ) as bar:
        sink.progress = bar
        yield


def is_partial_name(name: str) -> bool:
    """True for the working files made by :func:`partial_path`."""
    return name.startswith(".") and PARTIAL_MARK in name
