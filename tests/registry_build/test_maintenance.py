"""reindex, verify and gc on directories and on S3 (moto's server over HTTP)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import blake3
import msgspec
import pytest
from support.sources import (
    QUIET,
    assert_consistent,
    bundles,
    catalog_of,
    make_source,
    publish,
)

from registry_build.destination import CountingStore
from registry_build.maintenance import gc, reindex, verify
from runtime.aliases import promote
from runtime.errors import CorruptDocument
from runtime.registry.index import IndexFormatError, NoIndex, OlderIndexFormat
from runtime.registry.wire import (
    IndexV1,
    ModelInfo,
    blob_key,
    descriptor_key,
    encode,
    encode_pretty,
    shard_key,
)
from runtime.storage.store import Store


def test_reindex_rebuilds_from_descriptors_without_reading_a_blob(
    dest: Store, tmp_path: Path
) -> None:
    publish(make_source(tmp_path / "src", bundles("tiny", range(3)) + bundles("b", range(2))), dest)
    promote(dest, "tiny", "prod", "1.1", "ci", "")
    expected = dest.get("index.json")[0]
    assert b'"aliases":{"prod":"1.1"}' in expected
    shards = [i.key for i in dest.list("shards/")]
    for key in [*shards, "index"]:
        dest.delete(key)
    dest.put("index.json", b"{not json")
    counting = ReadSpy(dest)
    written = reindex(counting, options=QUIET)
    assert {*shards, "index", "index.json"} <= set(written)  # and the pages showing the alias
    assert dest.get("index.json")[0] == expected  # the alias map from the pointer file too
    assert not [key for key in counting.read if key.startswith("blobs/")]
    assert_consistent(dest)


class ReadSpy(CountingStore):
    """Remembers which keys were read."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.read: list[str] = []

    def get(
        self, key: str, if_none_match: str | None = None, limit: int | None = None
    ) -> tuple[bytes, str]:
        self.read.append(key)
        return super().get(key, if_none_match, limit)


def format_1(dest: Store, src: Path) -> bytes:
    """Make ``dest`` a registry as version 1 published it: descriptors, blobs, a pointer, and an
    index.json of format 1 holding every entry; returns its bytes."""
    publish(src, dest)
    promote(dest, "tiny", "prod", "1.0", "ci", "")
    catalog = catalog_of(dest)[1]
    for info in list(dest.list("shards/")):
        dest.delete(info.key)
    models = {m: ModelInfo(i.description, i.metadata) for m, i in catalog.models.items()}
    old = encode(IndexV1(models=models, bundles=catalog.bundles))
    dest.put("index.json", old)
    return old


@pytest.mark.parametrize("upgrade", ["reindex", "publish"])
def test_a_format_1_registry_is_upgraded(dest: Store, tmp_path: Path, upgrade: str) -> None:
    format_1(
        dest, make_source(tmp_path / "src", bundles("tiny", range(2)) + bundles("b", range(1)))
    )
    with pytest.raises(OlderIndexFormat) as caught:
        verify(dest)
    assert str(caught.value) == (
        f"{dest.location}/index.json has format 1, older than the 2 this version of "
        "bundle-registry reads: upgrade the registry to format 2 with `registry-build reindex "
        "DEST` (a publish to it upgrades it too), or ask the publisher to"
    )
    if upgrade == "reindex":
        reindex(dest, options=QUIET)
    else:
        publish(make_source(tmp_path / "new", bundles("tiny", range(2, 3))), dest)
    index, catalog = catalog_of(dest)
    assert (index.format, index.models["tiny"].aliases) == (2, {"prod": "1.0"})
    assert len(catalog.bundles) == (3 if upgrade == "reindex" else 4)
    assert [i.key for i in dest.list("shards/")] == sorted(
        shard_key(m, e.shard.hash) for m, e in index.models.items()
    )
    assert_consistent(dest)
    assert verify(dest)[1] == []


def test_verify_checks_each_shard_against_index_descriptors_and_blobs(
    dest: Store, tmp_path: Path
) -> None:
    publish(make_source(tmp_path / "src", bundles("tiny", range(2)) + bundles("b", range(1))), dest)
    index = catalog_of(dest)[0]
    tiny = shard_key("tiny", index.models["tiny"].shard.hash)
    tampered = dest.get(tiny)[0].replace(b'"1.1"', b'"1.7"')
    dest.put(tiny, tampered)
    key = descriptor_key("b", "1.0", "universal")
    descriptor = msgspec.json.decode(dest.get(key)[0])
    dest.put(key, encode_pretty({**descriptor, "hash": "0" * 64}))
    checked, problems = verify(dest)
    assert checked == 1  # the blob of b: tiny's shard cannot be used
    assert sorted(map(str, problems)) == [
        f"b@1.0 (universal): {key} names blob {'0' * 64} (2000 bytes), the shard names "
        f"{descriptor['hash']} (2000 bytes)",
        f"tiny: {tiny} cannot be used: {dest.location}/{tiny} has BLAKE3 "
        f"{blake3.blake3(tampered).hexdigest()}, index.json names "
        f"{index.models['tiny'].shard.hash}; the shard is corrupt or index.json is stale: retry, "
        "or rebuild it from descriptors/ with `registry-build reindex` (or ask the publisher to)",
    ]


