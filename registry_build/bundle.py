"""Packing ``.xyb`` bundles (format: :mod:`runtime.registry.xyb`): deterministic, streaming,
overlapped.

The manifest comes first but carries a hash over all content, so :func:`pack` runs three streams
at once over one output file::

    content thread   sources (pass 1) -> Xybrid SHA-256 + BLAKE3 per file -> frame 0 at offset 0
    calling thread   sources (pass 2) -> tar entries -> zstd (workers) -> file at len(frame 0)
    digest thread    follows the file: frame 0, then the body as it is written -> BLAKE3, SHA-256

Frame 0 is a raw zstd frame whose length is known before the hash it carries, so the body can be
written first. The digest thread reads back only bytes just written (page cache), in file order,
while packing runs: the bundle's digests are ready when its last byte is.

The output never depends on the machine: entries are sorted, headers fixed
(:mod:`runtime.registry.xyb`),
and zstd's multithreaded format is the same for any worker count >= 1 (it cuts jobs by size, not
by worker), so ``threads`` changes speed, never bytes. Sources are read at most twice and never
held in memory.

No symbolic link is ever packed or followed: a source is opened from its :attr:`SourceFile.beneath`
directory one path component at a time with ``O_NOFOLLOW`` (:func:`open_no_links`), so a link
swapped in after the config was checked is refused as well (:class:`SourceLinkError`).

A :class:`DigestCache` (a JSON file written atomically) keeps per-file BLAKE3 digests keyed by
stat (absolute path, size, mtime_ns, inode) and each bundle's Xybrid hash keyed by its manifest
fields and the stat keys of its files; with both cached, pass 1 is skipped entirely::

    digests.json  {"format": 1, "files": {stat key: blake3}, "bundles": {bundle key: sha256}}
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import blake3
import msgspec
import zstandard

from runtime.documents import quoted
from runtime.errors import MissingSourceError, RegistryError
from runtime.registry.wire import FileEntry, Manifest
from runtime.registry.xyb import (
    CHUNK,
    END_OF_ARCHIVE,
    MANIFEST_NAME,
    METADATA_NAME,
    XybridHasher,
    check_entry_name,
    manifest_frame,
    tar_header,
    tar_padding,
)
from runtime.storage.atomic import WRITEBACK_EVERY, Writeback, replace, temp_file, write_atomic

READ_CHUNK = 4 * CHUNK
_PLACEHOLDER_HASH = "0" * 64
CACHE_FORMAT = 1


class PackError(RegistryError, ValueError):
    """Raised when :func:`pack` is given files it cannot bundle: an unsafe, reserved or duplicate
    arcname, or a SourceFile with both or neither of ``path`` and ``data``."""


class SourceChanged(RegistryError, RuntimeError):
    """Raised when a source file changes (size or mtime) while it is being packed."""


class SourceLinkError(PackError):
    """Raised when a source file is, or is reached through, a symbolic link below the directory
    it must lie in (:attr:`SourceFile.beneath`); ``link`` is the link, ``target`` its text."""

    def __init__(self, link: Path, target: str) -> None:
        super().__init__(
            f"{link} is a symbolic link to {quoted(target)}: links are not packed; "
            "replace it with the file itself"
        )
        self.link = link
        self.target = target


@dataclass(frozen=True)
class SourceFile:
    """One file to put in a bundle: ``arcname`` inside it, and exactly one of ``path`` (a file on
    disk, streamed) or ``data`` (small generated content: placeholders, model_metadata.json).

    No symbolic link is followed below ``beneath`` on the way to ``path`` (by default the file's
    own directory, so only the file itself must not be a link)."""

    arcname: str
    path: Path | None = None
    data: bytes | None = None
    beneath: Path | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.data is None):
            raise PackError(
                f"SourceFile {self.arcname!r}: give exactly one of path= or data= "
                f"(got {'both' if self.path is not None else 'neither'})"
            )


@dataclass(frozen=True)
class PackResult:
    """A packed bundle: digests and size of the ``.xyb`` file, its manifest and its files."""

    blake3: str
    sha256: str
    size: int
    manifest: Manifest
    files: tuple[FileEntry, ...]
    read_bytes: int = 0  # source bytes read, both passes (0 for data= files)


@dataclass(frozen=True)
class _Source:
    """A SourceFile with its size and stat key, checked once before packing."""

    arcname: str
    path: Path | None
    data: bytes | None
    size: int
    key: str  # stat key for a path, digest of the bytes for data
    beneath: Path | None = None

    def open_chunks(self, buffer: bytearray) -> Iterator[memoryview]:
        """The content in chunks (views into ``buffer`` for files: use each before the next)."""
        if self.data is not None:
            yield memoryview(self.data)
            return
        assert self.path is not None  # data is None, so __post_init__ guarantees a path
        fd = open_no_links(self.path, self.beneath or self.path.parent)
        with open(fd, "rb", buffering=0) as handle:
            view, total = memoryview(buffer), 0
            while count := handle.readinto(buffer):
                total += count
                yield view[:count]
            if total != self.size or stat_key(self.path, os.fstat(handle.fileno())) != self.key:
                raise SourceChanged(
                    f"{self.path} changed while it was being packed as {quoted(self.arcname)} "
                    f"(expected {self.size} bytes, read {total}): rebuild once it is stable"
                )


def open_no_links(path: Path, beneath: Path) -> int:
    """A read-only descriptor of the regular file ``path``, reached from the directory ``beneath``
    without following a symbolic link below it: each component is opened with ``O_NOFOLLOW``
    relative to the one before, so nothing can swap a link in between a check and the read.

    Raises SourceLinkError for a link, PackError for what is not a regular file (opened without
    blocking, so a named pipe cannot hang the build), OSError as ``open`` does.
    """
    parts = path.relative_to(beneath).parts
    fd = os.open(beneath, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for number, part in enumerate(parts, start=1):
            last = number == len(parts)
            flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    _refuse_link(fd, part, beneath.joinpath(*parts[:number]))
                raise
            os.close(fd)
            fd = child
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PackError(f"{path} is not a regular file: a bundle holds files only")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refuse_link(directory_fd: int, name: str, shown: Path) -> None:
    """Raise SourceLinkError if ``name`` in the directory is a symbolic link."""
    if stat.S_ISLNK(os.stat(name, dir_fd=directory_fd, follow_symlinks=False).st_mode):
        raise SourceLinkError(shown, os.readlink(name, dir_fd=directory_fd))


def stat_key(path: Path, st: os.stat_result | None = None) -> str:
    """The cache key of a file from stat alone: absolute path, size, mtime_ns, inode."""
    st = os.lstat(path) if st is None else st
    return msgspec.json.encode(
        [str(Path(path).absolute()), st.st_size, st.st_mtime_ns, st.st_ino]
    ).decode()


class _CacheFile(msgspec.Struct):
    format: int = CACHE_FORMAT
    files: dict[str, str] = {}
    bundles: dict[str, str] = {}


class DigestCache:
    """Digests of unchanged inputs, keyed by stat, persisted as one JSON file (see module doc).

    Safe to share between threads packing different bundles. A missing or damaged file is an
    empty cache (it only costs a re-read). :meth:`save` writes it atomically when it changed.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._changed = False
        self._data = _CacheFile()
        if path is not None and path.is_file():
            with contextlib.suppress(msgspec.DecodeError, OSError):
                loaded = msgspec.json.decode(path.read_bytes(), type=_CacheFile)
                if loaded.format == CACHE_FORMAT:
                    self._data = loaded

    def fingerprint(self, files: Sequence[SourceFile]) -> str:
        """A digest of ``files`` (arcnames, stat keys, generated bytes) from stat alone: equal
        fingerprints mean unchanged inputs. Raises MissingSourceError for a missing path."""
        return _fingerprint([_prepare_one(f) for f in files])

    def file_digest(self, key: str) -> str | None:
        """The cached BLAKE3 of the file with stat key ``key``."""
        with self._lock:
            return self._data.files.get(key)

    def content_hash(self, key: str) -> str | None:
        """The cached Xybrid hash for bundle key ``key`` (see :func:`bundle_key`)."""
        with self._lock:
            return self._data.bundles.get(key)

    def remember(self, files: dict[str, str], bundles: dict[str, str]) -> None:
        """Record per-file digests and bundle content hashes."""
        with self._lock:
            self._changed |= any(self._data.files.get(k) != v for k, v in files.items())
            self._changed |= any(self._data.bundles.get(k) != v for k, v in bundles.items())
            self._data.files.update(files)
            self._data.bundles.update(bundles)

    def save(self) -> None:
        """Write the cache file (only when something changed and it has a path)."""
        with self._lock:
            if self.path is None or not self._changed:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, msgspec.json.encode(self._data))
            self._changed = False


