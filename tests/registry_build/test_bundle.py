"""Packing .xyb bundles: round trip, determinism, the digest cache, bad input.

Bundles are read back with ``zstandard`` and ``tarfile`` (and the ``zstd``/``tar`` CLIs), and the
Xybrid hash is recomputed here with hashlib and json, independently of ``runtime.registry.xyb``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import blake3
import pytest
import zstandard

from registry_build.bundle import (
    READ_CHUNK,
    DigestCache,
    PackError,
    PackResult,
    SourceChanged,
    SourceFile,
    SourceLinkError,
    open_no_links,
    pack,
)
from runtime.documents import quoted
from runtime.errors import MissingSourceError
from runtime.registry.wire import FileEntry
from runtime.registry.xyb import safe_extract, verify_archive

CONTENT = {
    "model.onnx": b"onnx " * 1000,
    "weights/part-1.bin": os.urandom(READ_CHUNK + 12345),  # more than one read chunk
    "weights/deep/part-2.bin": bytes(range(256)) * 300,
    "empty.bin": b"",
}
METADATA = b'{"files": ["model.onnx"], "notes": "caf\xc3\xa9"}'


def make_sources(root: Path, order: list[str] | None = None) -> list[SourceFile]:
    """The CONTENT files written under ``root`` (in ``order``), plus generated metadata."""
    for name in order or list(CONTENT):
        path = root.joinpath(*name.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(CONTENT[name])
    files = [SourceFile(name, path=root.joinpath(*name.split("/"))) for name in CONTENT]
    return [*files, SourceFile("model_metadata.json", data=METADATA)]


def unpack(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Every member of a bundle, read with zstandard (across frames) and tarfile."""
    with open(path, "rb") as handle:
        reader = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True)
        raw = reader.read()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]


def independent_hash(manifest: dict[str, object], files: dict[str, bytes]) -> str:
    sha = hashlib.sha256()
    for name in sorted(files):
        sha.update(name.encode())
        sha.update(files[name])
    blank = dict(manifest, hash="")
    sha.update(json.dumps(blank, separators=(",", ":"), ensure_ascii=False).encode())
    return sha.hexdigest()


def pack_into(root: Path, files: list[SourceFile], **options: object) -> tuple[Path, PackResult]:
    dest = root / "out" / "bundle.xyb"
    return dest, pack("tiny", "1.0", "linux-x86_64", files, dest, **options)  # type: ignore[arg-type]


def test_round_trip(tmp_path: Path) -> None:
    dest, result = pack_into(tmp_path, make_sources(tmp_path / "src"))
    members = unpack(dest)
    names = [m.name for m, _ in members]
    everything = {**CONTENT, "model_metadata.json": METADATA}
    assert names == ["manifest.json", *sorted(everything)]
    assert all(m.isreg() and m.mtime == 0 and m.mode == 0o644 for m, _ in members)
    assert {(m.uid, m.gid, m.uname, m.gname) for m, _ in members} == {(0, 0, "", "")}
    assert {m.name: data for m, data in members[1:]} == everything
    manifest = json.loads(members[0][1])
    assert list(manifest) == ["model_id", "version", "target", "hash", "files", "has_metadata"]
    assert members[0][1] == json.dumps(manifest, indent=2, ensure_ascii=False).encode()
    assert manifest["files"] == sorted(everything)
    assert manifest["has_metadata"] is True
    assert manifest["hash"] == independent_hash(manifest, everything)
    blob = dest.read_bytes()
    assert (result.blake3, result.sha256, result.size) == (
        blake3.blake3(blob).hexdigest(),
        hashlib.sha256(blob).hexdigest(),
        len(blob),
    )
    assert result.manifest.hash == manifest["hash"]
    assert result.files == tuple(
        FileEntry(n, len(d), blake3.blake3(d).hexdigest()) for n, d in sorted(everything.items())
    )
    assert verify_archive(dest, result.files) == result.manifest


def test_the_zstd_and_tar_tools_read_it(tmp_path: Path) -> None:
    dest, _ = pack_into(tmp_path, make_sources(tmp_path / "src"))
    listing = subprocess.run(
        f"zstd -dc '{dest}' | tar -tf -", shell=True, capture_output=True, text=True, check=True
    )
    assert listing.stdout.splitlines() == [
        "manifest.json",
        *sorted([*CONTENT, "model_metadata.json"]),
    ]