def test_gc_collects_shards_index_json_no_longer_names_after_the_grace(
    dest: Store, tmp_path: Path
) -> None:
    publish(make_source(tmp_path / "src", bundles("tiny", range(2))), dest)
    old = [i.key for i in dest.list("shards/")]
    publish(make_source(tmp_path / "src", bundles("tiny", range(2, 3))), dest)
    current = shard_key("tiny", catalog_of(dest)[0].models["tiny"].shard.hash)
    assert sorted(i.key for i in dest.list("shards/")) == sorted([*old, current])
    week = 7 * 86400
    assert gc(dest, week, dry_run=False) == []  # the old shard is young: a reader may use it
    doomed = gc(dest, week, dry_run=False, now=time.time() + week + 60)
    assert [i.key for i in doomed] == old
    assert [i.key for i in dest.list("shards/")] == [current]
    assert verify(dest)[1] == []


def test_verify_reports_missing_and_corrupt_blobs_by_bundle(dest: Store, tmp_path: Path) -> None:
    made = [("tiny", "1.0", "universal", b"one"), ("tiny", "1.1", "linux-x86_64", b"two"),
            ("tiny", "1.2", "universal", b"three")]  # fmt: skip
    publish(make_source(tmp_path / "src", made), dest)
    assert verify(dest) == (3, [])
    one, two = (blake3.blake3(p).hexdigest() for p in (b"one", b"two"))
    dest.delete(blob_key(one))
    dest.put(blob_key(two), b"twx")
    checked, problems = verify(dest)
    assert checked == 3
    assert sorted(map(str, problems)) == [
        f"tiny@1.0 (universal): blobs/{one}.xyb is missing",
        f"tiny@1.1 (linux-x86_64): blobs/{two}.xyb has BLAKE3 "
        f"{blake3.blake3(b'twx').hexdigest()}, the index names {two}",
    ]


def test_gc_deletes_only_unreferenced_blobs_older_than_the_grace(
    dest: Store, tmp_path: Path
) -> None:
    publish(make_source(tmp_path / "src", bundles("tiny", range(2))), dest)
    dest.put("blobs/" + "f" * 64 + ".xyb", b"orphan")
    kept = sorted(i.key for i in dest.list("blobs/"))[:2]
    week = 7 * 86400
    assert gc(dest, week, dry_run=True) == []  # everything is young
    doomed = gc(dest, week, dry_run=True, now=time.time() + week + 60)
    assert [(i.key, i.size) for i in doomed] == [("blobs/" + "f" * 64 + ".xyb", 6)]
    assert len(list(dest.list("blobs/"))) == 3  # a dry run deletes nothing
    gc(dest, week, dry_run=False, now=time.time() + week + 60)
    assert sorted(i.key for i in dest.list("blobs/")) == sorted(
        k for k in kept if not k.startswith("blobs/fff")
    )
    assert verify(dest)[1] == []


def test_gc_keeps_blobs_of_descriptors_not_yet_indexed(dest: Store, tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", [("tiny", "1.0", "universal", b"pending")])
    digest = blake3.blake3(b"pending").hexdigest()
    dest.put_file(blob_key(digest), src / blob_key(digest))
    key = descriptor_key("tiny", "1.0", "universal")
    dest.put(key, (src / key).read_bytes())
    assert gc(dest, 0, dry_run=False, now=time.time() + 3600) == []
    assert msgspec.json.decode(dest.get(key)[0])["hash"] == digest


def test_reindex_never_overwrites_a_newer_index_format(dest: Store, tmp_path: Path) -> None:
    publish(make_source(tmp_path / "src", bundles("tiny", range(2))), dest)
    newer = b'{"format": 3, "models": {}}'
    dest.put("index.json", newer)
    with pytest.raises(IndexFormatError, match=r"index\.json has format 3, newer than the 2 "):
        reindex(dest, options=QUIET)
    assert dest.get("index.json")[0] == newer


def test_verify_without_an_index_says_what_to_do(dest: Store) -> None:
    with pytest.raises(NoIndex) as caught:
        verify(dest)
    assert str(caught.value) == (
        f"{dest.location} has no index.json: publish or build a registry there first"
    )


@pytest.mark.parametrize("run", [reindex, lambda store: gc(store, 0, dry_run=True)])
def test_a_deeply_nested_descriptor_is_named_not_a_crash(
    dest: Store, tmp_path: Path, run: Callable[[Store], object]
) -> None:
    publish(make_source(tmp_path / "src", bundles("tiny", range(1))), dest)
    key = "descriptors/zzz/1.0/universal.json"
    dest.put(key, b'{"metadata": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001)
    with pytest.raises(CorruptDocument) as caught:
        run(dest)
    assert str(caught.value) == (
        f"{dest.location}/{key} nests arrays or objects too deeply to be a registry document; "
        "the registry is corrupt or hostile: fix or remove it, then run the command again"
    )


def test_reindex_keeps_the_default_model_the_index_names(dest: Store, tmp_path: Path) -> None:
    from dataclasses import replace

    source = make_source(tmp_path / "src", bundles("tiny", range(2)) + bundles("b", range(1)))
    publish(source, dest, replace(QUIET, default="b"))
    reindex(dest, options=QUIET)
    assert catalog_of(dest)[0].default == "b"
    assert assert_consistent(dest).default == "b"
