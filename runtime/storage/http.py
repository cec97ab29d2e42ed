"""A registry served over HTTP(S) as a read-only store: ``get``, ``head`` and a streaming ``open``.

- One urllib3 ``PoolManager`` (connections are reused), retries with exponential backoff on
  connection errors and on 429/5xx (:func:`default_retries`), timeouts (connect 5 s, read 15 s);
  what outlasts them raises :class:`~runtime.storage.store.StoreUnreachable`.
- ``https://user:token@host/...``: the credentials go in a basic-auth header; ``location`` is the
  URL without them, and so is every message.
- ``get`` reads a document whole, at most ``max_get_bytes`` (:data:`MAX_GET_BYTES`): a hostile
  server cannot make a client hold a 10 GB ``index.json`` in memory. Its etag is the validator
  the server gave: the ``ETag`` header as sent, else (a server without ETags, such as
  ``python -m http.server``) ``modified:`` and the ``Last-Modified`` date, but only when that date
  is strong, at least a second before the response's ``Date`` (RFC 9110, 8.8.2.2: a file changed
  twice within its last second would otherwise look unchanged), else "". With
  ``if_none_match=etag`` it asks ``If-None-Match`` (or ``If-Modified-Since``), and a 304 raises
  :class:`~runtime.storage.store.NotModified`: no body is sent.
- ``open`` streams a blob, its reader's ``readinto`` receiving from the socket straight into the
  caller's buffer; a body cut mid-way is asked for again with ``Range: bytes=<have>-``.
  A server that answers ``200`` instead of ``206`` sends the whole object again: the bytes already
  delivered are skipped, so the reader sees one unbroken stream either way (up to
  ``resume_attempts`` breaks; the caller's digest check covers the joined bytes).
- ``list`` and every write raise :class:`~runtime.storage.store.ReadOnlyStore`: a static server
  has no listing and takes no uploads.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import IncompleteRead
from urllib3.util import Retry, Timeout

from runtime.errors import KeyNotFound, RegistryError, StoreError
from runtime.storage.location import Location
from runtime.storage.store import (
    MAX_DOCUMENT,
    NotModified,
    ObjectInfo,
    PutMode,
    ReadOnlyStore,
    StoreUnreachable,
    check_key,
    too_large,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MAX_GET_BYTES = MAX_DOCUMENT  # a document read whole: index.json of ~500k bundles fits
CHUNK = 4 << 20  # big reads are much faster than read1's socket-sized pieces
ERROR_BODY_BYTES = 64 << 10  # an error page this small is read to keep the connection
RETRY_STATUSES = (429, 500, 502, 503, 504)
MODIFIED = "modified:"  # an etag made of a Last-Modified date (a server that sends no ETag)
Response = urllib3.BaseHTTPResponse


class HttpStatusError(StoreError):
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

    def get(
        self, key: str, if_none_match: str | None = None, limit: int | None = None
    ) -> tuple[bytes, str]:
        """The whole object and its etag (documents: index, descriptors, pointers, records);
        :class:`NotModified` when the server answers 304 to ``if_none_match``;
        :class:`ObjectTooLarge` past ``limit`` (at most ``max_get_bytes``) bytes."""
        most = self.max_get_bytes if limit is None else min(limit, self.max_get_bytes)
        for attempt in range(self.resume_attempts + 1):
            response = self.answer("GET", key, _conditional(if_none_match))
            try:
                return self._whole(key, response, most), _etag(response)
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
        status means (404: :class:`KeyNotFound`; 304, to a conditional request:
        :class:`NotModified`)."""
        response = self._send(method, key, headers or {})
        if response.status == 304:
            _discard(response)
            raise NotModified(key)
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

    def _whole(self, key: str, response: Response, most: int) -> bytes:
        """The body: read in one go when its declared length is within ``most`` bytes,
        refused unread when it is over; without a length, read in pieces up to the limit."""
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > most:
            raise too_large(key, self.location, most)
        if length.isdigit():
            return response.read(int(length), decode_content=False)
        data = bytearray()
        while piece := response.read(min(CHUNK, most + 1 - len(data)), decode_content=False):
            data += piece
            if len(data) > most:
                raise too_large(key, self.location, most)
        return bytes(data)


