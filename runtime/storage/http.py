"""A registry served over HTTP(S) as a read-only store: ``get``, ``head`` and a streaming ``open``.

- One urllib3 ``PoolManager`` (connections are reused), retries with exponential backoff on
  connection errors and on 429/5xx (:func:`default_retries`), timeouts (connect 5 s, read 15 s);
  what outlasts them raises :class:`~runtime.storage.store.StoreUnreachable`.
- ``https://user:token@host/...``: the credentials go in a basic-auth header; ``location`` is the
  URL without them, and so is every message.
- ``get`` reads a document whole, at most ``max_get_bytes`` (:data:`MAX_GET_BYTES`): a hostile
  server cannot make a client hold a 10 GB ``index.json`` in memory. Its etag is the ``ETag``
  header as sent ("" when there is none), ready to go back as ``If-None-Match``.
- ``open`` streams a blob; a body cut mid-way is asked for again with ``Range: bytes=<have>-``.
  A server that answers ``200`` instead of ``206`` sends the whole object again: the bytes already
  delivered are skipped, so the reader sees one unbroken stream either way (up to
  ``resume_attempts`` breaks; the caller's digest check covers the joined bytes).
- ``list`` and every write raise :class:`~runtime.storage.store.ReadOnlyStore`: a static server
  has no listing and takes no uploads.
"""

from __future__ import annotations

import contextlib
import email.utils
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util import Retry, Timeout

from runtime.errors import KeyNotFound, RegistryError, StoreError
from runtime.storage.location import Location
from runtime.storage.store import (
    ObjectInfo,
    PutMode,
    ReadOnlyStore,
    StoreUnreachable,
    check_key,
)

MAX_GET_BYTES = 256 << 20  # a document read whole: index.json of ~500k bundles fits
CHUNK = 4 << 20  # big reads are much faster than read1's socket-sized pieces
ERROR_BODY_BYTES = 64 << 10  # an error page this small is read to keep the connection
RETRY_STATUSES = (429, 500, 502, 503, 504)
Response = urllib3.BaseHTTPResponse


class HttpStatusError(StoreError):
    """Raised when a registry answers an HTTP status the client cannot use (403, 416, ...)."""


class ObjectTooLarge(StoreError):
    """Raised when a document read whole is larger than the store's ``max_get_bytes``."""


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


def open_location(location: Location, endpoint_url: str | None = None) -> HttpStore:
    """The store of an ``http(s)://`` location (``endpoint_url`` is for S3 and ignored here)."""
    return HttpStore(location.address)


