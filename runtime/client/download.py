"""Downloads: how a blob lands in the cache, verified.

:func:`download_blob` streams the blob from the registry's store (``store.open``: a directory,
S3, or HTTP, where the store itself resumes a broken connection with ``Range``) into
``<blobs>/.<digest>.partial-<pid>-<random>`` (so processes fetching the same bundle never write
into each other's file), checks its size and BLAKE3, and only then renames the file to
``<blobs>/<digest>.xyb``. Anything unverified is deleted.

The loop does what integrity and durability need and no more (``python -m bench.fetch``):

- one buffer, reused: each piece is received into it (``readinto``), written from it and hashed
  from it, so nothing is allocated per piece;
- one digest: BLAKE3, the content address the descriptor names, updated as the bytes arrive
  (it releases the GIL). A descriptor's SHA-256 is for tools that want one; accepting the bytes
  does not need it, so it is not computed here (``registry-build verify`` checks it);
- the file is synced to disk as it grows, on a helper thread
  (:class:`~runtime.storage.atomic.Writeback`), so the fsync before the rename has only the tail
  left to write.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

import blake3

from runtime.errors import IntegrityError
from runtime.registry.wire import BundleDescriptor
from runtime.storage.atomic import WRITEBACK_EVERY, Writeback, fsync_dir
from runtime.storage.store import Store

CHUNK = 4 << 20  # bytes per read: measured against 256 KiB and 1 MiB, the least CPU per GiB
# Bytes per write(). The page cache takes folios as large as a write (1 MiB writes, 1 MiB
# folios), and on a VM with free page reporting (virtio-balloon) large ones are cut from the free
# blocks handed back to the host, which must fault each page in again. 1 GiB from nginx on such a
# VM, 10 turns: with 1 MiB writes 1.3-3.0 s (median 2.5), with 64 KiB writes 0.8-1.6 s (1.0).
WRITE = 64 << 10
PARTIAL_MARK = ".partial-"


class _ReadsInto(Protocol):
    """What the download needs of a store's reader. Every store's has it (a file, ``BytesIO``,
    botocore's body, the HTTP store's reader), though ``BinaryIO`` does not declare it."""

    def readinto(self, buffer: memoryview, /) -> int: ...


class Sink:
    """Where a download's bytes go: the partial file, its BLAKE3, writeback and a progress bar."""

    def __init__(
        self, handle: BinaryIO, writeback: Writeback, descriptor: BundleDescriptor
    ) -> None:
        self.handle = handle
        self.writeback = writeback
        # One thread: BLAKE3 takes ~0.1 s per GiB of one core, and the other core is busy with
        # the socket and the page cache; max_threads=AUTO measured no faster, and more CPU.
        self.hasher = blake3.blake3()
        self.limit = descriptor.size_bytes
        self.label = f"{descriptor.id}@{descriptor.version} ({descriptor.target})"
        self.written = 0
        self._synced = 0
        self.progress: Any = None

    def write(self, piece: memoryview) -> None:
        """Append ``piece``; refuse to grow past the size the descriptor names."""
        self.written += len(piece)
        if self.written > self.limit:
            raise IntegrityError(
                f"{self.label}: the registry sent more than the {self.limit} bytes its "
                "descriptor names; the blob or the index is wrong: ask the publisher to rebuild"
            )
        for start in range(0, len(piece), WRITE):
            self.handle.write(piece[start : start + WRITE])
        self.hasher.update(piece)
        if self.written - self._synced >= WRITEBACK_EVERY:
            self.handle.flush()
            self.writeback.poke()
            self._synced = self.written
        if self.progress is not None:
            self.progress.update(len(piece))


def partial_path(blobs: Path, digest: str) -> Path:
    """A download's private working file: named by digest plus a unique suffix."""
    return blobs / f".{digest}{PARTIAL_MARK}{os.getpid()}-{secrets.token_hex(4)}"


def download_blob(
    store: Store, descriptor: BundleDescriptor, blobs: Path, *, progress: bool | None = None
) -> Path:
    """Download the descriptor's blob from ``store`` into ``blobs``, check its size and BLAKE3
    (not its SHA-256: see the module notes), and return its final path."""
    final = blobs / f"{descriptor.hash}.xyb"
    blobs.mkdir(parents=True, exist_ok=True)
    partial = partial_path(blobs, descriptor.hash)
    try:
        size, digest = _receive(store, descriptor, partial, progress)
        verify(descriptor, size, digest, source=store.location)
        os.replace(partial, final)  # same bytes whoever wins a race: either rename is correct
        fsync_dir(blobs)
        return final
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def _receive(
    store: Store, descriptor: BundleDescriptor, partial: Path, progress: bool | None
) -> tuple[int, str]:
    """Stream the blob into a new file at ``partial`` and sync it; (its size, its BLAKE3)."""
    with open(partial, "xb") as handle:
        with Writeback(handle.fileno()) as writeback:
            sink = Sink(handle, writeback, descriptor)
            with _progress_bar(sink, descriptor, progress):
                _copy(store, descriptor.blob_key, sink)
        handle.flush()
        os.fsync(handle.fileno())
    return sink.written, sink.hasher.hexdigest()


def _copy(store: Store, key: str, sink: Sink) -> None:
    buffer = memoryview(bytearray(CHUNK))
    with store.open(key) as reader:
        readinto = cast(_ReadsInto, reader).readinto
        while count := readinto(buffer):
            sink.write(buffer[:count])


def verify(descriptor: BundleDescriptor, size: int, blake3_hex: str, *, source: str) -> None:
    """Raise :class:`IntegrityError` unless size and BLAKE3 match the descriptor."""
    what = f"{descriptor.blob_key} from {source} ({descriptor.id}@{descriptor.version}"
    what += f" {descriptor.target})"
    fix = "the blob is corrupt or the index is stale: retry, or ask the publisher to rebuild"
    if size != descriptor.size_bytes:
        raise IntegrityError(f"{what} has {size} bytes, expected {descriptor.size_bytes}; {fix}")
    if blake3_hex != descriptor.hash:
        raise IntegrityError(f"{what} has BLAKE3 {blake3_hex}, expected {descriptor.hash}; {fix}")


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
