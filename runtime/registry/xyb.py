"""The ``.xyb`` bundle format, shared by the packer (``registry_build.bundle``) and the client.

A bundle is a zstd stream around a GNU tar archive, readable by Xybrid's loader::

    zstd frame 0 (raw blocks)   tar entry manifest.json   pretty JSON, fields in Xybrid's order
    zstd frame 1 (compressed)   tar entries <path> ...    every file, sorted by path, no directories
                                1024 zero bytes           end of archive

Frame 0 holds only the manifest, stored uncompressed so its length is known before the content
hash it carries is (the packer writes the rest first and fills frame 0 in last). Concatenated zstd
frames are one valid zstd stream (``zstd -d`` and Xybrid's Rust decoder read across frames); this
module's reader accepts any number of frames and any valid tar padding after the end marker.

Every tar header is fixed apart from name and size: mtime 0, uid/gid 0, empty owner names, mode
0o644, type regular file; names over 100 bytes use a GNU ``././@LongLink`` entry and sizes of
8 GiB and more GNU base-256 numbers, so the archive is byte-identical on every machine.

The manifest ``hash`` is Xybrid's content hash: SHA-256 over, for each file sorted by path, the
path's UTF-8 bytes then the file's bytes, then the compact JSON of the manifest with ``hash`` "".

:func:`verify_archive` and :func:`safe_extract` stream the bundle (never whole in memory) and refuse
anything unsafe or inconsistent; :func:`safe_extract` writes only inside a temporary sibling of the
destination and renames it into place once every check passed.

A hostile bundle is bounded before it costs anything. With the descriptor's ``files`` list, every
entry must be listed, once, at its listed size, so the bundle cannot extract to more than the
list's total; that total over the ceiling is refused before reading. With or without a list, the
sizes the tar headers declare are added up and an entry that would pass the ceiling is refused
before a byte of it is written. The ceiling is the caller's ``Limits.max_bytes`` when given, else
automatic: :data:`MAX_RATIO` times the compressed size (at least :data:`RATIO_FLOOR`, at most
:data:`DEFAULT_MAX_EXTRACT_BYTES`), so a 65 KB bomb stops at 256 MiB, not at 64 GiB; real model
weights compress by far less than that ratio. At most :data:`~runtime.registry.wire.MAX_FILES`
files; at
most one GNU long-name entry before an entry (so at most 10 header blocks per entry); at most
:data:`MAX_TRAILER` bytes of zero padding after the end-of-archive marker.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import blake3
import msgspec
import zstandard

from runtime.errors import BundleFormatError, IntegrityError, RegistryError
from runtime.registry.wire import MAX_FILES, SAFE_PATH_PATTERN, FileEntry, Manifest
from runtime.storage.atomic import fsync_dir, temp_path_for

MANIFEST_NAME = "manifest.json"
METADATA_NAME = "model_metadata.json"

BLOCK = 512
TAR_MTIME = 0
TAR_MODE = 0o644
TAR_UID = 0
TAR_GID = 0
TAR_UNAME = ""
TAR_GNAME = ""
GNU_MAGIC = b"ustar  \x00"
LONGLINK_NAME = "././@LongLink"
END_OF_ARCHIVE = bytes(2 * BLOCK)
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_LONG_NAME = 4096  # bytes of a GNU long name, its NUL included
MAX_NAME_PART = 255  # bytes of one path component: what file systems allow
MAX_TRAILER = 1024 * 1024  # zero padding after the end-of-archive marker
DEFAULT_MAX_EXTRACT_BYTES = 64 * 1024**3  # 64 GiB: the automatic ceiling never exceeds it
MAX_RATIO = 1000  # extracted bytes per compressed byte, unless the caller sets a ceiling
RATIO_FLOOR = 256 * 1024**2  # the automatic ceiling of a small bundle
CHUNK = 1024 * 1024

_ZSTD_MAGIC = 0xFD2FB528
_RAW_BLOCK_MAX = 128 * 1024
_OCTAL_SIZE_LIMIT = 8**11  # 11 octal digits; beyond that GNU base-256
_REFETCH = "fetch or rebuild the bundle"


class DestinationExists(RegistryError, FileExistsError):
    """Raised by :func:`safe_extract` when the destination directory already exists."""


class ExtractLimitExceeded(BundleFormatError):
    """Raised when a bundle would extract to more than the caller's ceiling (``max_bytes``):
    the bundle may be sound, the limit is the caller's to raise."""


