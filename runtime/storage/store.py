"""The storage protocol: a handful of methods with precise failure semantics.

``get(key, if_none_match) -> (bytes, etag)``, ``head``, ``list(prefix)``, ``open`` (stream),
``delete``, ``put(key, data, mode, etag)`` and ``put_file(key, path, mode, etag)``.

- A missing key raises :class:`~runtime.errors.KeyNotFound` (a ``FileNotFoundError``).
- ``get(key, if_none_match=etag)`` is the one conditional read: with the etag of an earlier
  ``get`` of the key, it raises :class:`NotModified` (not an error: the caller's copy is current)
  instead of sending the same bytes again. Each backend asks its own way: ``If-None-Match`` over
  HTTP (``If-Modified-Since`` where a server sends no ETag), ``IfNoneMatch`` on S3's GetObject,
  and a directory or memory compare the content's etag.
- ``PutMode.CREATE`` fails with :class:`~runtime.errors.PreconditionFailed` if the key exists;
  ``PutMode.MATCH`` replaces only if the current etag equals ``etag`` (else ``PreconditionFailed``;
  ``KeyNotFound`` if the key is gone).
- A store that cannot be reached now raises :class:`StoreUnreachable`.
- A read-only store (HTTP) raises :class:`ReadOnlyStore` from ``list`` and every write.
- Anything else a backend cannot do raises :class:`~runtime.errors.StoreError` naming the
  location.

The backends live beside this module, one each: ``local`` (a directory), ``memory`` (tests, dry
runs), ``http`` (read-only) and ``s3``; :func:`runtime.storage.location.open_store` picks one by
the location's scheme. This module imports none of them.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import blake3

from runtime.errors import StoreError

IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
SHORT = "public, max-age=300"


class StoreUnreachable(StoreError, ConnectionError):
    """Raised when a store cannot be reached now: connection refused or reset, timeouts, or
    server errors that outlast the retries. A reader may answer from what it cached instead."""


class ReadOnlyStore(StoreError):
    """Raised when a store that can only be read (a registry over HTTP) is asked to list or to
    write; the message names the location and what to use instead."""


MAX_DOCUMENT = 256 << 20  # bytes of a document read whole: index.json of ~500k bundles fits


class ObjectTooLarge(StoreError):
    """Raised when a document read whole is larger than the caller's ``limit`` (or an HTTP
    store's ``max_get_bytes``): refused unread where the size is known first."""


def too_large(key: str, location: str, limit: int) -> ObjectTooLarge:
    """The error of a document past ``limit`` bytes."""
    return ObjectTooLarge(
        f"{key} from {location} is larger than {limit} bytes, the most a document may have: "
        "the registry is corrupt or hostile; check the registry location"
    )


def content_etag(data: bytes) -> str:
    """The etag a directory or memory store gives ``data``: its BLAKE3, cut to 32 hex digits."""
    return blake3.blake3(data).hexdigest()[:32]


def answer_get(
    key: str, location: str, data: bytes, if_none_match: str | None, limit: int | None
) -> tuple[bytes, str]:
    """What ``get`` answers for ``data`` held in hand (a directory or memory store):
    :class:`ObjectTooLarge` past ``limit``, :class:`NotModified` at ``if_none_match``, else the
    bytes and their content etag."""
    if limit is not None and len(data) > limit:
        raise too_large(key, location, limit)
    etag = content_etag(data)
    if etag == if_none_match:
        raise NotModified(key)
    return data, etag


class NotModified(Exception):
    """Raised by ``get(key, if_none_match=etag)`` when the object still has that etag: the
    caller's copy is current. Deliberately not a :class:`~runtime.errors.RegistryError`: nothing
    went wrong, and no error handler should ever report it."""


class PutMode(enum.Enum):
    """How a write treats an existing key."""

    OVERWRITE = "overwrite"
    CREATE = "create"  # fail if the key exists
    MATCH = "match"  # replace only if the current etag equals the one given


@dataclass(frozen=True)
class ObjectInfo:
    """What ``head`` and ``list`` report; ``etag`` may be "" from ``list`` where it costs a read."""

    key: str
    size: int
    etag: str
    modified: float  # seconds since the epoch


class Store(Protocol):
    """A registry location: a directory, a bucket prefix, an HTTP(S) base URL, or memory."""

    location: str  # as shown in messages: credentials never appear in it

    def get(
        self, key: str, if_none_match: str | None = None, limit: int | None = None
    ) -> tuple[bytes, str]: ...
    def head(self, key: str) -> ObjectInfo: ...
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...
    def open(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]: ...
    def delete(self, key: str) -> None: ...
    def put(
        self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str: ...
    def put_file(
        self, key: str, path: Path, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str: ...


def content_headers(key: str) -> tuple[str, str]:
    """(Content-Type, Cache-Control) for an object of the registry layout, by its class."""
    if key.startswith("blobs/"):
        return "application/zstd", IMMUTABLE
    if key.startswith(("descriptors/", "shards/", "targets/")):
        return "application/json", IMMUTABLE
    if key.startswith("metadata/"):
        # TUF metadata: timestamp.json moves; every other file is versioned and never changes.
        return "application/json", NO_CACHE if key == "metadata/timestamp.json" else IMMUTABLE
    if key.startswith("aliases/"):
        # Pointer files and the per-model view move; history records never change.
        return "application/json", NO_CACHE if key.count("/") == 2 else IMMUTABLE
    if key in ("index.json", "index", "v1/models"):
        return "application/json", NO_CACHE
    if key.endswith(".html"):
        return "text/html; charset=utf-8", SHORT
    if key.endswith(".json"):
        return "application/json", SHORT
    return "application/octet-stream", SHORT


def check_key(key: str) -> str:
    """Reject keys that could escape the store or collide with its own hidden files."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") or p[0] == "." for p in parts):
        raise StoreError(
            f"store key {key!r} is not a relative path of plain names "
            "(no leading '/', empty, '.' or '..' parts, no hidden names)"
        )
    return key


def check_mode(mode: PutMode, etag: str | None) -> None:
    """Refuse a compare-and-swap without the etag it compares against (a programming error)."""
    if mode is PutMode.MATCH and not etag:
        raise ValueError("PutMode.MATCH needs the etag the caller read")
