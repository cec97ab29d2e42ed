"""A directory as a store: temp-then-rename writes, create-only by link, compare-and-swap under a
lock.

A directory store looks exactly like the static registry it holds; while a write is in
progress, a hidden temporary file sits beside its key::

    <root>/
      .<name>.tmp-<pid>-<rand>  a write in progress (renamed or linked into place when complete)
      index.json, blobs/, descriptors/, aliases/, ...

Replacing writes hold an exclusive ``flock`` on the key's directory, so a compare-and-swap is
atomic against every other writer of that directory, in this process or another, with no lock
file left in the served tree.

Etags are the BLAKE3 of the content (its first 32 hex digits): equal bytes, equal etag. A
conditional read (``get(key, if_none_match=etag)``) compares that etag, not the file's size and
mtime: a read from a local disk costs next to nothing at the size of a document, and a change
that keeps the size within one tick of the kernel's coarse file clock (a few milliseconds, for a
file rewritten in place) would pass a size and mtime check unseen.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import blake3

from runtime.errors import KeyNotFound, PreconditionFailed, StoreError
from runtime.storage.atomic import fsync_dir, is_temp_name, replace, temp_file
from runtime.storage.location import Location
from runtime.storage.store import (
    ObjectInfo,
    PutMode,
    answer_get,
    check_key,
    check_mode,
    content_etag,
)


def open_location(location: Location, endpoint_url: str | None = None) -> LocalStore:
    """The store of a directory location (``endpoint_url`` is for S3 and ignored here)."""
    return LocalStore(Path(location.address))


def _read_at_most(file: BinaryIO, limit: int) -> bytes:
    """The file's bytes, or ``limit + 1`` of them when it is longer (never a buffer of ``limit``
    bytes for a small file: ``read(n)`` allocates ``n`` up front)."""
    size = os.fstat(file.fileno()).st_size
    return file.read(min(size, limit) + 1)


def _blake3_file(path: Path) -> str:
    hasher = blake3.blake3()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()[:32]


class LocalStore:
    """A directory: temp-then-rename writes; CREATE links a complete file; MATCH locks."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def get(
        self, key: str, if_none_match: str | None = None, limit: int | None = None
    ) -> tuple[bytes, str]:
        """The object's bytes and etag; :class:`NotModified` when its etag is ``if_none_match``;
        :class:`ObjectTooLarge` past ``limit`` bytes (at most ``limit + 1`` are read)."""
        try:
            with self._path(key).open("rb") as file:
                data = file.read() if limit is None else _read_at_most(file, limit)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise KeyNotFound(f"{key} not found in {self.location}") from None
        return answer_get(key, self.location, data, if_none_match, limit)

    def head(self, key: str) -> ObjectInfo:
        """Size, etag (reads the file to hash it) and modification time."""
        path = self._path(key)
        try:
            st = path.stat()
            if not path.is_file():
                raise FileNotFoundError(key)
            return ObjectInfo(key, st.st_size, _blake3_file(path), st.st_mtime)
        except (FileNotFoundError, NotADirectoryError):
            raise KeyNotFound(f"{key} not found in {self.location}") from None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key; etags left empty."""
        start = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        found: list[ObjectInfo] = []
        for dirpath, dirs, names in os.walk(start):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in names:
                if name.startswith(".") or is_temp_name(name):
                    continue
                full = Path(dirpath, name)
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):
                        st = full.stat()
                        found.append(ObjectInfo(key, st.st_size, "", st.st_mtime))
        return iter(sorted(found, key=lambda info: info.key))

    def open(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """A binary reader positioned at the start of the object."""
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise KeyNotFound(f"{key} not found in {self.location}") from None

    def delete(self, key: str) -> None:
        """Remove the object (missing keys raise :class:`KeyNotFound`)."""
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            raise KeyNotFound(f"{key} not found in {self.location}") from None

    def put(
        self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        """Write ``data`` under ``key`` with the semantics of ``mode``; returns the new etag."""
        check_mode(mode, etag)
        path = self._path(key)
        with temp_file(path) as (handle, tmp):
            handle.write(data)
        self._commit(key, tmp, mode, etag)
        return content_etag(data)

    def put_file(
        self, key: str, path: Path, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        """Copy the file at ``path`` under ``key`` (streaming); returns the new etag."""
        check_mode(mode, etag)
        hasher = blake3.blake3()
        with temp_file(self._path(key)) as (handle, tmp), open(path, "rb") as source:
            while chunk := source.read(1 << 20):
                hasher.update(chunk)
                handle.write(chunk)
        self._commit(key, tmp, mode, etag)
        return hasher.hexdigest()[:32]

    def adopt(self, key: str, tmp: Path, mode: PutMode = PutMode.OVERWRITE) -> None:
        """Move a complete, fsynced file that already lies inside this store's root into place.

        Lets a builder write a large file once instead of writing it and then copying it.
        """
        if mode is PutMode.MATCH:
            raise ValueError("adopt does not support PutMode.MATCH")
        self._path(key).parent.mkdir(parents=True, exist_ok=True)
        self._commit(key, tmp, mode, None)

    def _commit(self, key: str, tmp: Path, mode: PutMode, etag: str | None) -> None:
        path = self._path(key)
        try:
            if mode is PutMode.CREATE:
                self._link(key, tmp, path)
                return
            with self._lock(key):
                if mode is PutMode.MATCH:
                    self._check_etag(key, path, etag)
                replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _link(self, key: str, tmp: Path, path: Path) -> None:
        try:
            os.link(tmp, path)  # atomic: fails if the key exists, never exposes a partial file
        except FileExistsError:
            raise PreconditionFailed(f"{key} already exists in {self.location}") from None
        fsync_dir(path.parent)

    def _check_etag(self, key: str, path: Path, etag: str | None) -> None:
        try:
            current = _blake3_file(path)
        except FileNotFoundError:
            raise KeyNotFound(f"{key} is gone from {self.location}") from None
        if current != etag:
            raise PreconditionFailed(
                f"{key} in {self.location} changed since it was read (etag {etag}, now {current})"
            )

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        try:
            import fcntl  # POSIX only: reading a directory store works everywhere
        except ImportError:
            raise StoreError(
                f"replacing {key} in {self.location} needs POSIX file locks (Linux, macOS); "
                "on Windows write to an s3:// location or from WSL"
            ) from None
        fd = os.open(self._path(key).parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock
