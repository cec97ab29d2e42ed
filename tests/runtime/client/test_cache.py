"""The cache directory: layout, ls, prune, last index per registry."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.registries import demo_registry

from runtime.client.cache import DAY, Cache, default_root
from runtime.client.registry import Registry
from runtime.errors import InvalidNameError
from runtime.registry.index import load_index
from runtime.storage.local import LocalStore


def test_default_root_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "bundle-registry"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home" / ".cache" / "bundle-registry"
    assert Cache().root == tmp_path / "home" / ".cache" / "bundle-registry"


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Cache, Registry, Path]:
    site = tmp_path / "site"
    demo_registry(site)
    cache = Cache(tmp_path / "cache")
    registry = Registry(str(site), cache=cache, progress=False)
    registry.fetch("tiny@1.0", "universal")
    registry.fetch("tiny@stable", "linux-x86_64")
    return cache, registry, site


def test_layout_after_fetches(filled: tuple[Cache, Registry, Path]) -> None:
    cache, registry, site = filled
    mirror = registry.mirror
    key = mirror.folder.name
    files = sorted(
        p.relative_to(cache.root).as_posix() for p in cache.root.rglob("*") if p.is_file()
    )
    digests = sorted(e.digest for e in cache.entries())
    shard = load_index(LocalStore(site)).models["tiny"].shard.hash
    assert files == sorted(
        [
            *(f"blobs/{d}.xyb" for d in digests),
            *(f"descriptors/{d}.json" for d in digests),
            f"shards/{shard}.json",
            f"registries/{key}/index.etag",
            f"registries/{key}/index.json",
            f"registries/{key}/location",
        ]
    )
    assert mirror.folder == cache.root / "registries" / key
    assert (mirror.folder / "location").read_text() == f"{site}\n"
    assert mirror.index_path.read_bytes() == (site / "index.json").read_bytes()


def test_entries_newest_first_with_labels(filled: tuple[Cache, Registry, Path]) -> None:
    cache, _, _ = filled
    old = cache.entries()[-1]
    os.utime(cache.root / "blobs" / f"{old.digest}.xyb", (1, 1))
    labels = [e.label for e in cache.entries()]
    assert labels == ["tiny@1.2 linux-x86_64", "tiny@1.0 universal"]


def test_hit_marks_the_blob_used(filled: tuple[Cache, Registry, Path]) -> None:
    cache, registry, _ = filled
    digest = registry.resolve("tiny@1.0", "universal").hash
    blob = cache.root / "blobs" / f"{digest}.xyb"
    os.utime(blob, (1, 1))
    registry.fetch("tiny@1.0", "universal")
    assert time.time() - blob.stat().st_mtime < 60


def test_prune_removes_unused_blobs_trees_descriptors_and_old_partials(
    filled: tuple[Cache, Registry, Path],
) -> None:
    cache, registry, _ = filled
    stale = registry.resolve("tiny@1.0", "universal").hash
    fresh = registry.resolve("tiny@1.2", "linux-x86_64").hash
    now = time.time()
    os.utime(cache.root / "blobs" / f"{stale}.xyb", (now - 10 * DAY, now - 10 * DAY))
    (cache.tree(stale) / "sub").mkdir(parents=True)
    old_partial = cache.root / "blobs" / f".{stale}.partial-1-aa"
    new_partial = cache.root / "blobs" / f".{fresh}.partial-2-bb"
    for partial, age in ((old_partial, 2 * DAY), (new_partial, 0)):
        partial.write_bytes(b"half")
        os.utime(partial, (now - age, now - age))
    size = (cache.root / "blobs" / f"{stale}.xyb").stat().st_size
    [shard] = (cache.root / "shards").iterdir()
    unused = shard.with_name("ab" * 32 + ".json")
    unused.write_bytes(b"an older shard")
    os.utime(unused, (now - 10 * DAY, now - 10 * DAY))

    report = cache.prune(keep_days=7, now=now)

    assert (report.blobs, report.partials, report.freed_bytes) == (1, 1, size)
    assert [e.digest for e in cache.entries()] == [fresh]
    assert not cache.tree(stale).exists()
    assert cache.descriptor(stale) is None and cache.descriptor(fresh) is not None
    assert not old_partial.exists() and new_partial.exists()
    assert shard.exists() and not unused.exists()


def test_empty_cache(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "none")
    assert cache.entries() == []
    assert cache.prune(keep_days=0).blobs == 0
    assert cache.blob("ab" * 32) is None


HOSTILE_DIGESTS = ["../../victim", "/tmp/x/victim", "AB" * 32, "ab" * 32 + "\n", "", "ab" * 31]


@pytest.mark.parametrize("digest", HOSTILE_DIGESTS)
def test_only_a_digest_names_a_cached_file(tmp_path: Path, digest: str) -> None:
    """The last guard: even a value that skipped decoding never becomes a path."""
    cache = Cache(tmp_path / "cache")
    calls: list[Callable[[], object]] = [
        lambda: cache.blob(digest),
        lambda: cache.blob_path(digest),
        lambda: cache.tree(digest),
        lambda: cache.descriptor(digest),
        lambda: cache.remove(digest),
        lambda: cache.shard(digest),
        lambda: cache.save_shard(digest, b"{}"),
    ]
    for call in calls:
        with pytest.raises(InvalidNameError) as caught:
            call()
        assert str(caught.value) == (
            f"{digest!r} is not a 64-character lowercase hex digest, so it cannot name a cached "
            "file: the registry is corrupt or hostile"
        )
    assert not (tmp_path / "cache").exists()


def test_foreign_files_in_the_cache_are_not_entries(filled: tuple[Cache, Registry, Path]) -> None:
    cache, _, _ = filled
    before = [e.digest for e in cache.entries()]
    (cache.root / "blobs" / "notes.xyb").write_bytes(b"mine")
    assert [e.digest for e in cache.entries()] == before
    assert cache.prune(keep_days=0).blobs == len(before)
    assert (cache.root / "blobs" / "notes.xyb").read_bytes() == b"mine"


def test_a_descriptor_filed_under_another_digest_is_ignored(
    filled: tuple[Cache, Registry, Path],
) -> None:
    cache, registry, _ = filled
    one = registry.resolve("tiny@1.0", "universal").hash
    other = registry.resolve("tiny@1.2", "linux-x86_64").hash
    (cache.root / "descriptors" / f"{other}.json").write_bytes(
        (cache.root / "descriptors" / f"{one}.json").read_bytes()
    )
    assert cache.descriptor(other) is None
