"""The .xyb format: headers, frames, manifest, and safe extraction of hostile bundles.

Hostile bundles are built here with ``tarfile`` and ``zstandard`` (independently of the packer),
RLE bombs and long-name chains with ``support.registries``; the Xybrid hash is recomputed in this
file with hashlib and json.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from support.registries import long_name_entry, rle_frame

from runtime.errors import BundleFormatError, IntegrityError
from runtime.registry.wire import MAX_FILES, SAFE_PATH_PATTERN, FileEntry, Manifest
from runtime.registry.xyb import (
    DEFAULT_MAX_EXTRACT_BYTES,
    MAX_RATIO,
    RATIO_FLOOR,
    DestinationExists,
    ExtractLimitExceeded,
    Limits,
    XybridHasher,
    check_entry_name,
    manifest_bytes,
    manifest_frame,
    raw_frame,
    read_manifest,
    safe_extract,
    tar_header,
    verify_archive,
    xybrid_hash,
)

FILES = {"model.onnx": b"onnx bytes " * 50, "weights/part-1.bin": os.urandom(3000)}
Member = tuple[tarfile.TarInfo, bytes | None]


def manifest_dict(files: list[str], model: str = "tiny") -> dict[str, object]:
    """Xybrid's manifest with its hash computed the way Xybrid does (SHA-256, compact JSON)."""
    fields: dict[str, object] = {
        "model_id": model,
        "version": "1.0",
        "target": "universal",
        "hash": "",
        "files": files,
        "has_metadata": "model_metadata.json" in files,
    }
    sha = hashlib.sha256()
    for path in sorted(files):
        sha.update(path.encode())
        sha.update(FILES.get(path, b""))
    sha.update(json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode())
    fields["hash"] = sha.hexdigest()
    return fields


def member(name: str, data: bytes | None = b"", **fields: object) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data) if data is not None else 0
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def manifest_member(fields: dict[str, object]) -> Member:
    return member("manifest.json", json.dumps(fields, indent=2).encode())


def good_members() -> list[Member]:
    return [manifest_member(manifest_dict(sorted(FILES)))] + [
        member(name, FILES[name]) for name in sorted(FILES)
    ]