def _fingerprint(sources: Sequence[_Source]) -> str:
    parts = sorted((s.arcname, s.key) for s in sources)
    return hashlib.sha256(msgspec.json.encode(parts)).hexdigest()


def bundle_key(manifest: Manifest, sources: Sequence[_Source]) -> str:
    """What the Xybrid hash depends on: manifest fields and the files' stat keys."""
    head = [manifest.model_id, manifest.version, manifest.target, manifest.has_metadata]
    return hashlib.sha256(msgspec.json.encode([head, _fingerprint(sources)])).hexdigest()


def _prepare_one(item: SourceFile) -> _Source:
    if item.data is not None:
        digest = hashlib.sha256(item.data).hexdigest()
        return _Source(item.arcname, None, item.data, len(item.data), f"data:{digest}")
    assert item.path is not None  # SourceFile guarantees exactly one of path/data
    try:
        st = os.lstat(item.path)  # stat alone, no open: an unchanged rebuild reads no source
    except FileNotFoundError:
        raise MissingSourceError(
            f"{item.path}: source for {quoted(item.arcname)} does not exist; create it or fix "
            "the path"
        ) from None
    if stat.S_ISLNK(st.st_mode):
        raise SourceLinkError(Path(item.path), os.readlink(item.path))
    if not stat.S_ISREG(st.st_mode):
        raise PackError(f"{item.path}: source for {quoted(item.arcname)} is not a regular file")
    key = stat_key(item.path, st)
    return _Source(item.arcname, Path(item.path), None, st.st_size, key, item.beneath)


