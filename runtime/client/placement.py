"""A bundle's files placed in a directory the user names (``fetch --local-dir DIR``).

The files come from the bundle's extracted tree in the cache (:meth:`Registry.extract
<runtime.client.registry.Registry.extract>`, verified file by file) and land at their paths
inside the bundle::

    DIR/<path>            a hard link to <cache>/trees/<blake3>/<path> when DIR is on the
                          cache's file system, else a copy

- **Links or copies.** A hard link costs no space and no time; it is the same file as the
  cache's, so it is made read-only (0444): writing through it would change what the cache hands
  out. An editor or tool that saves by writing a new file and renaming it replaces the link and
  leaves the cache alone; to change a file in place, copy it first. Where a link cannot be made
  (another file system, or one without hard links) the file is copied, and a copy is the user's
  own. Never a symbolic link, through which the cache could be edited by accident and which
  dangles once the cache is pruned; a hard link outlives the pruning of the cache's copy.
- **Nothing is overwritten by surprise.** A file already at a path is left alone when its bytes
  are the bundle's (size and BLAKE3); one that differs is replaced only with ``force``. Every
  path is checked before anything is written, so a refusal changes nothing. Files in DIR that
  the bundle does not hold are left as they are.
- Each file is written under a temporary name in its folder and renamed into place, so a reader
  never sees half a file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import blake3

from runtime.errors import RegistryError
from runtime.registry.resolver import listing
from runtime.registry.wire import FileEntry
from runtime.storage.atomic import replace, temp_file, temp_path_for

How = Literal["linked", "copied", "unchanged"]
READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}
_PIECE = 1 << 20


class LocalDirConflict(RegistryError, FileExistsError):
    """Raised when ``--local-dir`` holds files that differ from the bundle's at its paths (and
    ``force`` was not given), or a directory where the bundle has a file."""


@dataclass(frozen=True)
class Placed:
    """One file of the bundle in the directory, and how it got there."""

    path: str
    how: How


@dataclass(frozen=True)
class Placement:
    """The directory and each file placed in it."""

    directory: Path
    files: tuple[Placed, ...]


def place(
    tree: Path, files: Sequence[FileEntry], directory: Path, *, force: bool = False
) -> Placement:
    """Place the files of the extracted ``tree`` (``files``: the descriptor's list, or empty
    to take the tree as it is) in ``directory`` (see the module notes)."""
    entries = tuple(files) or _entries_of(tree)
    states = {e.path: _state(tree / e.path, directory / e.path, e) for e in entries}
    _refuse_conflicts(directory, states, force)
    directory.mkdir(parents=True, exist_ok=True)
    link = _same_file_system(tree, directory)
    placed = []
    for entry in entries:
        if states[entry.path] == "same":
            placed.append(Placed(entry.path, "unchanged"))
        else:
            placed.append(Placed(entry.path, _put(tree / entry.path, directory / entry.path, link)))
    return Placement(directory, tuple(placed))


def _state(source: Path, dest: Path, entry: FileEntry) -> str:
    """``absent``, ``same`` (the bundle's bytes), ``differs``, or ``blocked`` (a directory)."""
    try:
        st = dest.stat()
    except FileNotFoundError:
        return "absent"
    except NotADirectoryError:
        return "blocked"  # a file where the bundle has a folder
    if stat.S_ISDIR(st.st_mode):
        return "blocked"
    if st.st_size != entry.size:
        return "differs"
    if os.path.samefile(source, dest) or _blake3(dest) == entry.blake3:
        return "same"
    return "differs"


def _refuse_conflicts(directory: Path, states: dict[str, str], force: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise LocalDirConflict(
            f"--local-dir {directory} is a file, not a directory: choose a directory (it is "
            "made when missing)"
        )
    blocked = [p for p, s in states.items() if s == "blocked"]
    if blocked:
        raise LocalDirConflict(
            f"--local-dir {directory}: these paths are in the way of the bundle's files (a "
            f"directory, or a file where the bundle has a folder): {listing(blocked)}; move "
            "them, or choose another directory"
        )
    differing = [p for p, s in states.items() if s == "differs"]
    if differing and not force:
        raise LocalDirConflict(
            f"--local-dir {directory}: these files exist and differ from the bundle's: "
            f"{listing(differing)}; pass --force to replace them, or choose another directory"
        )


def _same_file_system(tree: Path, directory: Path) -> bool:
    return tree.stat().st_dev == directory.stat().st_dev


def _put(source: Path, dest: Path, link: bool) -> How:
    """Link (or copy) ``source`` to ``dest`` under a temporary name, then rename it over."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if link and _link(source, dest):
        return "linked"
    with temp_file(dest) as (handle, tmp), open(source, "rb") as reader:
        shutil.copyfileobj(reader, handle, _PIECE)
    replace(tmp, dest)
    return "copied"


def _link(source: Path, dest: Path) -> bool:
    """Hard-link ``source`` at ``dest`` and make the shared file read-only; False where the
    file system cannot link it."""
    tmp = temp_path_for(dest)
    try:
        os.link(source, tmp)
    except OSError as exc:
        if exc.errno in _NO_LINK:
            return False
        raise
    with contextlib.suppress(OSError):  # a cache owned by another user keeps its own mode
        os.chmod(tmp, READ_ONLY)
    replace(tmp, dest)
    return True


def _blake3(path: Path) -> str:
    hasher = blake3.blake3()
    with open(path, "rb") as reader:
        while piece := reader.read(_PIECE):
            hasher.update(piece)
    return hasher.hexdigest()


def _entries_of(tree: Path) -> tuple[FileEntry, ...]:
    """The files of a tree whose descriptor lists none (a registry without descriptor files)."""
    found = sorted(p for p in tree.rglob("*") if p.is_file())
    return tuple(
        FileEntry(p.relative_to(tree).as_posix(), p.stat().st_size, _blake3(p)) for p in found
    )