def tar_bytes(members: list[Member]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def compress(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)


def expected() -> tuple[FileEntry, ...]:
    return tuple(
        FileEntry(p, len(d), blake3.blake3(d).hexdigest()) for p, d in sorted(FILES.items())
    )


def write(tmp_path: Path, blob: bytes) -> Path:
    path = tmp_path / "bundle.xyb"
    path.write_bytes(blob)
    return path


def all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# -- writing helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.bin", "dir/sub/file.bin", "n" * 100, "long/" + "x" * 150])
@pytest.mark.parametrize("size", [0, 1, 511, 512, 8**11 - 1, 8**11, 2**40])
def test_tar_header_reads_back_with_tarfile(name: str, size: int) -> None:
    raw = tar_header(name, size)
    with tarfile.open(fileobj=io.BytesIO(raw + bytes(1024 + size % 512)), mode="r|") as tar:
        info = tar.next()
        assert info is not None
        got = (info.name, info.size, info.mtime, info.mode, info.uid, info.gid, info.uname)
    assert got == (name, size, 0, 0o644, 0, 0, "")
    assert info.isreg()


def test_manifest_bytes_is_serde_pretty() -> None:
    manifest = Manifest("tiny", "1.0", "universal", "ab", ["a.bin", "é.bin"], False)
    assert manifest_bytes(manifest).decode() == (
        "{\n"
        '  "model_id": "tiny",\n'
        '  "version": "1.0",\n'
        '  "target": "universal",\n'
        '  "hash": "ab",\n'
        '  "files": [\n'
        '    "a.bin",\n'
        '    "é.bin"\n'
        "  ],\n"
        '  "has_metadata": false\n'
        "}"
    )


def test_xybrid_hash_matches_an_independent_computation() -> None:
    fields = manifest_dict(sorted(FILES))
    manifest = Manifest("tiny", "1.0", "universal", "ignored", sorted(FILES), False)
    assert xybrid_hash(FILES.items(), manifest) == fields["hash"]
    hasher = XybridHasher()
    for path in sorted(FILES):
        hasher.add_path(path)
        data = FILES[path]
        hasher.update(data[:7])
        hasher.update(memoryview(data)[7:])
    assert hasher.finish(manifest) == fields["hash"]


@pytest.mark.parametrize("size", [0, 1, 128 * 1024, 128 * 1024 + 1, 300_000])
def test_raw_frame_decodes_with_zstandard_and_the_zstd_cli(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    frame = raw_frame(data)
    assert zstandard.ZstdDecompressor().decompress(frame) == data
    path = write(tmp_path, frame + compress(b"second frame"))
    out = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    assert out == data + b"second frame"


def test_manifest_frame_length_does_not_depend_on_the_hash() -> None:
    base = Manifest("tiny", "1.0", "universal", "0" * 64, sorted(FILES), False)
    other = Manifest("tiny", "1.0", "universal", "f" * 64, sorted(FILES), False)
    assert len(manifest_frame(base)) == len(manifest_frame(other))


# -- reading valid bundles ----------------------------------------------------------------------


def test_a_tarfile_bundle_verifies_and_extracts(tmp_path: Path) -> None:
    path = write(tmp_path, compress(tar_bytes(good_members())))
    manifest = verify_archive(path, expected())
    assert manifest.files == sorted(FILES)
    assert manifest.hash == manifest_dict(sorted(FILES))["hash"]
    assert read_manifest(path) == manifest
    dest = tmp_path / "cache" / "tree"
    assert safe_extract(path, dest, expected()) == manifest
    assert all_files(dest) == {"model.onnx", "weights", "weights/part-1.bin"}
    assert (dest / "weights" / "part-1.bin").read_bytes() == FILES["weights/part-1.bin"]
    assert all_files(tmp_path) == {"bundle.xyb", "cache"} | {
        f"cache/tree/{p}" for p in all_files(dest)
    } | {"cache/tree"}


def test_several_frames_are_one_stream(tmp_path: Path) -> None:
    raw = tar_bytes(good_members())
    path = write(tmp_path, raw_frame(raw[:1536]) + compress(raw[1536:5000]) + compress(raw[5000:]))
    assert verify_archive(path, expected()).files == sorted(FILES)


def test_extract_refuses_an_existing_destination(tmp_path: Path) -> None:
    path = write(tmp_path, compress(tar_bytes(good_members())))
    (tmp_path / "tree").mkdir()
    with pytest.raises(DestinationExists) as caught:
        safe_extract(path, tmp_path / "tree")
    assert str(caught.value) == (
        f"{tmp_path / 'tree'} already exists: remove it, or extract somewhere else"
    )


# -- hostile bundles ----------------------------------------------------------------------------


def listed(*extra: str) -> Member:
    return manifest_member(manifest_dict(sorted([*FILES, *extra])))


def with_members(*members: Member, manifest: Member | None = None) -> bytes:
    files = [member(name, FILES[name]) for name in sorted(FILES)]
    return compress(tar_bytes([manifest or listed(), *files, *members]))


def lying_size() -> bytes:
    head = tar_bytes([listed("z.bin"), *(member(n, FILES[n]) for n in sorted(FILES))])
    body = head[: -len(tar_bytes([]))] if head.endswith(bytes(10240)) else head
    body = body.rstrip(b"\x00")
    body += bytes(-len(body) % 512)
    return compress(body + tar_header("z.bin", 4096) + b"x" * 100)


def truncated() -> bytes:
    blob = compress(tar_bytes(good_members()))
    return blob[: len(blob) // 2]


def unsorted() -> bytes:
    files = [member(name, FILES[name]) for name in sorted(FILES, reverse=True)]
    return compress(tar_bytes([listed(), *files]))


def bad_hash() -> bytes:
    fields = manifest_dict(sorted(FILES))
    fields["hash"] = "0" * 64
    return with_members(manifest=manifest_member(fields))


def flagged_metadata() -> bytes:
    fields = manifest_dict(sorted(FILES))
    fields["has_metadata"] = True
    return with_members(manifest=manifest_member(fields))


def manifest_second() -> bytes:
    files = [member(name, FILES[name]) for name in sorted(FILES)]
    return compress(tar_bytes([files[0], listed(), *files[1:]]))


def missing_file() -> bytes:
    return with_members(manifest=listed("zz.bin"))


def file_and_directory() -> bytes:
    return with_members(
        member("zz", b"a file"), member("zz/inner", b"under it"), manifest=listed("zz", "zz/inner")
    )


HOSTILE: list[tuple[str, Callable[[], bytes], str]] = [
    (
        "traversal",
        lambda: with_members(member("../../evil.txt", b"pwned")),
        "entry '../../evil.txt' climbs out of the bundle with '..': refusing to extract it",
    ),
    (
        "absolute",
        lambda: with_members(member("/tmp/evil.txt", b"pwned")),
        "entry '/tmp/evil.txt' is an absolute path: refusing to extract it",
    ),
    (
        "symlink",
        lambda: with_members(member("link", None, type=tarfile.SYMTYPE, linkname="/etc/passwd")),
        "entry 'link' is a symbolic link; a bundle holds only regular files",
    ),
    (
        "hardlink",
        lambda: with_members(member("hard", None, type=tarfile.LNKTYPE, linkname="model.onnx")),
        "entry 'hard' is a hard link; a bundle holds only regular files",
    ),
    (
        "device",
        lambda: with_members(member("dev", None, type=tarfile.CHRTYPE, devmajor=1, devminor=3)),
        "entry 'dev' is a character device; a bundle holds only regular files",
    ),
    (
        "fifo",
        lambda: with_members(member("pipe", None, type=tarfile.FIFOTYPE)),
        "entry 'pipe' is a FIFO; a bundle holds only regular files",
    ),
    (
        "directory",
        lambda: with_members(member("zdir", None, type=tarfile.DIRTYPE)),
        "entry 'zdir/' is a directory entry; a bundle holds only regular files",
    ),
    (
        "lying size",
        lying_size,
        "the archive ends early (truncated: 3996 bytes missing)",
    ),
    (
        "manifest not first",
        manifest_second,
        "the first entry must be 'manifest.json', found 'model.onnx'",
    ),
    (
        "unlisted file",
        lambda: with_members(member("zz.bin", b"extra")),
        "entry 'zz.bin' is not listed in manifest.json",
    ),
    (
        "listed file missing",
        missing_file,
        "manifest.json lists 'zz.bin' but the archive does not contain it",
    ),
    (
        "duplicate",
        lambda: with_members(member("weights/part-1.bin", b"again"), manifest=listed()),
        "entry 'weights/part-1.bin' appears more than once",
    ),
    (
        "unsorted",
        unsorted,
        "entry 'model.onnx' comes after 'weights/part-1.bin': entries must be sorted by path",
    ),
    (
        "file and directory",
        file_and_directory,
        "entry 'zz/inner' needs 'zz' as a directory, but it is a file",
    ),
    (
        "bad hash",
        bad_hash,
        f"manifest.json says hash '{'0' * 64}' but the content hashes to "
        f"'{manifest_dict(sorted(FILES))['hash']}'",
    ),
    (
        "has_metadata lies",
        flagged_metadata,
        "manifest.json says has_metadata=true but model_metadata.json is not listed",
    ),
    (
        "truncated zstd",
        truncated,
        "the archive ends early (truncated: 512 bytes missing)",
    ),
    (
        "zstd checksum cut off",
        lambda: compress(tar_bytes(good_members()))[:-2],
        "the zstd stream is truncated (its last frame is incomplete)",
    ),
    (
        "junk after the stream",
        lambda: compress(tar_bytes(good_members())) + b"junk",
        "the zstd stream is corrupt (unexpected bytes after the last zstd frame)",
    ),
    (
        "not zstd",
        lambda: tar_bytes(good_members()),
        "the zstd stream is corrupt (no zstd frame at the start: not a .xyb bundle?)",
    ),
]


@pytest.mark.parametrize(("blob", "problem"), [(b, p) for _, b, p in HOSTILE],
                         ids=[n for n, _, _ in HOSTILE])  # fmt: skip
def test_hostile_bundles_are_refused_and_leave_nothing(
    tmp_path: Path, blob: Callable[[], bytes], problem: str
) -> None:
    path = write(tmp_path, blob())
    dest = tmp_path / "a" / "b" / "tree"
    with pytest.raises(BundleFormatError) as caught:
        safe_extract(path, dest)
    assert str(caught.value) == f"{path}: {problem}; fetch or rebuild the bundle"
    assert all_files(tmp_path) == {"bundle.xyb", "a", "a/b"}
    with pytest.raises(BundleFormatError):
        verify_archive(path)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda e: FileEntry(e.path, e.size + 1, e.blake3),
            "entry 'model.onnx' is 550 bytes, the descriptor says 551",
        ),
        (
            lambda e: FileEntry(e.path, e.size, "0" * 64),
            f"entry 'model.onnx' has BLAKE3 {blake3.blake3(FILES['model.onnx']).hexdigest()}, "
            f"the descriptor says {'0' * 64}",
        ),
        (
            lambda e: FileEntry("other.onnx", e.size, e.blake3),
            "holds 'model.onnx', which the descriptor does not list",
        ),
    ],
    ids=["size", "blake3", "name"],
)
def test_files_must_match_the_descriptor(
    tmp_path: Path, change: Callable[[FileEntry], FileEntry], problem: str
) -> None:
    path = write(tmp_path, compress(tar_bytes(good_members())))
    files = expected()
    wanted = (change(files[0]), *files[1:])
    with pytest.raises(IntegrityError) as caught:
        safe_extract(path, tmp_path / "tree", wanted)
    assert str(caught.value) == f"{path}: the bundle {problem}; fetch or rebuild the bundle"
    assert all_files(tmp_path) == {"bundle.xyb"}