# -- writing ----------------------------------------------------------------------------------


def tar_header(name: str, size: int) -> bytes:
    """The header block(s) of a regular file entry: a GNU long-name entry first when needed."""
    raw = name.encode("utf-8")
    if len(raw) <= 100:
        return _header_block(raw, size, b"0")
    long_data = raw + b"\x00"
    return (
        _header_block(LONGLINK_NAME.encode(), len(long_data), b"L")
        + long_data
        + tar_padding(len(long_data))
        + _header_block(raw[:100], size, b"0")
    )


def tar_padding(size: int) -> bytes:
    """The zero bytes that follow ``size`` bytes of entry data up to the next 512-byte block."""
    return bytes(-size % BLOCK)


def _header_block(name: bytes, size: int, typeflag: bytes) -> bytes:
    block = bytearray(BLOCK)
    block[0 : len(name)] = name
    block[100:108] = _octal(TAR_MODE, 8)
    block[108:116] = _octal(TAR_UID, 8)
    block[116:124] = _octal(TAR_GID, 8)
    block[124:136] = _octal(size, 12) if size < _OCTAL_SIZE_LIMIT else _base256(size, 12)
    block[136:148] = _octal(TAR_MTIME, 12)
    block[148:156] = b" " * 8
    block[156:157] = typeflag
    block[257:265] = GNU_MAGIC
    block[265 : 265 + len(TAR_UNAME)] = TAR_UNAME.encode()
    block[297 : 297 + len(TAR_GNAME)] = TAR_GNAME.encode()
    block[329:337] = _octal(0, 8)
    block[337:345] = _octal(0, 8)
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\x00" % (width - 1, value)


def _base256(value: int, width: int) -> bytes:
    return bytes([0x80]) + value.to_bytes(width - 1, "big")


def manifest_fields(manifest: Manifest, hash_value: str | None = None) -> dict[str, object]:
    """The manifest as a dict in Xybrid's field order (``hash`` replaced when given)."""
    return {
        "model_id": manifest.model_id,
        "version": manifest.version,
        "target": manifest.target,
        "hash": manifest.hash if hash_value is None else hash_value,
        "files": list(manifest.files),
        "has_metadata": manifest.has_metadata,
    }


def manifest_bytes(manifest: Manifest) -> bytes:
    """``manifest.json`` as Xybrid writes it: serde_json pretty (2-space indent, UTF-8 as is)."""
    return json.dumps(manifest_fields(manifest), indent=2, ensure_ascii=False).encode("utf-8")


def hashed_manifest_bytes(manifest: Manifest) -> bytes:
    """The compact manifest JSON with ``hash`` "", the last input of Xybrid's content hash."""
    fields = manifest_fields(manifest, hash_value="")
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class XybridHasher:
    """Xybrid's content hash, fed in order: ``add_path`` then ``update`` per file (sorted by path),
    then :meth:`finish` with the manifest (whose own ``hash`` is ignored)."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()

    def add_path(self, path: str) -> None:
        """Start the next file: its path bytes go into the hash."""
        self._sha.update(path.encode("utf-8"))

    def update(self, data: bytes | memoryview) -> None:
        """More bytes of the current file."""
        self._sha.update(data)

    def finish(self, manifest: Manifest) -> str:
        """The hex digest, after the compact manifest JSON with ``hash`` set to ""."""
        self._sha.update(hashed_manifest_bytes(manifest))
        return self._sha.hexdigest()


def xybrid_hash(files: Iterable[tuple[str, bytes]], manifest: Manifest) -> str:
    """Xybrid's content hash of small in-memory ``(path, data)`` files (any order)."""
    hasher = XybridHasher()
    for path, data in sorted(files):
        hasher.add_path(path)
        hasher.update(data)
    return hasher.finish(manifest)


