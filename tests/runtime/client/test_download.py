"""Blob downloads through a store: resume after a cut, a 200 to a Range request, retries,
verification, nothing unverified left behind."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import blake3
import msgspec
import pytest
from support.faults import Faults, serve
from support.registries import publish

from runtime.client.download import download_blob, is_partial_name, partial_path
from runtime.errors import IntegrityError
from runtime.registry.wire import BundleDescriptor
from runtime.storage.http import HttpStore, default_retries
from runtime.storage.local import LocalStore


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, BundleDescriptor]:
    """A registry folder with one bundle of ~10 MiB (more than two HTTP reads)."""
    root = tmp_path / "site"
    payload = os.urandom(10 << 20)
    return root, publish(root, "big", "1.0", "universal", {"weights.bin": payload})


@pytest.fixture
def faults(site: tuple[Path, BundleDescriptor]) -> Faults:
    return Faults(site[0])


@pytest.fixture
def url(faults: Faults) -> Iterator[str]:
    yield from serve(faults)


def fast_store(url: str) -> HttpStore:
    return HttpStore(url, retries=default_retries(total=3, backoff=0.01))


def leftovers(blobs: Path) -> list[str]:
    return sorted(p.name for p in blobs.iterdir()) if blobs.is_dir() else []


def test_download_verifies_and_renames(
    site: tuple[Path, BundleDescriptor], url: str, tmp_path: Path
) -> None:
    _, descriptor = site
    blobs = tmp_path / "cache" / "blobs"
    path = download_blob(fast_store(url), descriptor, blobs, progress=False)
    assert path == blobs / f"{descriptor.hash}.xyb"
    assert blake3.blake3(path.read_bytes()).hexdigest() == descriptor.hash
    assert leftovers(blobs) == [path.name]


def test_cut_body_is_resumed_with_range(
    site: tuple[Path, BundleDescriptor], faults: Faults, url: str, tmp_path: Path
) -> None:
    _, descriptor = site
    faults.cut_once.add(descriptor.location.url)
    blobs = tmp_path / "blobs"
    path = download_blob(fast_store(url), descriptor, blobs, progress=False)
    ranges = [r for p, r in faults.requests if p == descriptor.location.url]
    assert ranges[0] is None
    assert len(ranges) == 2
    assert ranges[1] == f"bytes={descriptor.size_bytes // 2}-"  # every byte received was kept
    assert blake3.blake3(path.read_bytes()).hexdigest() == descriptor.hash


def test_server_ignoring_range_sends_it_all_again_and_the_rest_is_kept(
    site: tuple[Path, BundleDescriptor], faults: Faults, url: str, tmp_path: Path
) -> None:
    _, descriptor = site
    faults.cut_once.add(descriptor.location.url)
    faults.honor_range = False
    path = download_blob(fast_store(url), descriptor, tmp_path / "blobs", progress=False)
    ranges = [r for p, r in faults.requests if p == descriptor.location.url]
    assert ranges == [None, f"bytes={descriptor.size_bytes // 2}-"]
    assert path.stat().st_size == descriptor.size_bytes
    assert blake3.blake3(path.read_bytes()).hexdigest() == descriptor.hash


def test_503_is_retried(
    site: tuple[Path, BundleDescriptor], faults: Faults, url: str, tmp_path: Path
) -> None:
    _, descriptor = site
    faults.fail_503[descriptor.location.url] = 2
    path = download_blob(fast_store(url), descriptor, tmp_path / "blobs", progress=False)
    assert faults.paths().count(descriptor.location.url) == 3
    assert path.is_file()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("bytes", "has BLAKE3 {actual}, expected {hash}"),
        ("size", "has {size_minus} bytes, expected {size}"),
    ],
)
def test_mismatch_names_both_digests_and_keeps_nothing(
    site: tuple[Path, BundleDescriptor], url: str, tmp_path: Path, change: str, expected: str
) -> None:
    root, descriptor = site
    blob = root / descriptor.location.url
    data = bytearray(blob.read_bytes())
    if change == "bytes":
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
    else:
        blob.write_bytes(bytes(data[:-1]))
    actual = blake3.blake3(bytes(data)).hexdigest()
    blobs = tmp_path / "blobs"
    with pytest.raises(IntegrityError) as caught:
        download_blob(fast_store(url), descriptor, blobs, progress=False)
    detail = expected.format(
        actual=actual,
        hash=descriptor.hash,
        size=descriptor.size_bytes,
        size_minus=descriptor.size_bytes - 1,
    )
    assert str(caught.value) == (
        f"{descriptor.location.url} from {url} (big@1.0 universal) {detail}; "
        "the blob is corrupt or the index is stale: retry, or ask the publisher to rebuild"
    )
    assert leftovers(blobs) == []


def test_the_sha256_is_left_to_verify_and_blake3_accepts_the_bytes(
    site: tuple[Path, BundleDescriptor], url: str, tmp_path: Path
) -> None:
    _, descriptor = site
    descriptor = msgspec.structs.replace(descriptor, sha256="0" * 64)  # wrong, and not computed
    path = download_blob(fast_store(url), descriptor, tmp_path / "blobs", progress=False)
    assert blake3.blake3(path.read_bytes()).hexdigest() == descriptor.hash


def test_a_download_holds_one_buffer_whatever_the_size(
    site: tuple[Path, BundleDescriptor], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, descriptor = site
    monkeypatch.setattr("runtime.client.download.CHUNK", 1 << 20)  # ten reads of the ~10 MiB
    tracemalloc.start()
    try:
        download_blob(LocalStore(root), descriptor, tmp_path / "blobs", progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (1 << 20) + (256 << 10)  # one buffer, reused: not a bytes object per piece


def test_more_bytes_than_described_stops_early(
    site: tuple[Path, BundleDescriptor], url: str, tmp_path: Path
) -> None:
    root, descriptor = site
    blob = root / descriptor.location.url
    blob.write_bytes(blob.read_bytes() + b"extra")
    with pytest.raises(IntegrityError) as caught:
        download_blob(fast_store(url), descriptor, tmp_path / "blobs", progress=False)
    assert str(caught.value) == (
        f"big@1.0 (universal): the registry sent more than the {descriptor.size_bytes} bytes its "
        "descriptor names; the blob or the index is wrong: ask the publisher to rebuild"
    )
    assert leftovers(tmp_path / "blobs") == []


def test_a_directory_blob_is_copied_the_same_way(
    site: tuple[Path, BundleDescriptor], tmp_path: Path
) -> None:
    root, descriptor = site
    path = download_blob(LocalStore(root), descriptor, tmp_path / "blobs", progress=False)
    assert path.read_bytes() == (root / descriptor.location.url).read_bytes()


def test_partial_names_are_unique_and_recognised(tmp_path: Path) -> None:
    first, second = partial_path(tmp_path, "ab" * 32), partial_path(tmp_path, "ab" * 32)
    assert first != second
    assert first.name.startswith(f".{'ab' * 32}.partial-{os.getpid()}-")
    assert is_partial_name(first.name) and not is_partial_name(f"{'ab' * 32}.xyb")


def test_progress_bar_on_request(
    site: tuple[Path, BundleDescriptor],
    url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, descriptor = site
    download_blob(fast_store(url), descriptor, tmp_path / "blobs", progress=True)
    err = capsys.readouterr().err
    assert err.startswith("\rbig@1.0:   0%|") and "/10.0M [" in err
    download_blob(fast_store(url), descriptor, tmp_path / "quiet", progress=None)
    assert capsys.readouterr().err == ""  # stderr is not a terminal here


def test_writeback_while_downloading_keeps_the_bytes_intact(
    site: tuple[Path, BundleDescriptor],
    faults: Faults,
    url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, descriptor = site
    monkeypatch.setattr("runtime.client.download.WRITEBACK_EVERY", 1 << 20)  # sync every MiB
    faults.cut_once.add(descriptor.location.url)
    path = download_blob(fast_store(url), descriptor, tmp_path / "blobs", progress=False)
    assert blake3.blake3(path.read_bytes()).hexdigest() == descriptor.hash