def _prepare(files: Sequence[SourceFile]) -> list[_Source]:
    """Validated sources sorted by arcname."""
    seen: set[str] = set()
    for item in files:
        problem = check_entry_name(item.arcname)
        if problem is None and item.arcname == MANIFEST_NAME:
            problem = "is reserved for the bundle's manifest"
        if problem is None and item.arcname in seen:
            problem = "is given more than once"
        if problem is not None:
            raise PackError(
                f"arcname {quoted(item.arcname)} {problem}: use a unique relative path "
                "like 'model.onnx' or 'weights/part-1.bin'"
            )
        seen.add(item.arcname)
    sources = sorted((_prepare_one(f) for f in files), key=lambda s: s.arcname)
    if not sources:
        raise PackError("a bundle needs at least one file; none were given")
    for name in seen:
        parent = name.rpartition("/")[0]
        while parent:
            if parent in seen:
                raise PackError(
                    f"arcname {quoted(name)} needs {quoted(parent)} as a directory, but "
                    f"{quoted(parent)} is also a file: rename one of them"
                )
            parent = parent.rpartition("/")[0]
    return sources


class _Aborted(Exception):
    """Internal: the pack failed elsewhere, stop this thread."""


class _TailDigest:
    """BLAKE3 and SHA-256 of the output file, fed in file order as its bytes are written."""

    def __init__(self, fd: int, body_start: int) -> None:
        self.fd = fd
        self.cond = threading.Condition()
        self.head: bytes | None = None
        self.written = body_start
        self.end: int | None = None
        self.aborted = False

    def start(self, head: bytes) -> None:
        """Frame 0 is known (and written at offset 0): begin hashing."""
        with self.cond:
            self.head = head
            self.cond.notify_all()

    def wrote(self, offset: int) -> None:
        """The file holds every byte before ``offset``."""
        with self.cond:
            self.written = offset
            self.cond.notify_all()

    def finish(self, end: int) -> None:
        """Nothing follows ``end``."""
        with self.cond:
            self.end = end
            self.cond.notify_all()

    def abort(self) -> None:
        """Stop waiting: the pack failed."""
        with self.cond:
            self.aborted = True
            self.cond.notify_all()

    def _wait(self, ready: Callable[[], bool]) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.aborted or ready())
            if self.aborted:
                raise _Aborted

    def _has_more(self, pos: int) -> bool:
        return self.written > pos or self.end is not None

    def run(self) -> tuple[str, str]:
        """(blake3, sha256) hex of the whole file, once :meth:`finish` was called."""
        self._wait(lambda: self.head is not None)
        head = self.head or b""
        b3, sha = blake3.blake3(head), hashlib.sha256(head)
        pos = len(head)
        while True:
            self._wait(functools.partial(self._has_more, pos))
            upto = self.written
            while pos < upto:
                data = os.pread(self.fd, min(upto - pos, READ_CHUNK), pos)
                b3.update(data)
                sha.update(data)
                pos += len(data)
            if self.end is not None and pos >= self.end:
                return b3.hexdigest(), sha.hexdigest()