def manifest_entry(manifest: Manifest) -> bytes:
    """The tar entry of ``manifest.json`` (header, data, padding)."""
    data = manifest_bytes(manifest)
    return tar_header(MANIFEST_NAME, len(data)) + data + tar_padding(len(data))


def raw_frame(data: bytes) -> bytes:
    """A zstd frame holding ``data`` in raw (stored) blocks: its length depends only on
    ``len(data)``, which lets the packer reserve room for it before the content is hashed."""
    size_field = (0, 4) if len(data) < 2**32 else (1, 8)
    descriptor = ((2 if size_field[0] == 0 else 3) << 6) | 0x20  # content size, single segment
    parts = [_ZSTD_MAGIC.to_bytes(4, "little"), bytes([descriptor])]
    parts.append(len(data).to_bytes(size_field[1], "little"))
    blocks = range(0, max(len(data), 1), _RAW_BLOCK_MAX)
    for start in blocks:
        piece = data[start : start + _RAW_BLOCK_MAX]
        last = int(start + _RAW_BLOCK_MAX >= len(data))
        parts.append(((len(piece) << 3) | last).to_bytes(3, "little"))
        parts.append(piece)
    return b"".join(parts)


def manifest_frame(manifest: Manifest) -> bytes:
    """Frame 0 of a bundle: the manifest entry in a raw zstd frame."""
    return raw_frame(manifest_entry(manifest))


# -- reading ----------------------------------------------------------------------------------


