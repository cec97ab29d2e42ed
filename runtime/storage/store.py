"""The storage protocol: a handful of methods with precise failure semantics, and its backends.

``get(key) -> (bytes, etag)``, ``head``, ``list(prefix)``, ``open`` (stream), ``delete``,
``put(key, data, mode, etag)`` and ``put_file(key, path, mode, etag)``.

- A missing key raises :class:`KeyNotFound` (a ``FileNotFoundError``).
- ``PutMode.CREATE`` fails with :class:`PreconditionFailed` if the key exists;
  ``PutMode.MATCH`` replaces only if the current etag equals ``etag`` (else
  :class:`PreconditionFailed`; :class:`KeyNotFound` if the key is gone).
- Backends: :class:`LocalStore` (a directory), :class:`MemoryStore` (tests) and ``S3Store``
  (``runtime.storage.s3``, imported only for ``s3://`` locations). :func:`open_store` picks one.

A directory store looks exactly like the static registry it holds; while a write is in
progress, a hidden temporary file sits beside its key::

    <root>/
      .<name>.tmp-<pid>-<rand>  a write in progress (renamed or linked into place when complete)
      index.json, blobs/, descriptors/, aliases/, ...

Replacing writes hold an exclusive ``flock`` on the key's directory, so a compare-and-swap is
atomic against every other writer of that directory, in this process or another, with no lock
file left in the served tree.

Etags of local and memory objects are the BLAKE3 of their content: equal bytes, equal etag.
"""

from __future__ import annotations

import contextlib
import enum
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import blake3

from runtime.errors import KeyNotFound, PreconditionFailed, StoreError
from runtime.names import redact
from runtime.storage.atomic import fsync_dir, is_temp_name, replace, temp_file

IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
SHORT = "public, max-age=300"


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
    """A registry location: a directory, a bucket prefix, or memory."""

    location: str

    def get(self, key: str) -> tuple[bytes, str]: ...
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
    if key.startswith("descriptors/"):
        return "application/json", IMMUTABLE
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


def _check_mode(mode: PutMode, etag: str | None) -> None:
    if mode is PutMode.MATCH and not etag:
        raise ValueError("PutMode.MATCH needs the etag the caller read")


def open_store(location: str, *, endpoint_url: str | None = None) -> Store:
    """A store for ``location``: ``s3://bucket/prefix``, ``memory://``, ``file://DIR`` or a path."""
    if location.startswith("s3://"):
        from runtime.storage.s3 import S3Store  # boto3 only when an s3:// location is used

        return S3Store.from_url(location, endpoint_url=endpoint_url)
    if location.startswith("memory://"):
        return MemoryStore(location)
    if location.startswith(("http://", "https://")):
        raise StoreError(
            f"{redact(location)!r} is read-only over HTTP: write to a directory or an s3:// "
            "location"
        )
    return LocalStore(Path(location.removeprefix("file://")))


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

    def get(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and etag."""
        try:
            data = self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise KeyNotFound(f"{key} not found in {self.location}") from None
        return data, blake3.blake3(data).hexdigest()[:32]

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
        _check_mode(mode, etag)
        path = self._path(key)
        with temp_file(path) as (handle, tmp):
            handle.write(data)
        self._commit(key, tmp, mode, etag)
        return blake3.blake3(data).hexdigest()[:32]

    def put_file(
        self, key: str, path: Path, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        """Copy the file at ``path`` under ``key`` (streaming); returns the new etag."""
        _check_mode(mode, etag)
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


class MemoryStore:
    """A thread-safe in-memory store with the same semantics (tests, dry runs)."""

    def __init__(self, location: str = "memory://") -> None:
        self.location = location
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._mutex = threading.Lock()

    def get(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and etag."""
        with self._mutex:
            if check_key(key) not in self._objects:
                raise KeyNotFound(f"{key} not found in {self.location}")
            data = self._objects[key][0]
        return data, blake3.blake3(data).hexdigest()[:32]

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
        import io

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
        _check_mode(mode, etag)
        data = bytes(data)
        with self._mutex:
            current = self._objects.get(check_key(key))
            if mode is PutMode.CREATE and current is not None:
                raise PreconditionFailed(f"{key} already exists in {self.location}")
            if mode is PutMode.MATCH:
                if current is None:
                    raise KeyNotFound(f"{key} is gone from {self.location}")
                now = blake3.blake3(current[0]).hexdigest()[:32]
                if now != etag:
                    raise PreconditionFailed(
                        f"{key} in {self.location} changed since it was read "
                        f"(etag {etag}, now {now})"
                    )
            self._objects[key] = (data, time.time())
        return blake3.blake3(data).hexdigest()[:32]

    def put_file(
        self, key: str, path: Path, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        """Store the file's bytes under ``key``."""
        return self.put(key, Path(path).read_bytes(), mode, etag)