def test_extracts_to_the_same_files(tmp_path: Path) -> None:
    dest, result = pack_into(tmp_path, make_sources(tmp_path / "src"))
    tree = tmp_path / "tree"
    safe_extract(dest, tree, result.files)
    for name, data in CONTENT.items():
        assert (tree / name).read_bytes() == data


def test_no_metadata_means_has_metadata_false(tmp_path: Path) -> None:
    dest, result = pack_into(tmp_path, make_sources(tmp_path / "src")[:-1])
    assert result.manifest.has_metadata is False
    assert json.loads(unpack(dest)[0][1])["has_metadata"] is False


def test_byte_identical_whatever_the_disk_says(tmp_path: Path) -> None:
    first_src, second_src = tmp_path / "one", tmp_path / "two" / "deeper"
    first = make_sources(first_src)
    old_umask = os.umask(0o077)
    try:
        second = make_sources(second_src, order=sorted(CONTENT, reverse=True))
    finally:
        os.umask(old_umask)
    for index, source in enumerate(second[:-1]):
        assert source.path is not None
        os.utime(source.path, ns=(10**18 + index, 10**18 + index))
        os.chmod(source.path, 0o600)
    _, a = pack_into(tmp_path / "a", first, threads=1)
    dest_b, b = pack_into(tmp_path / "b", list(reversed(second)), threads=3)
    assert (a.blake3, a.sha256, a.size, a.manifest) == (b.blake3, b.sha256, b.size, b.manifest)
    assert (tmp_path / "a" / "out" / "bundle.xyb").read_bytes() == dest_b.read_bytes()


def test_level_changes_the_bytes_not_the_content(tmp_path: Path) -> None:
    files = make_sources(tmp_path / "src")
    _, fast = pack_into(tmp_path / "a", files, level=1)
    _, small = pack_into(tmp_path / "b", files, level=9)
    assert fast.blake3 != small.blake3
    assert (fast.manifest, fast.files) == (small.manifest, small.files)


def test_the_cache_skips_pass_one(tmp_path: Path) -> None:
    files = make_sources(tmp_path / "src")
    total = sum(len(d) for d in CONTENT.values())
    cache_path = tmp_path / "state" / "digests.json"
    cache = DigestCache(cache_path)
    _, cold = pack_into(tmp_path / "a", files, digests=cache)
    assert cold.read_bytes == 2 * total
    cache.save()
    reloaded = DigestCache(cache_path)
    _, warm = pack_into(tmp_path / "b", files, digests=reloaded)
    assert warm.read_bytes == total
    assert (warm.blake3, warm.files) == (cold.blake3, cold.files)


def test_the_cache_trusts_stat_alone(tmp_path: Path) -> None:
    """Same size, mtime and inode but other bytes: the cached hash is used, proving that pass 1
    (the only reader whose result goes into the manifest hash) did not run."""
    files = make_sources(tmp_path / "src")
    cache = DigestCache()
    _, cold = pack_into(tmp_path / "a", files, digests=cache)
    before = cache.fingerprint(files)
    target = tmp_path / "src" / "model.onnx"
    st = target.stat()
    with open(target, "r+b") as handle:
        handle.write(b"ONNX")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.fingerprint(files) == before
    _, warm = pack_into(tmp_path / "b", files, digests=cache)
    assert warm.manifest.hash == cold.manifest.hash
    assert warm.files == cold.files
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert cache.fingerprint(files) != before


def test_a_new_version_reuses_file_digests_but_rehashes(tmp_path: Path) -> None:
    files = make_sources(tmp_path / "src")
    cache = DigestCache()
    pack_into(tmp_path / "a", files, digests=cache)
    result = pack("tiny", "1.1", "linux-x86_64", files, tmp_path / "b.xyb", digests=cache)
    assert result.read_bytes == 2 * sum(len(d) for d in CONTENT.values())
    members = unpack(tmp_path / "b.xyb")
    manifest = json.loads(members[0][1])
    assert manifest["version"] == "1.1"
    assert manifest["hash"] == independent_hash(
        manifest, {**CONTENT, "model_metadata.json": METADATA}
    )


def test_a_damaged_cache_file_is_an_empty_cache(tmp_path: Path) -> None:
    cache_path = tmp_path / "digests.json"
    cache_path.write_text("{not json")
    files = make_sources(tmp_path / "src")
    _, result = pack_into(tmp_path, files, digests=DigestCache(cache_path))
    assert result.read_bytes == 2 * sum(len(d) for d in CONTENT.values())


