"""The commit: how a build records descriptors into its own directory, and what a publish ends
with: descriptors create-only, then the index and pages by compare-and-swap."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from support.sources import pages

from registry_build.commit import commit
from runtime.errors import CorruptDocument, ImmutableConflict
from runtime.registry.index import IndexFormatError
from runtime.registry.wire import BundleDescriptor, Location, blob_key, decode_index
from runtime.storage.local import LocalStore


def desc(model: str = "tiny", version: str = "1.0", digest: str = "a" * 64) -> BundleDescriptor:
    return BundleDescriptor(
        id=model, version=version, target="universal", hash=digest, size_bytes=1234,
        location=Location("remote", blob_key(digest)), created_at="2026-11-22T08:00:00Z",
    )  # fmt: skip


def test_commit_writes_nothing_when_unchanged(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    written = commit(store, [desc()], render=pages)
    assert written == [
        "descriptors/tiny/1.0/universal.json", "index", "v1/models", "index.html",
        "models/tiny.html", "index.json",
    ]  # fmt: skip
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert commit(store, [desc()], render=pages) == []
    assert before == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}


def test_concurrent_commits_lose_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    barrier = threading.Barrier(8)

    def publish(i: int) -> None:
        barrier.wait()
        for j in range(5):
            commit(store, [desc(f"m{i}", f"1.{j}", digest=f"{i * 10 + j:064x}")], render=pages)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(decode_index(store.get("index.json")[0]).bundles) == 40
    assert json.loads(store.get("index")[0]) == json.loads(store.get("index.json")[0])["bundles"]


def test_descriptor_conflict_names_both_digests(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert commit(store, [desc()], render=pages)[0] == "descriptors/tiny/1.0/universal.json"
    assert commit(store, [desc()], render=pages) == []
    with pytest.raises(
        ImmutableConflict,
        match=f"already published with digest {'a' * 64}; this build produced {'9' * 64}",
    ):
        commit(store, [desc(digest="9" * 64)], render=pages)


def test_a_newer_index_format_is_refused_and_never_overwritten(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    newer = b'{"format": 2, "models": {}}'
    store.put("index.json", newer)
    with pytest.raises(IndexFormatError, match=r"index\.json has format 2, newer than the 1 "):
        commit(store, [desc()], render=pages)
    assert store.get("index.json")[0] == newer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]


def test_a_broken_descriptor_left_by_a_crashed_publish_is_named(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    key = "descriptors/tiny/1.0/universal.json"
    store.put(key, b'{"id": "tiny"}')
    with pytest.raises(CorruptDocument) as caught:
        commit(store, [desc()], render=pages)
    assert str(caught.value) == (
        f"{tmp_path}/{key}: $: object missing required field `version`; the registry is corrupt "
        "or hostile: no index.json names it, so delete it and run the command again"
    )


def test_an_unreadable_alias_view_is_left_out_of_the_pages(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("aliases/tiny/index.json", b'{"model": "../x", "aliases": []}')
    assert "models/tiny.html" in commit(store, [desc()], render=pages)
    assert store.get("models/tiny.html")[0] == b"<h1>tiny</h1>None"
