"""An in-memory store with the semantics of the others: tests and dry runs.

Etags are the BLAKE3 of the content (its first 32 hex digits), as in a directory.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from runtime.errors import KeyNotFound, PreconditionFailed
from runtime.storage.location import Location
from runtime.storage.store import (
    ObjectInfo,
    PutMode,
    answer_get,
    check_key,
    check_mode,
    content_etag,
)


def open_location(location: Location, endpoint_url: str | None = None) -> MemoryStore:
    """A fresh, empty store named by ``location`` (``endpoint_url`` is ignored here)."""
    return MemoryStore(location.shown)


class MemoryStore:
    """A thread-safe in-memory store with the same semantics (tests, dry runs)."""

    def __init__(self, location: str = "memory://") -> None:
        self.location = location
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._mutex = threading.Lock()

    def get(
        self, key: str, if_none_match: str | None = None, limit: int | None = None
    ) -> tuple[bytes, str]:
        """The object's bytes and etag; :class:`NotModified` when its etag is ``if_none_match``;
        :class:`ObjectTooLarge` past ``limit`` bytes."""
        with self._mutex:
            if check_key(key) not in self._objects:
                raise KeyNotFound(f"{key} not found in {self.location}")
            data = self._objects[key][0]
        return answer_get(key, self.location, data, if_none_match, limit)

    def head(self, key: str) -> ObjectInfo:
        """Size, etag and modification time."""
        data, etag = self.get(key)
        return ObjectInfo(key, len(data), etag, self._objects[key][1])

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key; etags left empty."""
        with self._mutex:
            items = sorted((k, len(v[0]), v[1]) for k, v in self._objects.items())
        return iter(ObjectInfo(k, n, "", mtime) for k, n, mtime in items if k.startswith(prefix))

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        """A binary reader over the object."""
        yield io.BytesIO(self.get(key)[0])

    def delete(self, key: str) -> None:
        """Remove the object (missing keys raise :class:`KeyNotFound`)."""
        with self._mutex:
            if self._objects.pop(check_key(key), None) is None:
                raise KeyNotFound(f"{key} not found in {self.location}")

    def put(
        self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        """Write ``data`` under ``key`` with the semantics of ``mode``; returns the new etag."""
        check_mode(mode, etag)
        data = bytes(data)
        with self._mutex:
            current = self._objects.get(check_key(key))
            if mode is PutMode.CREATE and current is not None:
                raise PreconditionFailed(f"{key} already exists in {self.location}")
            if mode is PutMode.MATCH:
                if current is None:
                    raise KeyNotFound(f"{key} is gone from {self.location}")
                now = content_etag(current[0])
                if now != etag:
                    raise PreconditionFailed(
                        f"{key} in {self.location} changed since it was read "
                        f"(etag {etag}, now {now})"
                    )
            self._objects[key] = (data, time.time())
        return content_etag(data)

    def put_file(
        self, key: str, path: Path, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        """Store the file's bytes under ``key``."""
        return self.put(key, Path(path).read_bytes(), mode, etag)