# What a body read raises when the connection breaks: a new request may cure it.
_BREAKS = (Urllib3Error, OSError, http.client.HTTPException)


class _Body(io.RawIOBase):
    """The bytes of one object as a stream; a broken connection is resumed where it broke.

    ``readinto`` is the primitive (``read`` comes from :class:`io.RawIOBase`): the socket's bytes
    go straight into the caller's buffer, so a download allocates nothing per piece.
    """

    def __init__(self, store: HttpStore, key: str) -> None:
        super().__init__()
        self._store, self._key = store, key
        self._have = 0  # bytes handed to the reader
        self._breaks = 0
        self._skip = 0  # bytes of a restarted response (a 200 to a Range) the reader has already
        self._left: int | None = None  # bytes the current response still owes (None: unknown)
        self._receive: Callable[[memoryview], int]  # the current response's readinto
        self._response: Response | None = None  # set first: close() runs even if the GET fails
        self._start(store.answer("GET", key))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Fill ``buffer`` with the next bytes (fewer at the end of the object); 0 at the end."""
        view = memoryview(buffer).cast("B")
        while True:
            if self._response is None:
                self._reopen()
            try:
                count = self._next(view)
            except _BREAKS as exc:
                self._broken(exc)
                continue
            self._have += count
            return count

    def _next(self, view: memoryview) -> int:
        """The next bytes of the current response that the reader has not had, into ``view``."""
        while self._skip:
            skipped = self._take(view[: min(len(view), self._skip)])
            if not skipped:
                return 0
            self._skip -= skipped
        return self._take(view)

    def _take(self, view: memoryview) -> int:
        count = self._receive(view)
        if not count and view and self._left:  # the server promised more, then hung up
            raise IncompleteRead(self._have, self._left)
        if self._left is not None:
            self._left -= count
        return count

    def _start(self, response: Response) -> None:
        self._response, self._left = response, response.length_remaining
        self._receive = _socket_readinto(response)

    def _reopen(self) -> None:
        have = self._have
        response = self._store.answer("GET", self._key, {"Range": f"bytes={have}-"} if have else {})
        self._skip = 0 if _continues(response, have) else have
        self._start(response)

    def _broken(self, exc: Exception) -> None:
        self._release()
        _pause(self._breaks, self._store.resume_attempts, self._store.location, self._key, exc)
        self._breaks += 1

    def _release(self) -> None:
        """Give the connection back: for reuse when the response was read to its end, closed
        otherwise (the next request must not read what is left of this one)."""
        if self._response is not None:
            if self._left != 0:
                self._response.close()
            self._response.release_conn()
            self._response = None

    def close(self) -> None:
        self._release()
        super().close()


def _socket_readinto(response: Response) -> Callable[[memoryview], int]:
    """The fastest ``readinto`` of a response's body: the one of the ``http.client`` response
    under urllib3's, which receives into the caller's buffer. urllib3's own ``readinto`` reads
    into a new ``bytes`` and copies that: an allocation per call, which with a 4 MiB buffer
    measured two page faults per page received. It is the fallback where the other is missing."""
    raw = getattr(response, "_fp", None)  # urllib3 2 keeps the http.client response in _fp
    return raw.readinto if isinstance(raw, http.client.HTTPResponse) else response.readinto


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
    """The response's validator (module notes): its ETag, else a strong Last-Modified, else ""."""
    etag = response.headers.get("ETag")
    if etag:
        return str(etag)
    modified, date = _date(response, "Last-Modified"), _date(response, "Date")
    if modified is None or date is None or date - modified < 1:
        return ""
    return MODIFIED + str(response.headers["Last-Modified"])


def _conditional(etag: str | None) -> dict[str, str]:
    """The header that asks for the object only if it no longer has ``etag``."""
    if not etag:
        return {}
    if etag.startswith(MODIFIED):
        return {"If-Modified-Since": etag.removeprefix(MODIFIED)}
    return {"If-None-Match": etag}


def _date(response: Response, header: str) -> float | None:
    with contextlib.suppress(KeyError, TypeError, ValueError):
        return email.utils.parsedate_to_datetime(response.headers[header]).timestamp()
    return None


def _modified(response: Response) -> float:
    return _date(response, "Last-Modified") or 0.0


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