def test_a_file_the_descriptor_lists_must_be_present(tmp_path: Path) -> None:
    path = write(tmp_path, compress(tar_bytes(good_members())))
    wanted = (*expected(), FileEntry("zz.bin", 1, "0" * 64))
    with pytest.raises(IntegrityError) as caught:
        verify_archive(path, wanted)
    assert str(caught.value) == (
        f"{path}: the bundle lacks 'zz.bin', which the descriptor lists; "
        "fetch or rebuild the bundle"
    )


# -- bounded work: bombs, entry counts, header chains, padding ---------------------------------


def unterminated(members: list[Member]) -> bytes:
    """Tar entries as tarfile writes them, without the end-of-archive marker."""
    return b"".join(
        info.tobuf(tarfile.GNU_FORMAT) + (data or b"") + bytes(-len(data or b"") % 512)
        for info, data in members
    )


def bomb(size: int, name: str = "big.bin") -> bytes:
    """A ~65 KB bundle (for 2 GiB) whose one file is ``size`` zero bytes: manifest and header in
    a raw frame, the zeros in RLE blocks, then the end-of-archive marker."""
    head = unterminated([manifest_member(manifest_dict([name]))]) + tar_header(name, size)
    return raw_frame(head) + rle_frame(size + -size % 512 + 1024)