@pytest.mark.parametrize(
    ("arcname", "problem"),
    [
        ("../escape.bin", "climbs out of the bundle with '..'"),
        ("/abs.bin", "is an absolute path"),
        ("a//b.bin", "has an empty or '.' path component"),
        ("dir\\b.bin", "contains a backslash or NUL"),
        ("manifest.json", "is reserved for the bundle's manifest"),
        ("model.onnx", "is given more than once"),
    ],
)
def test_bad_arcnames(tmp_path: Path, arcname: str, problem: str) -> None:
    files = [SourceFile("model.onnx", data=b"x"), SourceFile(arcname, data=b"y")]
    with pytest.raises(PackError) as caught:
        pack_into(tmp_path, files)
    assert str(caught.value) == (
        f"arcname {arcname!r} {problem}: use a unique relative path like 'model.onnx' or "
        "'weights/part-1.bin'"
    )
    assert not (tmp_path / "out").exists()


def test_a_file_cannot_also_be_a_directory(tmp_path: Path) -> None:
    files = [SourceFile("model", data=b"x"), SourceFile("model/part.bin", data=b"y")]
    with pytest.raises(PackError) as caught:
        pack_into(tmp_path, files)
    assert str(caught.value) == (
        "arcname 'model/part.bin' needs 'model' as a directory, but 'model' is also a file: "
        "rename one of them"
    )


@pytest.mark.parametrize(
    ("fields", "got"), [({}, "neither"), ({"path": Path("x"), "data": b"x"}, "both")]
)
def test_source_file_needs_path_or_data(fields: dict[str, object], got: str) -> None:
    with pytest.raises(PackError) as caught:
        SourceFile("model.onnx", **fields)  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"SourceFile 'model.onnx': give exactly one of path= or data= (got {got})"
    )


def test_missing_source(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    with pytest.raises(MissingSourceError) as caught:
        pack_into(tmp_path, [SourceFile("model.onnx", path=missing)])
    assert str(caught.value) == (
        f"{missing}: source for 'model.onnx' does not exist; create it or fix the path"
    )


def test_no_files(tmp_path: Path) -> None:
    with pytest.raises(PackError) as caught:
        pack_into(tmp_path, [])
    assert str(caught.value) == "a bundle needs at least one file; none were given"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")
def test_a_source_that_changes_while_read_leaves_nothing(tmp_path: Path) -> None:
    """/proc files stat as 0 bytes but read as more: the size check must catch it."""
    dest = tmp_path / "out" / "bundle.xyb"
    dest.parent.mkdir()
    dest.write_bytes(b"previous")
    files = [SourceFile("a.bin", data=b"a"), SourceFile("status", path=Path("/proc/self/status"))]
    with pytest.raises(SourceChanged) as caught:
        pack("tiny", "1.0", "universal", files, dest)
    assert str(caught.value).startswith(
        "/proc/self/status changed while it was being packed as 'status' (expected 0 bytes, read "
    )
    assert str(caught.value).endswith("): rebuild once it is stable")
    assert [p.name for p in dest.parent.iterdir()] == ["bundle.xyb"]
    assert dest.read_bytes() == b"previous"


def test_a_source_that_is_a_link_is_not_packed(tmp_path: Path) -> None:
    link = tmp_path / "passwd.bin"
    link.symlink_to("/etc/passwd")
    with pytest.raises(SourceLinkError) as caught:
        pack_into(tmp_path, [SourceFile("passwd.bin", path=link)])
    assert str(caught.value) == (
        f"{link} is a symbolic link to '/etc/passwd': links are not packed; "
        "replace it with the file itself"
    )
    assert not (tmp_path / "out").exists()


def test_a_link_swapped_in_above_a_checked_file_is_not_followed(tmp_path: Path) -> None:
    """The config checked ``src/sub/m.bin``; then ``sub`` became a link to another directory
    that holds an ``m.bin`` too. The open, one component at a time, refuses it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "m.bin").write_bytes(b"secret")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "sub").symlink_to(elsewhere)
    source = SourceFile("m.bin", path=tmp_path / "src" / "sub" / "m.bin", beneath=tmp_path / "src")
    with pytest.raises(SourceLinkError) as caught:
        pack_into(tmp_path, [source])
    assert str(caught.value) == (
        f"{tmp_path / 'src' / 'sub'} is a symbolic link to {quoted(str(elsewhere))}: links are "
        "not packed; replace it with the file itself"
    )
    assert not (tmp_path / "out" / "bundle.xyb").exists()


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    with pytest.raises(PackError) as caught:
        open_no_links(fifo, tmp_path)
    assert str(caught.value) == f"{fifo} is not a regular file: a bundle holds files only"