class HttpStore:
    """An ``http(s)://`` registry, read through a shared urllib3 pool; writes are refused."""

    def __init__(
        self,
        base_url: str,
        pool: urllib3.PoolManager | None = None,
        *,
        retries: Retry | None = None,
        timeout: Timeout | None = None,
        resume_attempts: int = 5,
        max_get_bytes: int = MAX_GET_BYTES,
    ) -> None:
        url = urllib3.util.parse_url(base_url.rstrip("/"))
        self._auth = urllib3.util.make_headers(basic_auth=url.auth) if url.auth else {}
        self.location = url._replace(auth=None).url
        self.pool = pool or urllib3.PoolManager(num_pools=4, maxsize=4)
        self.retries = retries or default_retries()
        self.timeout = timeout or Timeout(connect=5.0, read=15.0)
        self.resume_attempts = resume_attempts
        self.max_get_bytes = max_get_bytes

    def url(self, key: str) -> str:
        """The URL of a registry key."""
        return f"{self.location}/{check_key(key)}"

    def get(self, key: str) -> tuple[bytes, str]:
        """The whole object and its etag (documents: index, descriptors, pointers, records)."""
        for attempt in range(self.resume_attempts + 1):
            response = self.answer("GET", key)
            try:
                return self._whole(key, response), _etag(response)
            except Urllib3Error as exc:
                _pause(attempt, self.resume_attempts, self.location, key, exc)
            finally:
                _finish(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def head(self, key: str) -> ObjectInfo:
        """Size, etag and modification time, from one HEAD request."""
        response = self.answer("HEAD", key)
        _finish(response)
        length = response.headers.get("Content-Length", "")
        size = int(length) if length.isdigit() else 0
        return ObjectInfo(key, size, _etag(response), _modified(response))

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        """A reader over the object's bytes that resumes a broken connection by itself."""
        body = _Body(self, key)
        try:
            yield cast(BinaryIO, body)
        finally:
            body.close()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Refused: a static server has no listing."""
        raise self._refusal(f"listing {prefix or 'the registry'}")

    def delete(self, key: str) -> None:
        """Refused: read-only."""
        raise self._refusal(f"deleting {key}")

    def put(
        self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        """Refused: read-only."""
        raise self._refusal(f"writing {key}")

    def put_file(
        self, key: str, path: Path, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        """Refused: read-only."""
        raise self._refusal(f"writing {key}")

    def _refusal(self, doing: str) -> ReadOnlyStore:
        return ReadOnlyStore(
            f"{self.location} is read-only (HTTP): {doing} needs a writable location; use the "
            "directory or s3:// location it is served from"
        )

    def answer(self, method: str, key: str, headers: dict[str, str] | None = None) -> Response:
        """The response to ``method key`` when its status is 200 or 206; else the error the
        status means (404: :class:`KeyNotFound`)."""
        response = self._send(method, key, headers or {})
        if response.status not in (200, 206):
            _discard(response)
            raise self._status_error(key, response.status)
        return response

    def _send(self, method: str, key: str, headers: dict[str, str]) -> Response:
        try:
            return self.pool.request(
                method,
                self.url(key),
                headers={"Accept-Encoding": "identity", **self._auth, **headers},
                preload_content=False,
                retries=self.retries,
                timeout=self.timeout,
                redirect=True,
            )
        except Urllib3Error as exc:
            raise StoreUnreachable(
                f"cannot reach the registry {self.location} for {key}: {_reason(exc)}; "
                "check the URL and the network, or pass --offline to use the cached index"
            ) from None

    def _status_error(self, key: str, status: int) -> RegistryError:
        if status == 404:
            return KeyNotFound(f"{key} not found in {self.location}")
        if status in RETRY_STATUSES:
            return StoreUnreachable(
                f"the registry {self.location} answered HTTP {status} for {key} after retries; "
                "try again later, or pass --offline to use the cached index"
            )
        return HttpStatusError(
            f"the registry {self.location} answered HTTP {status} for {key}; "
            "check the registry URL and its access rules"
        )

    def _whole(self, key: str, response: Response) -> bytes:
        """The body: read in one go when its declared length is within ``max_get_bytes``,
        refused unread when it is over; without a length, read in pieces up to the limit."""
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_get_bytes:
            raise self._too_large(key)
        if length.isdigit():
            return response.read(int(length), decode_content=False)
        data = bytearray()
        while piece := response.read(
            min(CHUNK, self.max_get_bytes + 1 - len(data)), decode_content=False
        ):
            data += piece
            if len(data) > self.max_get_bytes:
                raise self._too_large(key)
        return bytes(data)

    def _too_large(self, key: str) -> ObjectTooLarge:
        return ObjectTooLarge(
            f"{key} from {self.location} is larger than {self.max_get_bytes} bytes, the most a "
            "document may have: the registry is corrupt or hostile; check the registry URL"
        )


class _Body(io.RawIOBase):
    """The bytes of one object as a stream; a broken connection is resumed where it broke."""

    def __init__(self, store: HttpStore, key: str) -> None:
        super().__init__()
        self._store, self._key = store, key
        self._have = 0  # bytes handed to the reader
        self._breaks = 0
        self._response: Response | None = None  # set first: close() runs even if the GET fails
        self._response = store.answer("GET", key)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when negative); b"" at the end."""
        while True:
            try:
                response = self._response or self._reopen()
                chunk = response.read(size if size >= 0 else None, decode_content=False)
            except Urllib3Error as exc:
                self._broken(exc)
                continue
            self._have += len(chunk)
            return chunk

    def _broken(self, exc: Urllib3Error) -> None:
        if self._response is not None:
            _finish(self._response)
            self._response = None
        _pause(self._breaks, self._store.resume_attempts, self._store.location, self._key, exc)
        self._breaks += 1

    def _reopen(self) -> Response:
        have = self._have
        response = self._store.answer("GET", self._key, {"Range": f"bytes={have}-"} if have else {})
        self._response = response
        if have and not _continues(response, have):
            while have > 0 and (skipped := response.read(min(have, CHUNK), decode_content=False)):
                have -= len(skipped)
        return response

    def close(self) -> None:
        if self._response is not None:
            _finish(self._response)
            self._response = None
        super().close()


def _discard(response: Response) -> None:
    """Read and drop a small error body so that the connection can be reused."""
    remaining = response.length_remaining
    if remaining is not None and remaining <= ERROR_BODY_BYTES:
        response.drain_conn()
    _finish(response)


def _finish(response: Response) -> None:
    """Give the connection back for reuse when its body was read to the end; close it otherwise
    (the next request must not read what is left of this one)."""
    if response.length_remaining != 0:
        response.close()
    response.release_conn()


def _continues(response: Response, offset: int) -> bool:
    """True when a response is the 206 continuation that starts at ``offset``."""
    if response.status != 206:
        return False
    return response.headers.get("Content-Range", "").startswith(f"bytes {offset}-")


def _etag(response: Response) -> str:
    return str(response.headers.get("ETag", ""))


def _modified(response: Response) -> float:
    with contextlib.suppress(KeyError, TypeError, ValueError):
        return email.utils.parsedate_to_datetime(response.headers["Last-Modified"]).timestamp()
    return 0.0


def _pause(attempt: int, attempts: int, location: str, key: str, exc: Exception) -> None:
    if attempt >= attempts:
        raise StoreUnreachable(
            f"the download of {key} from {location} broke off {attempts + 1} times "
            f"(last: {_reason(exc)}); check the network and try again"
        ) from None
    time.sleep(min(0.1 * 2**attempt, 2.0))


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "reason", None)
    return str(inner or exc) or type(exc).__name__
