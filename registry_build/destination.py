"""What a destination store holds, and what asking it costs.

A publish or a commit asks, before a write, whether the key already holds those bytes, so that
nothing unchanged is rewritten. :class:`View` answers from a HEAD per key asked about (a publish
lists nothing), or from one paginated LIST of the destination (``reindex``, which reads all of it
anyway). :class:`CountingStore` counts the requests made through it (the figure a publish
reports). Equal content is recognised by etag: MD5 on S3, the first half of the BLAKE3 digest
locally.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import blake3

from runtime.errors import KeyNotFound
from runtime.storage.store import ObjectInfo, PutMode, Store

LIST_PAGE = 1000  # keys per page of an S3 listing


class CountingStore:
    """A store wrapper that counts requests: S3's own HTTP count where the store keeps one,
    else one per call (a LIST one per page of :data:`LIST_PAGE` keys)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.location = inner.location
        self.calls = 0
        self._start = getattr(inner, "requests", None)

    @property
    def requests(self) -> int:
        """Requests made through this wrapper so far."""
        now = getattr(self.inner, "requests", None)
        return self.calls if now is None or self._start is None else now - self._start

    def get(
        self, key: str, if_none_match: str | None = None, limit: int | None = None
    ) -> tuple[bytes, str]:
        self.calls += 1
        return self.inner.get(key, if_none_match, limit)

    def head(self, key: str) -> ObjectInfo:
        self.calls += 1
        return self.inner.head(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        items = list(self.inner.list(prefix))
        self.calls += max(1, math.ceil(len(items) / LIST_PAGE))
        return iter(items)

    def open(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        self.calls += 1
        return self.inner.open(key)

    def delete(self, key: str) -> None:
        self.calls += 1
        self.inner.delete(key)

    def put(
        self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        self.calls += 1
        return self.inner.put(key, data, mode, etag)

    def put_file(
        self, key: str, path: Path, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        self.calls += 1
        return self.inner.put_file(key, path, mode, etag)


def same_content(etag: str, data: bytes) -> bool:
    """Whether an object with ``etag`` holds ``data``: S3 etags are MD5, local ones BLAKE3."""
    if not etag:
        return False
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    return etag in (md5, blake3.blake3(data).hexdigest()[:32])


class View:
    """What the destination holds, from one LIST or from a HEAD per key asked about."""

    def __init__(self, store: Store, listed: bool) -> None:
        self.store = store
        self.listed = listed
        self.objects: dict[str, ObjectInfo | None] = {}
        if listed:
            self.refresh()

    def refresh(self) -> None:
        """Forget what was learned; a listing view lists again."""
        self.objects = {}
        if self.listed:
            self.objects = {info.key: info for info in self.store.list()}

    def info(self, key: str) -> ObjectInfo | None:
        """The object under ``key``, or None."""
        if self.listed or key in self.objects:
            return self.objects.get(key)
        try:
            found: ObjectInfo | None = self.store.head(key)
        except KeyNotFound:
            found = None
        self.objects[key] = found
        return found

    def holds(self, key: str, data: bytes) -> bool:
        """Whether ``key`` already holds exactly ``data``."""
        info = self.info(key)
        if info is None or info.size != len(data):
            return False
        if not info.etag:  # a local listing leaves etags empty: hashing a local file is cheap
            info = self.store.head(key)
        return same_content(info.etag, data)

    def record(self, key: str, data: bytes, etag: str) -> None:
        """Remember what we just wrote."""
        self.objects[key] = ObjectInfo(key, len(data), etag, time.time())
