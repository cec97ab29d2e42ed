"""The client's local cache: verified blobs, their descriptors, extracted trees.

Layout (``$BUNDLE_REGISTRY_CACHE``, else ``$XDG_CACHE_HOME/bundle-registry``, else
``~/.cache/bundle-registry``: :func:`default_root`)::

    blobs/<blake3>.xyb                      verified bundles, content-addressed; mtime = last use
    blobs/.<blake3>.partial-<pid>-<rand>    a download in progress, private to one process
    descriptors/<blake3>.json               the full descriptor (with ``files``) of a cached blob
    trees/<blake3>/                         the extracted model files of a blob
    shards/<blake3>.json                    verified shards (every bundle of one model at one
                                            moment), content-addressed like blobs, shared by
                                            every registry; mtime = last use
    registries/<key>/                       one registry's mutable documents as last seen
                                            (:mod:`runtime.client.mirror` owns each)
    build/                                  registry_build's own state (never touched here)

Only verified bytes are ever renamed into ``blobs/`` and ``shards/``; every other write goes
through a temporary file and a rename, so a reader sees a whole file or none. A cached shard is
checked again on every read like one from a registry (a few microseconds): one damaged on disk is
removed and read from the registry anew. ``prune`` removes blobs (with their descriptor and tree)
and shards not used for N days, and partial downloads abandoned for a day.

Every path here is built from a digest (64 lowercase hex, checked again where it becomes a path),
never from other text a registry sent, so nothing a registry says can name a file outside the
cache.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime.client.download import is_partial_name
from runtime.documents import quoted
from runtime.errors import CorruptDocument, InvalidNameError
from runtime.registry.wire import (
    DIGEST_PATTERN,
    VALUE_SHOWN,
    BundleDescriptor,
    FileEntry,
    decode_document,
    encode_pretty,
)
from runtime.storage.atomic import write_atomic

CACHE_ENV = "BUNDLE_REGISTRY_CACHE"
DAY = 86400.0
PARTIAL_MAX_AGE = DAY
_DIGEST = re.compile(DIGEST_PATTERN)


def _checked(digest: str) -> str:
    """``digest`` if it is one (the last guard before it names a file), else InvalidNameError."""
    if not _DIGEST.search(digest):
        raise InvalidNameError(
            f"{quoted(digest, VALUE_SHOWN)} is not a 64-character lowercase hex digest, so it "
            "cannot name a cached file: the registry is corrupt or hostile"
        )
    return digest


def default_root() -> Path:
    """``$BUNDLE_REGISTRY_CACHE``, else ``$XDG_CACHE_HOME/bundle-registry``, else
    ``~/.cache/bundle-registry``."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bundle-registry"


@dataclass(frozen=True)
class CacheEntry:
    """One cached blob, as ``cache ls`` shows it."""

    digest: str
    size: int
    last_used: float
    extracted: bool
    descriptor: BundleDescriptor | None

    @property
    def label(self) -> str:
        """``model@version target``, or ``(unknown)`` when the descriptor is missing."""
        d = self.descriptor
        return f"{d.id}@{d.version} {d.target}" if d else "(unknown)"


@dataclass(frozen=True)
class PruneReport:
    """What ``prune`` removed."""

    blobs: int
    partials: int
    freed_bytes: int


