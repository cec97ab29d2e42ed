"""The commit: how a build records descriptors into its own directory, and what a publish ends
with: descriptors create-only, then shards, documents and pages, then index.json by
compare-and-swap; the documents made whole, or edited for a large registry."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import blake3
import pytest
from support.sources import QUIET, assert_consistent, catalog_of

from registry_build.commit import Options, commit
from registry_build.index import outside_documents
from registry_build.render import Site, render_site
from runtime.aliases import promote
from runtime.aliases.view import read_view
from runtime.errors import CorruptDocument, ImmutableConflict
from runtime.registry.index import IndexFormatError
from runtime.registry.wire import BundleDescriptor, Location, blob_key, shard_key
from runtime.storage.local import LocalStore
from runtime.storage.store import Store

EDITED = replace(QUIET, whole_models=0)  # every registry is "large": its documents are edited


def desc(model: str = "tiny", version: str = "1.0", digest: str = "a" * 64) -> BundleDescriptor:
    return BundleDescriptor(
        id=model, version=version, target="universal", hash=digest, size_bytes=1234,
        location=Location("remote", blob_key(digest)), created_at="2026-11-22T08:00:00Z",
        description=f"{model} at {version}", metadata={"tags": ["llm", model]},
    )  # fmt: skip


def shard_of(store: Store, model: str) -> str:
    return shard_key(model, catalog_of(store)[0].models[model].shard.hash)


def test_commit_writes_content_first_and_nothing_when_unchanged(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    written = commit(store, [desc()], options=QUIET)
    assert written == [
        "descriptors/tiny/1.0/universal.json", shard_of(store, "tiny"), "v1/models", "index",
        "index.html", "models/tiny.html", "index.json",
    ]  # fmt: skip
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert commit(store, [desc()], options=QUIET) == []
    assert before == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("options", [QUIET, EDITED], ids=["whole", "edited"])
def test_concurrent_commits_lose_nothing(tmp_path: Path, options: Options) -> None:
    store = LocalStore(tmp_path)
    barrier = threading.Barrier(8)

    def publish(i: int) -> None:
        barrier.wait()
        for j in range(5):
            commit(store, [desc(f"m{i}", f"1.{j}", digest=f"{i * 10 + j:064x}")], options=options)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(assert_consistent(store, blobs=False).bundles) == 40


def test_descriptor_conflict_names_both_digests(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert commit(store, [desc()], options=QUIET)[0] == "descriptors/tiny/1.0/universal.json"
    assert commit(store, [desc()], options=QUIET) == []
    with pytest.raises(
        ImmutableConflict,
        match=f"already published with digest {'a' * 64}; this build produced {'9' * 64}",
    ):
        commit(store, [desc(digest="9" * 64)], options=QUIET)


def test_a_newer_index_format_is_refused_and_never_overwritten(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    newer = b'{"format": 3, "models": {}}'
    store.put("index.json", newer)
    with pytest.raises(IndexFormatError, match=r"index\.json has format 3, newer than the 2 "):
        commit(store, [desc()], options=QUIET)
    assert store.get("index.json")[0] == newer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]


def test_a_broken_descriptor_left_by_a_crashed_publish_is_named(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    key = "descriptors/tiny/1.0/universal.json"
    store.put(key, b'{"id": "tiny"}')
    with pytest.raises(CorruptDocument) as caught:
        commit(store, [desc()], options=QUIET)
    assert str(caught.value) == (
        f"{tmp_path}/{key}: $: object missing required field `version`; the registry is corrupt "
        "or hostile: no index.json names it, so delete it and run the command again"
    )


def test_an_unreadable_alias_view_is_left_out_of_the_pages(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    commit(store, [desc()], options=QUIET)
    promote(store, "tiny", "prod", "1.0", "ci", "")
    assert "models/tiny.html" in commit(store, [], refresh=["tiny"], options=QUIET)
    assert store.get("models/tiny.html")[0].startswith(b"<h1>tiny</h1>1 AliasIndex(")
    store.put("aliases/tiny/index.json", b'{"model": "../x", "aliases": []}')
    assert "models/tiny.html" in commit(store, [], refresh=["tiny"], options=QUIET)
    assert store.get("models/tiny.html")[0] == b"<h1>tiny</h1>1 None"
    assert (
        store.get("index.html")[0] == b"<li>tiny@1.0 1 [('prod', '1.0')] False"
    )  # from index.json


# -- edited documents ----------------------------------------------------------------------------


def test_edited_pages_are_the_whole_pages(tmp_path: Path) -> None:
    """A large registry renders only the pages of the models a commit touches and the list pages
    whose rows changed; what it leaves is what a whole render would write."""
    store = LocalStore(tmp_path)
    site = Site(budget=66_000)  # a list of several pages
    options = Options(whole_models=3, pages=site)
    for n in range(40):
        commit(store, [desc(f"m{n % 20:02d}", f"1.{n // 20}", f"{n:064x}")], options=options)
    fronts = sorted(p.name for p in tmp_path.glob("index*.html"))
    assert len(fronts) >= 3
    promote(store, "m07", "stable", "1.0", "ana", "")
    written = commit(store, [desc("m07", "1.2", "f" * 64)], options=options)
    [front] = [k for k in written if k.startswith("index") and k.endswith(".html")]  # m07 is here
    assert b"models/m07.html" in store.get(front)[0]
    assert [k for k in written if k.startswith("models/")] == ["models/m07.html"]
    promote(store, "m12", "prod", "1.1", "ana", "")
    written = commit(store, [], refresh=["m12"], options=options)
    assert sorted(k for k in written if k.endswith(".html")) == [*fronts, "models/m12.html"]
    index, catalog = catalog_of(store)
    views = {m: v for m in index.models if (v := read_view(store, m)[0]) and v.aliases}
    pages = render_site(catalog, views, budget=66_000, split=True)
    assert {k: store.get(k)[0] for k in pages} == pages
    for key, data in outside_documents(catalog).items():
        assert store.get(key)[0] == data


def test_documents_a_loser_wrote_are_not_edited_but_made_whole(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for n in range(3):
        commit(store, [desc(f"m{n}", "1.0", f"{n:064x}")], options=EDITED)
    # A publisher wrote its v1/models, then lost the race for index.json and died.
    store.put("v1/models", b'{"object": "list", "data": [{"id": "phantom"}]}')
    commit(store, [desc("m3", "1.0", "e" * 64)], options=EDITED)
    assert b"phantom" not in store.get("v1/models")[0]
    assert len(assert_consistent(store, blobs=False).bundles) == 4


def test_without_index_it_stays_as_it_was_until_asked_for_again(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    off = replace(EDITED, xybrid_index=False)
    commit(store, [desc("a", "1.0", "a" * 64), desc("b", "1.0", "b" * 64)], options=EDITED)
    kept = store.get("index")[0]
    commit(store, [desc("a", "1.1", "c" * 64)], options=off)
    assert store.get("index")[0] == kept
    assert sorted(catalog_of(store)[0].documents) == ["v1/models"]
    assert_consistent(store, xybrid_index=False, blobs=False)
    commit(store, [desc("b", "1.1", "d" * 64)], options=EDITED)  # on again: made whole
    catalog = assert_consistent(store, blobs=False)
    assert (
        blake3.blake3(store.get("index")[0]).hexdigest()
        == (catalog_of(store)[0].documents["index"])
    )
    assert len(catalog.bundles) == 4


def test_without_model_list_v1_models_and_list_pages_stay_until_asked_for_again(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    off = replace(EDITED, model_list=False)
    commit(store, [desc("a", "1.0", "a" * 64), desc("b", "1.0", "b" * 64)], options=EDITED)
    kept = {k: store.get(k)[0] for k in ("v1/models", "index.html")}
    written = commit(store, [desc("c", "1.0", "c" * 64)], options=off)
    assert "models/c.html" in written and "index" in written
    assert {k: store.get(k)[0] for k in kept} == kept
    assert sorted(catalog_of(store)[0].documents) == ["index"]
    commit(store, [desc("a", "1.1", "d" * 64)], options=EDITED)  # on again: made whole
    assert len(assert_consistent(store, blobs=False).bundles) == 4


@pytest.mark.parametrize("options", [QUIET, EDITED], ids=["whole", "edited"])
def test_the_default_model_moves_between_cards(tmp_path: Path, options: Options) -> None:
    store = LocalStore(tmp_path)
    first = [desc(m, "1.0", f"{n:064x}") for n, m in enumerate("abc")]
    commit(store, first, options=replace(options, default="a"))
    assert catalog_of(store)[0].default == "a"
    assert assert_consistent(store, blobs=False).default == "a"
    commit(store, [desc("c", "1.1", "f" * 64)], options=replace(options, default="b"))
    assert assert_consistent(store, blobs=False).default == "b"  # v1/models and pages agree
    commit(store, [], options=options)  # UNSET: kept
    assert catalog_of(store)[0].default == "b"
    commit(store, [], options=replace(options, default=None))
    assert catalog_of(store)[1].default is None
    assert b'"default"' not in store.get("v1/models")[0] + store.get("index.json")[0]