@dataclass
class _Content:
    """Pass 1's results: the Xybrid hash and every file's BLAKE3."""

    hash: str
    digests: list[str]
    read_bytes: int


def _content_pass(
    sources: list[_Source], known: list[str | None], manifest: Manifest, stop: threading.Event
) -> _Content:
    """Pass 1: Xybrid hash and per-file BLAKE3 (skipped for files whose digest is known)."""
    hasher, digests, read = XybridHasher(), list[str](), 0
    buffer = bytearray(READ_CHUNK)
    for source, cached in zip(sources, known, strict=True):
        hasher.add_path(source.arcname)
        b3 = blake3.blake3() if cached is None else None
        for chunk in source.open_chunks(buffer):
            if stop.is_set():
                raise _Aborted
            hasher.update(chunk)
            if b3 is not None:
                b3.update(chunk)
            read += len(chunk) if source.path is not None else 0
        digests.append(b3.hexdigest() if b3 is not None else cached or "")
    return _Content(hasher.finish(manifest), digests, read)


def _write_body(
    sources: list[_Source],
    fd: int,
    start: int,
    compressor: zstandard.ZstdCompressor,
    tail: _TailDigest,
    stop: threading.Event,
) -> tuple[int, int]:
    """Pass 2: the tar entries after the manifest, compressed, written from ``start``; synced to
    disk as it grows, so the fsync before the rename has only the tail left.

    Returns (end offset, source bytes read)."""
    stream = compressor.compressobj()
    offset, read, synced = start, 0, start
    buffer = bytearray(READ_CHUNK)
    writeback = Writeback(fd)

    def emit(data: bytes) -> None:
        nonlocal offset, synced
        if stop.is_set():
            raise _Aborted
        if data:
            _pwrite_all(fd, data, offset)
            offset += len(data)
            tail.wrote(offset)
            if offset - synced >= WRITEBACK_EVERY:
                writeback.poke()
                synced = offset

    try:
        for source in sources:
            emit(stream.compress(tar_header(source.arcname, source.size)))
            for chunk in source.open_chunks(buffer):
                emit(stream.compress(chunk))
                read += len(chunk) if source.path is not None else 0
            emit(stream.compress(tar_padding(source.size)))
        emit(stream.compress(END_OF_ARCHIVE))
        emit(stream.flush())
    finally:
        writeback.close()
    return offset, read


def workers(threads: int) -> int:
    """zstd workers for ``threads`` (0 or less: one per CPU); never 0, which would switch zstd
    to its single-threaded format and change the bytes."""
    return threads if threads > 0 else max(1, os.cpu_count() or 1)


