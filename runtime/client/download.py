"""Downloads: how a blob lands in the cache, verified.

:func:`download_blob` streams the blob from the registry's store (``store.open``: a directory,
S3, or HTTP, where the store itself resumes a broken connection with ``Range``) into
``<blobs>/.<digest>.partial-<pid>-<random>`` (so processes fetching the same bundle never write
into each other's file), hashes the bytes as they arrive (BLAKE3, and SHA-256 when the descriptor
has one) on a helper thread, syncs the file to disk as it grows, checks size and digests, and only
then renames the file to ``<blobs>/<digest>.xyb``. Anything unverified is deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import secrets
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import blake3

from runtime.errors import IntegrityError
from runtime.registry.wire import BundleDescriptor
from runtime.storage.atomic import WRITEBACK_EVERY, Writeback, fsync_dir
from runtime.storage.store import Store

CHUNK = 4 << 20  # big reads: much faster than socket-sized pieces, and few trips per GiB
PARTIAL_MARK = ".partial-"


class Digests:
    """BLAKE3 (and optionally SHA-256) of a byte stream, computed on a helper thread.

    Both hash functions release the GIL on large buffers, so hashing overlaps with the socket and
    file I/O of the caller's thread.
    """

    def __init__(self, sha256: bool) -> None:
        self._blake3 = blake3.blake3()
        self._sha256 = hashlib.sha256() if sha256 else None
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=32)
        self._thread = threading.Thread(target=self._run, name="digests", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._blake3.update(chunk)
            if self._sha256 is not None:
                self._sha256.update(chunk)

    def update(self, chunk: bytes) -> None:
        """Hash ``chunk`` (asynchronously; :meth:`finish` waits for it)."""
        self._queue.put(chunk)

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


def partial_path(blobs: Path, digest: str) -> Path:
    """A download's private working file: named by digest plus a unique suffix."""
    return blobs / f".{digest}{PARTIAL_MARK}{os.getpid()}-{secrets.token_hex(4)}"


def download_blob(
    store: Store, descriptor: BundleDescriptor, blobs: Path, *, progress: bool | None = None
) -> Path:
    """Download the descriptor's blob from ``store`` into ``blobs``, verify it, and return its
    final path."""
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
                    _copy(store, descriptor.blob_key, sink)
            finally:
                writeback.close()
            handle.flush()
            os.fsync(handle.fileno())
        verify(descriptor, sink.written, *digests.finish(), source=store.location)
        os.replace(partial, final)  # same bytes whoever wins a race: either rename is correct
        fsync_dir(blobs)
        return final
    finally:
        digests.finish()
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def _copy(store: Store, key: str, sink: Sink) -> None:
    with store.open(key) as reader:
        while chunk := reader.read(CHUNK):
            sink.write(chunk)


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
