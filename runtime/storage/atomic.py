"""Crash-safe local writes: a uniquely named temporary file, fsynced, then renamed into place.

A reader never sees half a file, and a crash leaves at most a hidden ``.<name>.tmp-*`` file that
the next writer ignores (and :func:`sweep_temp_files` removes).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_MARK = ".tmp-"
WRITEBACK_EVERY = 64 << 20  # bytes written between background syncs of a large file
_datasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def temp_path_for(path: Path) -> Path:
    """A unique hidden sibling of ``path`` on the same filesystem (so rename is atomic)."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(6)}")


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def temp_file(path: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """Open a fresh temporary sibling of ``path`` for writing; it is fsynced on exit.

    The caller decides how to publish it (rename, link); on any error it is removed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        with open(tmp, "xb") as handle:
            yield handle, tmp
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix."""
    with temp_file(path) as (handle, tmp):
        handle.write(data)
    replace(tmp, path)


def replace(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` over ``path`` and make it durable; remove ``tmp`` if the rename fails."""
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def is_temp_name(name: str) -> bool:
    """True for names made by :func:`temp_path_for`."""
    return name.startswith(".") and TEMP_MARK in name


def sweep_temp_files(root: Path, older_than: float, now: float) -> int:
    """Remove leftover temporary files under ``root`` not touched for ``older_than`` seconds."""
    removed = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            candidate = Path(dirpath, name)
            if is_temp_name(name):
                with contextlib.suppress(FileNotFoundError):
                    if now - candidate.stat().st_mtime > older_than:
                        candidate.unlink()
                        removed += 1
    return removed


class Writeback:
    """Flushes a growing file to disk on a helper thread while it is written.

    The file must be on disk before it is renamed into place; syncing as we go (call
    :meth:`poke` every :data:`WRITEBACK_EVERY` bytes) overlaps the disk with the network or the
    compressor, so the final fsync has only the tail left to write. Leaving it as a context
    manager stops the thread, as :meth:`close` does.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="writeback", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closing:
                return
            with contextlib.suppress(OSError):  # the final fsync reports real errors
                _datasync(self._fd)

    def poke(self) -> None:
        """Ask for a sync of what has been written so far (coalesced if one is running)."""
        self._wake.set()

    def close(self) -> None:
        """Stop the helper thread (before the file is closed)."""
        self._closing = True
        self._wake.set()
        self._thread.join()

    def __enter__(self) -> Writeback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