def extract_measured(
    path: Path, dest: Path, files: tuple[FileEntry, ...] | None, limits: Limits
) -> tuple[Exception, int]:
    """Run safe_extract expecting a refusal; (the error, peak bytes Python allocated)."""
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(BundleFormatError) as caught:
            safe_extract(path, dest, files, limits)
        return caught.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("files", [None, ()], ids=["no files list", "empty files list"])
def test_a_bomb_is_refused_before_a_byte_of_it_is_written(
    tmp_path: Path, files: tuple[FileEntry, ...] | None
) -> None:
    path = write(tmp_path, bomb(2 * 1024**3))
    assert len(path.read_bytes()) < 70_000
    dest = tmp_path / "tree"
    error, peak = extract_measured(path, dest, files, Limits(max_bytes=1024**2))
    assert isinstance(error, ExtractLimitExceeded)
    assert str(error) == (
        f"{path}: entry 'big.bin' declares 2147483648 bytes, bringing the bundle to 2147483648, "
        "over the extraction ceiling of 1048576 bytes; if you trust this bundle, raise the "
        "ceiling (--max-extract or BUNDLE_MAX_EXTRACT)"
    )
    assert peak < 4 * 1024**2
    assert all_files(tmp_path) == {"bundle.xyb"}
    with pytest.raises(ExtractLimitExceeded):
        verify_archive(path, files, Limits(max_bytes=1024**2))


def test_the_default_ceiling_holds_without_a_descriptor(tmp_path: Path) -> None:
    """100 GiB declared, nothing behind it: refused at the header, not at the missing data."""
    head = unterminated([manifest_member(manifest_dict(["huge.bin"]))])
    path = write(tmp_path, compress(head + tar_header("huge.bin", 100 * 1024**3)))
    error, _ = extract_measured(path, tmp_path / "tree", None, Limits())
    assert str(error).startswith(
        f"{path}: entry 'huge.bin' declares 107374182400 bytes, bringing the bundle to "
        f"107374182400, over the extraction ceiling of {RATIO_FLOOR} bytes; "
    )


@pytest.mark.parametrize("files", [None, ()], ids=["no files list", "empty files list"])
def test_the_automatic_ceiling_follows_the_compressed_size(
    tmp_path: Path, files: tuple[FileEntry, ...] | None
) -> None:
    """The issue's case: a 65 KB blob that would extract to 2 GiB, with no ceiling given."""
    path = write(tmp_path, bomb(2 * 1024**3))
    error, peak = extract_measured(path, tmp_path / "tree", files, Limits())
    assert isinstance(error, ExtractLimitExceeded)
    assert f"over the extraction ceiling of {RATIO_FLOOR} bytes" in str(error)
    assert peak < 4 * 1024**2
    assert all_files(tmp_path) == {"bundle.xyb"}
    assert Limits().ceiling(10 * 1024**2) == MAX_RATIO * 10 * 1024**2
    assert Limits().ceiling(1024**3) == DEFAULT_MAX_EXTRACT_BYTES
    assert Limits(max_bytes=5).ceiling(1024**3) == 5