class _FrameWalker:
    """Follows zstd frame and block headers in the compressed bytes, so a stream that stops
    mid-frame, or carries anything after its last frame, is caught (the decoder accepts both)."""

    def __init__(self) -> None:
        self.skip = 0
        self.need = 4
        self.buf = b""
        self.state = "magic"
        self.checksum = False
        self.frames = 0

    def feed(self, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            if self.skip:
                step = min(self.skip, len(data) - pos)
                self.skip -= step
                pos += step
                continue
            take = min(self.need - len(self.buf), len(data) - pos)
            self.buf += data[pos : pos + take]
            pos += take
            if len(self.buf) == self.need:
                field, self.buf = self.buf, b""
                self._parse(field)

    def _parse(self, field: bytes) -> None:
        if self.state == "magic":
            if int.from_bytes(field, "little") != _ZSTD_MAGIC:
                if self.frames:
                    raise ValueError("unexpected bytes after the last zstd frame")
                raise ValueError("no zstd frame at the start: not a .xyb bundle?")
            self.state, self.need = "descriptor", 1
        elif self.state == "descriptor":
            self._descriptor(field[0])
        elif self.state == "header":
            self.state, self.need = "block", 3
        else:
            self._block(int.from_bytes(field, "little"))

    def _descriptor(self, fhd: int) -> None:
        if fhd & 0x08:
            raise ValueError("a zstd frame header has its reserved bit set")
        single = (fhd >> 5) & 1
        fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
        rest = (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
        self.checksum = bool(fhd & 0x04)
        self.state, self.need = ("header", rest) if rest else ("block", 3)

    def _block(self, header: int) -> None:
        kind, size = (header >> 1) & 3, header >> 3
        if kind == 3:
            raise ValueError("a zstd block has the reserved type")
        self.skip = 1 if kind == 1 else size
        if header & 1:
            self.skip += 4 if self.checksum else 0
            self.frames += 1
            self.state, self.need = "magic", 4

    def complete(self) -> bool:
        """True when the bytes so far end exactly after a whole frame."""
        return self.frames > 0 and self.state == "magic" and not self.skip and not self.buf


class _CheckedSource:
    """The compressed file as the decoder reads it, shown to a :class:`_FrameWalker` on the way."""

    def __init__(self, handle: BinaryIO, walker: _FrameWalker) -> None:
        self.handle = handle
        self.walker = walker

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.walker.feed(data)
        return data


class _TarReader:
    """Reads the decompressed tar stream of a bundle block by block, strictly."""

    def __init__(self, handle: BinaryIO, where: str, fix: str = _REFETCH) -> None:
        self.where = where
        self.fix = fix
        self.walker = _FrameWalker()
        decoder = zstandard.ZstdDecompressor()
        self.stream = decoder.stream_reader(
            cast(BinaryIO, _CheckedSource(handle, self.walker)),
            read_size=CHUNK,
            read_across_frames=True,
        )

    def fail(self, problem: str) -> BundleFormatError:
        return BundleFormatError(f"{self.where}: {problem}; {self.fix}")

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes, or a truncation error."""
        data = self._read(size)
        while len(data) < size:
            more = self._read(size - len(data))
            if not more:
                missing = size - len(data)
                raise self.fail(f"the archive ends early (truncated: {missing} bytes missing)")
            data += more
        return data

    def _read(self, size: int) -> bytes:
        try:
            return bytes(self.stream.read(size))
        except (zstandard.ZstdError, ValueError) as exc:
            raise self.fail(f"the zstd stream is corrupt ({exc})") from None

    def next_entry(self) -> tuple[str, int] | None:
        """The next regular file entry (name, size); None at the end-of-archive marker.

        At most one GNU long-name entry may come first, so however an archive chains them, an
        entry costs at most 10 header blocks (the long-name header and up to 8 blocks of name,
        then its own header).
        """
        long_name: bytes | None = None
        for _ in range(2):
            block = self.read(BLOCK)
            if block == bytes(BLOCK):
                if long_name is not None:
                    raise self.fail("the archive ends after a GNU long-name entry")
                return None
            name, size, kind = _parse_header(block, self)
            if kind != b"L":
                return self.decode_name(name if long_name is None else long_name), size
            long_name = self._long_name(size)
        raise self.fail(
            "a GNU long-name entry follows another one: an entry has at most one long name"
        )

    def _long_name(self, size: int) -> bytes:
        if size > MAX_LONG_NAME:
            raise self.fail(f"a GNU long name of {size} bytes is too long")
        return self.read(size + len(tar_padding(size)))[:size].rstrip(b"\x00")

    def decode_name(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"entry name {raw!r} is not UTF-8") from None

    def chunks(self, size: int) -> Iterator[bytes]:
        """The data of the current entry in chunks, then its padding is skipped."""
        left = size
        while left:
            piece = self.read(min(left, CHUNK))
            left -= len(piece)
            yield piece
        self.read(len(tar_padding(size)))

    def finish(self) -> None:
        """After the end marker: only zero padding may follow, and the zstd stream must be whole."""
        padding = 0
        while rest := self._read(CHUNK):
            if rest.count(0) != len(rest):
                raise self.fail("data follows the end-of-archive marker")
            padding += len(rest)
            if padding > MAX_TRAILER:
                raise self.fail(
                    f"more than {MAX_TRAILER} bytes of padding follow the end-of-archive marker"
                )
        if not self.walker.complete():
            raise self.fail("the zstd stream is truncated (its last frame is incomplete)")


_TYPE_NAMES = {
    b"1": "a hard link",
    b"2": "a symbolic link",
    b"3": "a character device",
    b"4": "a block device",
    b"5": "a directory entry",
    b"6": "a FIFO",
    b"7": "a contiguous file",
    b"x": "a pax extended header",
    b"g": "a pax global header",
    b"K": "a GNU long link name",
}


def _parse_header(block: bytes, reader: _TarReader) -> tuple[bytes, int, bytes]:
    """(raw name, size, type flag) of a header block whose checksum holds."""
    name = block[0:100].split(b"\x00", 1)[0]
    stored = _number(block[148:156], reader, name)
    unsigned = sum(block[:148]) + 256 + sum(block[156:])
    if stored != unsigned:
        raise reader.fail(
            f"the tar header of entry {name!r} has a bad checksum (not a tar archive?)"
        )
    if block[257:263] == b"ustar\x00" and block[345:500].strip(b"\x00"):
        name = block[345:500].split(b"\x00", 1)[0] + b"/" + name
    kind = block[156:157]
    if kind not in (b"0", b"\x00", b"L"):
        label = _TYPE_NAMES.get(kind, f"an unknown entry type {kind!r}")
        raise reader.fail(
            f"entry {reader.decode_name(name)!r} is {label}; a bundle holds only regular files"
        )
    return name, _number(block[124:136], reader, name), kind


def _number(field: bytes, reader: _TarReader, name: bytes) -> int:
    if field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\x00", 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise reader.fail(f"the tar header of entry {name!r} has a bad number {field!r}") from None


_SAFE_PATH = re.compile(SAFE_PATH_PATTERN)


def check_entry_name(name: str) -> str | None:
    """Why ``name`` is not a safe relative path inside a bundle, or None if it is.

    A name this accepts also matches :data:`runtime.registry.wire.SAFE_PATH_PATTERN`, the rule for
    the paths a descriptor lists.
    """
    if not name:
        return "is empty"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if "\\" in name or "\x00" in name:
        return "contains a backslash or NUL"
    if any(ch < " " or ch == "\x7f" for ch in name):
        return "contains a control character"
    parts = name.split("/")
    if ".." in parts:
        return "climbs out of the bundle with '..'"
    if "" in parts or "." in parts:
        return "has an empty or '.' path component"
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_PART for part in parts):
        return f"has a path component over {MAX_NAME_PART} bytes"
    if len(name) > MAX_LONG_NAME or not _SAFE_PATH.search(name):
        return "is not a safe relative path"
    return None


def read_manifest(path: Path) -> Manifest:
    """The manifest of the bundle at ``path`` (its first entry), without reading further."""
    with open(path, "rb") as handle:
        return _read_manifest(_TarReader(handle, str(path)))


def _read_manifest(reader: _TarReader) -> Manifest:
    first = reader.next_entry()
    if first is None or first[0] != MANIFEST_NAME:
        got = "nothing" if first is None else repr(first[0])
        raise reader.fail(f"the first entry must be {MANIFEST_NAME!r}, found {got}")
    if first[1] > MAX_MANIFEST_BYTES:
        raise reader.fail(
            f"{MANIFEST_NAME} declares {first[1]} bytes, over the {MAX_MANIFEST_BYTES}-byte limit"
        )
    data = b"".join(reader.chunks(first[1]))
    try:
        manifest = msgspec.json.decode(data, type=Manifest)
    except msgspec.DecodeError as exc:
        raise reader.fail(f"{MANIFEST_NAME} is not a valid manifest ({exc})") from None
    _check_manifest(manifest, reader)
    return manifest


def _check_manifest(manifest: Manifest, reader: _TarReader) -> None:
    if len(manifest.files) > MAX_FILES:
        raise reader.fail(
            f"{MANIFEST_NAME} lists {len(manifest.files)} files, over the limit of {MAX_FILES}"
        )
    for name in manifest.files:
        problem = check_entry_name(name)
        if problem or name == MANIFEST_NAME:
            raise reader.fail(f"{MANIFEST_NAME} lists {name!r}, which {problem or 'is reserved'}")
    if len(set(manifest.files)) != len(manifest.files):
        raise reader.fail(f"{MANIFEST_NAME} lists a file more than once")
    listed = METADATA_NAME in manifest.files
    if manifest.has_metadata != listed:
        raise reader.fail(
            f"{MANIFEST_NAME} says has_metadata={str(manifest.has_metadata).lower()} but "
            f"{METADATA_NAME} is {'' if listed else 'not '}listed"
        )


Sink = Callable[[str], "Callable[[bytes], None] | None"]


class _Budget:
    """The bytes a bundle may extract to, counted from what its tar headers declare."""

    def __init__(self, max_bytes: int) -> None:
        self.ceiling = max_bytes
        self.used = 0

    def check_declared(self, reader: _TarReader, expected: tuple[FileEntry, ...] | None) -> None:
        """Refuse up front a bundle whose descriptor lists more bytes than the ceiling."""
        declared = sum(e.size for e in expected or ())
        if declared > self.ceiling:
            raise _too_large(reader, f"its descriptor lists {declared} bytes", self)

    def take(self, reader: _TarReader, name: str, size: int) -> None:
        """Count an entry's declared size, before any of its bytes are written."""
        self.used += size
        if self.used > self.ceiling:
            what = f"entry {name!r} declares {size} bytes, bringing the bundle to {self.used}"
            raise _too_large(reader, what, self)


def _too_large(reader: _TarReader, what: str, budget: _Budget) -> ExtractLimitExceeded:
    return ExtractLimitExceeded(
        f"{reader.where}: {what}, over the extraction ceiling of {budget.ceiling} bytes; "
        "if you trust this bundle, raise the ceiling (--max-extract or BUNDLE_MAX_EXTRACT)"
    )


class _Checks:
    """Everything checked per entry and at the end of a scan."""

    def __init__(
        self,
        reader: _TarReader,
        manifest: Manifest,
        expected: tuple[FileEntry, ...] | None,
        budget: _Budget,
    ) -> None:
        self.reader = reader
        self.manifest = manifest
        self.listed = set(manifest.files)
        self.expected = None if expected is None else {e.path: e for e in expected}
        self.budget = budget
        self.hasher = XybridHasher()
        self.seen: list[str] = []
        self.seen_set: set[str] = set()

    def entry(self, name: str, size: int) -> None:
        problem = check_entry_name(name)
        if problem:
            raise self.reader.fail(f"entry {name!r} {problem}: refusing to extract it")
        if name in self.seen_set or name == MANIFEST_NAME:
            raise self.reader.fail(f"entry {name!r} appears more than once")
        if self.seen and name < self.seen[-1]:
            raise self.reader.fail(
                f"entry {name!r} comes after {self.seen[-1]!r}: entries must be sorted by path"
            )
        clash = next((p for p in _parents(name) if p in self.seen_set), None)
        if clash is not None:
            raise self.reader.fail(
                f"entry {name!r} needs {clash!r} as a directory, but it is a file"
            )
        if name not in self.listed:
            raise self.reader.fail(f"entry {name!r} is not listed in {MANIFEST_NAME}")
        self.seen.append(name)
        self.seen_set.add(name)
        self.hasher.add_path(name)
        if self.expected is not None:
            want = self.expected.get(name)
            if want is None:
                raise self._integrity(f"holds {name!r}, which the descriptor does not list")
            if want.size != size:
                raise self._integrity(
                    f"entry {name!r} is {size} bytes, the descriptor says {want.size}"
                )
        self.budget.take(self.reader, name, size)

    def file_digest(self, name: str, digest: str) -> None:
        want = None if self.expected is None else self.expected.get(name)
        if want is not None and want.blake3 != digest:
            raise self._integrity(
                f"entry {name!r} has BLAKE3 {digest}, the descriptor says {want.blake3}"
            )

    def finish(self) -> None:
        missing = sorted(self.listed - self.seen_set)
        if missing:
            raise self.reader.fail(
                f"{MANIFEST_NAME} lists {', '.join(map(repr, missing))} but "
                "the archive does not contain it"
            )
        if self.expected is not None:
            absent = sorted(set(self.expected) - self.seen_set)
            if absent:
                raise self._integrity(
                    f"lacks {', '.join(map(repr, absent))}, which the descriptor lists"
                )
        actual = self.hasher.finish(self.manifest)
        if actual != self.manifest.hash:
            raise self.reader.fail(
                f"{MANIFEST_NAME} says hash {self.manifest.hash!r} but the "
                f"content hashes to {actual!r}"
            )

    def _integrity(self, problem: str) -> IntegrityError:
        return IntegrityError(f"{self.reader.where}: the bundle {problem}; {self.reader.fix}")


def _parents(name: str) -> Iterator[str]:
    parts = name.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


@dataclass(frozen=True)
class Limits:
    """What a scan may cost and how a refusal ends: ``max_bytes`` of files at most (None: the
    automatic ceiling of :func:`ceiling`), and ``fix`` (what the reader should do) closing every
    message."""

    max_bytes: int | None = None
    fix: str = _REFETCH

    def ceiling(self, compressed: int) -> int:
        """The bytes a bundle of ``compressed`` bytes may extract to."""
        if self.max_bytes is not None:
            return self.max_bytes
        return min(DEFAULT_MAX_EXTRACT_BYTES, max(RATIO_FLOOR, MAX_RATIO * compressed))


def _scan(
    path: Path, expected: tuple[FileEntry, ...] | None, sink: Sink | None, limits: Limits
) -> Manifest:
    """Read and check the whole bundle, handing each file's bytes to ``sink`` when given."""
    with open(path, "rb") as handle:
        reader = _TarReader(handle, str(path), limits.fix)
        budget = _Budget(limits.ceiling(os.fstat(handle.fileno()).st_size))
        budget.check_declared(reader, expected)
        manifest = _read_manifest(reader)
        checks = _Checks(reader, manifest, expected, budget)
        while (entry := reader.next_entry()) is not None:
            name, size = entry
            checks.entry(name, size)
            write = sink(name) if sink is not None else None
            digest = blake3.blake3()
            for piece in reader.chunks(size):
                checks.hasher.update(piece)
                digest.update(piece)
                if write is not None:
                    write(piece)
            checks.file_digest(name, digest.hexdigest())
        checks.finish()
        reader.finish()
    return manifest


def verify_archive(
    xyb_path: Path, expected_files: tuple[FileEntry, ...] | None = None, limits: Limits = Limits()
) -> Manifest:
    """Check a bundle completely without extracting it; return its manifest.

    Raises BundleFormatError for anything malformed or unsafe (:class:`ExtractLimitExceeded` past
    ``limits.max_bytes``), IntegrityError when a file differs from ``expected_files`` (the
    descriptor's list; empty or None: no list, the ceiling alone bounds the bundle).
    """
    return _scan(Path(xyb_path), expected_files or None, None, limits)


class _DirSink:
    """Writes entries under a fresh directory; nothing outside it, never through a link."""

    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_BINARY", 0)

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fd: int | None = None
        self.dirs: set[Path] = {root}

    def __call__(self, name: str) -> Callable[[bytes], None]:
        self.close()
        target = self.root.joinpath(*name.split("/"))
        if target.parent not in self.dirs:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.dirs.add(target.parent)
        fd = self.fd = os.open(target, self.flags, 0o644)
        return lambda data: _write_all(fd, data)

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def safe_extract(
    xyb_path: Path,
    dest: Path,
    expected_files: tuple[FileEntry, ...] | None = None,
    limits: Limits = Limits(),
) -> Manifest:
    """Extract a bundle's files (not the manifest) into the new directory ``dest``.

    Everything is written into a temporary sibling of ``dest`` that is renamed to ``dest`` only
    when every check of :func:`verify_archive` passed (within the same ``limits``); on any
    failure it is removed and ``dest`` does not exist. Raises DestinationExists if ``dest``
    exists already.
    """
    dest = Path(dest)
    if dest.exists():
        raise DestinationExists(f"{dest} already exists: remove it, or extract somewhere else")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(dest)
    tmp.mkdir()
    sink = _DirSink(tmp)
    try:
        try:
            manifest = _scan(Path(xyb_path), expected_files or None, sink, limits)
        finally:
            sink.close()
        for directory in sorted(sink.dirs, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(directory)
        os.rename(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    fsync_dir(dest.parent)
    return manifest