class Cache:
    """The cache directory; every method is safe to call from several processes at once."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.blobs = self.root / "blobs"

    def blob(self, digest: str, size: int | None = None) -> Path | None:
        """The cached blob's path (marking it used), or None when it is not cached.

        A blob whose size is not ``size`` was damaged after it was verified: it is removed
        (with its tree), so the caller downloads it again. Only the size is checked: re-hashing
        on every hit would cost what the cache saves.
        """
        path = self.blob_path(digest)
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            return None
        if size is not None and actual != size:
            self.remove(digest)
            return None
        with contextlib.suppress(OSError):  # a read-only cache (a baked image) still serves
            os.utime(path)
        return path

    def has_blob(self, digest: str) -> bool:
        """Whether the blob of ``digest`` is cached (not marked used, nor checked)."""
        return self.blob_path(digest).exists()

    def blob_path(self, digest: str) -> Path:
        """Where the blob of ``digest`` lives (may not exist)."""
        return self.blobs / f"{_checked(digest)}.xyb"

    def tree_intact(self, digest: str, files: Sequence[FileEntry]) -> bool:
        """Whether the extracted tree holds every file of ``files`` at its size; a damaged tree
        is removed so that it is extracted again."""
        tree = self.tree(digest)
        if not tree.is_dir():
            return False
        try:
            intact = all((tree / f.path).stat().st_size == f.size for f in files)
        except OSError:
            intact = False
        if not intact:
            shutil.rmtree(tree, ignore_errors=True)
        return intact

    def tree(self, digest: str) -> Path:
        """Where the blob's extracted files live (may not exist yet)."""
        return self.root / "trees" / _checked(digest)

    def _descriptor_path(self, digest: str) -> Path:
        return self.root / "descriptors" / f"{_checked(digest)}.json"

    def descriptor(self, digest: str) -> BundleDescriptor | None:
        """The full descriptor saved with a blob, or None (also when it is damaged)."""
        path = self._descriptor_path(digest)
        try:
            found = decode_document(path.read_bytes(), BundleDescriptor, str(path), "")
        except (FileNotFoundError, CorruptDocument):
            return None
        return found if found.hash == digest else None

    def save_descriptor(self, descriptor: BundleDescriptor) -> None:
        """Keep a blob's full descriptor (before the blob itself, so a cached blob has one)."""
        write_atomic(self._descriptor_path(descriptor.hash), encode_pretty(descriptor))

    def _shard_path(self, digest: str) -> Path:
        return self.root / "shards" / f"{_checked(digest)}.json"

    def shard(self, digest: str) -> tuple[bytes, Path] | None:
        """The bytes of the cached shard of ``digest`` and its path (marking it used), or None;
        the caller checks them (:func:`runtime.registry.index.check_shard`) as it checks a
        registry's, and removes a damaged copy (:meth:`remove_shard`)."""
        path = self._shard_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        with contextlib.suppress(OSError):  # a read-only cache still serves
            os.utime(path)
        return data, path

    def save_shard(self, digest: str, data: bytes) -> None:
        """Keep a shard whose bytes were verified against ``digest``."""
        write_atomic(self._shard_path(digest), data)

    def remove_shard(self, digest: str) -> None:
        """Forget a cached shard (one that no longer verifies)."""
        self._shard_path(digest).unlink(missing_ok=True)

    def entries(self) -> list[CacheEntry]:
        """Every cached blob, most recently used first."""
        found = []
        for path in self.blobs.glob("*.xyb") if self.blobs.is_dir() else ():
            if _DIGEST.search(path.stem):  # else not a file this cache wrote
                entry = self.entry(path.stem)
                if entry is not None:
                    found.append(entry)
        return sorted(found, key=lambda e: (-e.last_used, e.digest))

    def entry(self, digest: str) -> CacheEntry | None:
        """The cached blob of ``digest`` as ``cache ls`` shows it (not marked used), or None."""
        try:
            st = self.blob_path(digest).stat()
        except FileNotFoundError:
            return None
        extracted = self.tree(digest).is_dir()
        return CacheEntry(digest, st.st_size, st.st_mtime, extracted, self.descriptor(digest))

    def prune(self, keep_days: float, now: float | None = None) -> PruneReport:
        """Remove blobs unused for ``keep_days`` (with descriptor and tree), shards unused as
        long, and old partials."""
        now = time.time() if now is None else now
        blobs = freed = 0
        for entry in self.entries():
            if now - entry.last_used > keep_days * DAY:
                freed += entry.size
                blobs += 1
                self.remove(entry.digest)
        self._prune_shards(now - keep_days * DAY)
        return PruneReport(blobs, self._prune_partials(now), freed)

    def _prune_shards(self, unused_since: float) -> None:
        folder = self.root / "shards"
        for path in folder.glob("*.json") if folder.is_dir() else ():
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < unused_since:
                    path.unlink()

    def remove(self, digest: str) -> None:
        """Forget one blob: the blob first, then its tree and descriptor."""
        self.blob_path(digest).unlink(missing_ok=True)
        shutil.rmtree(self.tree(digest), ignore_errors=True)
        self._descriptor_path(digest).unlink(missing_ok=True)

    def _prune_partials(self, now: float) -> int:
        removed = 0
        for path in self.blobs.iterdir() if self.blobs.is_dir() else ():
            if is_partial_name(path.name):
                with contextlib.suppress(FileNotFoundError):
                    if now - path.stat().st_mtime > PARTIAL_MAX_AGE:
                        path.unlink()
                        removed += 1
        return removed