def test_declared_sizes_add_up_before_each_entry(tmp_path: Path) -> None:
    big = {"a.bin": b"a" * 600_000, "b.bin": b"b" * 600_000}
    members = [manifest_member(manifest_dict(sorted(big)))]
    members += [member(n, d) for n, d in sorted(big.items())]
    path = write(tmp_path, compress(tar_bytes(members)))
    error, _ = extract_measured(path, tmp_path / "tree", None, Limits(max_bytes=1_000_000))
    assert "entry 'b.bin' declares 600000 bytes, bringing the bundle to 1200000, over" in str(error)
    assert all_files(tmp_path) == {"bundle.xyb"}


def test_a_descriptor_over_the_ceiling_is_refused_up_front(tmp_path: Path) -> None:
    path = write(tmp_path, compress(tar_bytes(good_members())))
    with pytest.raises(ExtractLimitExceeded) as caught:
        safe_extract(path, tmp_path / "tree", expected(), Limits(max_bytes=1000))
    assert str(caught.value) == (
        f"{path}: its descriptor lists 3550 bytes, over the extraction ceiling of 1000 bytes; "
        "if you trust this bundle, raise the ceiling (--max-extract or BUNDLE_MAX_EXTRACT)"
    )
    assert all_files(tmp_path) == {"bundle.xyb"}


def test_too_many_files_are_refused_from_the_manifest(tmp_path: Path) -> None:
    names = [f"f{i:06d}" for i in range(MAX_FILES + 1)]
    path = write(tmp_path, compress(tar_bytes([manifest_member(manifest_dict(names))])))
    with pytest.raises(BundleFormatError) as caught:
        safe_extract(path, tmp_path / "tree")
    assert str(caught.value) == (
        f"{path}: manifest.json lists 100001 files, over the limit of 100000; "
        "fetch or rebuild the bundle"
    )


def test_chained_long_names_are_refused_without_recursion(tmp_path: Path) -> None:
    head = unterminated(good_members())
    chain = b"".join(long_name_entry(b"x" * 120) for _ in range(5000))
    path = write(tmp_path, compress(head + chain + tar_bytes([member("y" * 120, b"")])))
    with pytest.raises(BundleFormatError) as caught:
        verify_archive(path)
    assert str(caught.value) == (
        f"{path}: a GNU long-name entry follows another one: an entry has at most one long name; "
        "fetch or rebuild the bundle"
    )


def test_one_long_name_per_entry_still_reads(tmp_path: Path) -> None:
    name = "weights/" + "p" * 150  # tarfile writes one ././@LongLink entry before it
    members = [manifest_member(manifest_dict([*FILES, name]))]
    members += [member(n, FILES.get(n, b"")) for n in sorted([*FILES, name])]
    path = write(tmp_path, compress(tar_bytes(members)))
    assert name in verify_archive(path).files


def test_endless_padding_after_the_end_marker_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, compress(tar_bytes(good_members())) + rle_frame(64 * 1024**2))
    with pytest.raises(BundleFormatError) as caught:
        verify_archive(path)
    assert str(caught.value) == (
        f"{path}: more than 1048576 bytes of padding follow the end-of-archive marker; "
        "fetch or rebuild the bundle"
    )


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("a\nb.bin", "contains a control character"),
        ("bell\x07", "contains a control character"),
        ("d/" + "x" * 256, "has a path component over 255 bytes"),
        ("é" * 128, "has a path component over 255 bytes"),
    ],
)
def test_entry_names_that_no_file_system_should_take(name: str, problem: str) -> None:
    assert check_entry_name(name) == problem


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(alphabet=st.sampled_from("ab./\\:\x00\n é"), max_size=12))
def test_entry_names_and_descriptor_paths_follow_one_rule(name: str) -> None:
    """What the tar reader accepts as an entry name, a descriptor may list as a path, and the
    other way round (over-long components aside, which these short names never have)."""
    accepted = check_entry_name(name) is None
    assert accepted == bool(re.search(SAFE_PATH_PATTERN, name))