def pack(
    model_id: str,
    version: str,
    target: str,
    files: Sequence[SourceFile],
    dest: Path,
    *,
    level: int = 3,
    threads: int = 0,
    digests: DigestCache | None = None,
) -> PackResult:
    """Write the ``.xyb`` bundle of ``files`` to ``dest`` (atomically) and describe it.

    The output depends only on the ids, the arcnames, the file contents and ``level``.
    Raises PackError for bad arcnames, MissingSourceError for a missing source file and
    SourceChanged when a source changes while it is read.
    """
    sources = _prepare(files)
    names = [s.arcname for s in sources]
    skeleton = Manifest(model_id, version, target, _PLACEHOLDER_HASH, names, METADATA_NAME in names)
    cache = digests if digests is not None else DigestCache()
    bkey = bundle_key(skeleton, sources)
    known = [cache.file_digest(s.key) if s.path is not None else _blake3(s.data) for s in sources]
    cached_hash = cache.content_hash(bkey) if None not in known else None
    compressor = zstandard.ZstdCompressor(
        level=level, threads=workers(threads), write_checksum=True
    )
    dest = Path(dest)
    # The output file is opened write-only, so a second descriptor reads it back for hashing.
    with temp_file(dest) as (handle, tmp), open(tmp, "rb", buffering=0) as reader:
        files_fd = (handle.fileno(), reader.fileno())
        result = _run(sources, skeleton, known, cached_hash, files_fd, compressor)
    replace(tmp, dest)
    cache.remember(
        {s.key: d.blake3 for s, d in zip(sources, result.files, strict=True) if s.path is not None},
        {bkey: result.manifest.hash},
    )
    return result


def _run(
    sources: list[_Source],
    skeleton: Manifest,
    known: list[str | None],
    cached_hash: str | None,
    fds: tuple[int, int],
    compressor: zstandard.ZstdCompressor,
) -> PackResult:
    """The three streams of the module docstring (``fds``: the output for writing and for
    reading back); any failure stops the other two."""
    fd = fds[0]
    head_size = len(manifest_frame(skeleton))
    tail = _TailDigest(fds[1], head_size)
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="pack") as pool:
        digest_future = pool.submit(tail.run)
        try:
            content_future: Future[_Content] | None = None
            if cached_hash is not None:
                content = _Content(cached_hash, [k or "" for k in known], 0)
                _write_head(fd, skeleton, content, tail)
            else:
                content_future = pool.submit(_content_pass, sources, known, skeleton, stop)
                content_future.add_done_callback(
                    lambda f: _head_when_done(f, fd, skeleton, tail, stop)
                )
            end, read = _write_body(sources, fd, head_size, compressor, tail, stop)
            if content_future is not None:
                content = content_future.result()
            tail.finish(end)
            b3, sha = digest_future.result()
        except BaseException as exc:
            stop.set()
            tail.abort()
            if isinstance(exc, _Aborted) and content_future is not None:
                content_future.result()  # the content pass failed first: raise its error
            raise
    manifest = msgspec.structs.replace(skeleton, hash=content.hash)
    entries = tuple(
        FileEntry(s.arcname, s.size, d) for s, d in zip(sources, content.digests, strict=True)
    )
    return PackResult(b3, sha, end, manifest, entries, read + content.read_bytes)


def _write_head(fd: int, skeleton: Manifest, content: _Content, tail: _TailDigest) -> None:
    """Frame 0, now that the content hash is known, and start the output digests."""
    head = manifest_frame(msgspec.structs.replace(skeleton, hash=content.hash))
    _pwrite_all(fd, head, 0)
    tail.start(head)


def _head_when_done(
    future: Future[_Content], fd: int, skeleton: Manifest, tail: _TailDigest, stop: threading.Event
) -> None:
    if future.cancelled() or future.exception() is not None:
        stop.set()
        tail.abort()
        return
    try:
        _write_head(fd, skeleton, future.result(), tail)
    except BaseException:
        tail.abort()
        raise


def _blake3(data: bytes | None) -> str:
    return blake3.blake3(data or b"").hexdigest()


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        count = os.pwrite(fd, view, offset)
        offset += count
        view = view[count:]
