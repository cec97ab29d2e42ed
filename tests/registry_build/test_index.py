"""The catalog: shards (merge, immutability), index.json entries, and the outside documents made
whole or edited."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import blake3
import pytest

from registry_build.index import (
    Catalog,
    merge_shard,
    model_card,
    model_entry,
    outside_documents,
    shard_bytes,
    splice_entries,
    splice_models,
)
from runtime.errors import ImmutableConflict
from runtime.registry.wire import (
    BundleDescriptor,
    FileEntry,
    Index,
    Location,
    ModelInfo,
    Shard,
    blob_key,
    encode,
)


def desc(
    model: str = "tiny",
    version: str = "1.0",
    target: str = "universal",
    digest: str = "a" * 64,
    **extra: object,
) -> BundleDescriptor:
    return BundleDescriptor(
        id=model, version=version, target=target, hash=digest, size_bytes=1234,
        location=Location("remote", blob_key(digest)), sha256="b" * 64, model_type="onnx",
        files=(FileEntry("model.onnx", 1000, "c" * 64),), description=f"{model} {version}",
        metadata={"license": "MIT"}, created_at="2026-11-22T08:00:00Z", **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_shard_sorts_newest_version_first_then_target() -> None:
    new = [desc("a", "1.9"), desc("a", "1.10", "linux-x86_64"), desc("a", "1.10")]
    shard = merge_shard(None, "a", new)
    assert [(d.version, d.target) for d in shard.bundles] == [
        ("1.10", "linux-x86_64"), ("1.10", "universal"), ("1.9", "universal"),
    ]  # fmt: skip


def test_shard_entries_drop_bulky_fields_and_the_shard_keeps_the_newest_description() -> None:
    shard = merge_shard(None, "a", [desc("a", "2.0"), desc("a", "1.0", digest="d" * 64)])
    assert all(e.files == () and e.description == "" and e.metadata == {} for e in shard.bundles)
    assert (shard.description, shard.metadata) == ("a 2.0", {"license": "MIT"})
    older = merge_shard(shard, "a", [desc("a", "0.9", digest="e" * 64)])
    assert older.description == "a 2.0"  # from the highest version, not the last added


def test_same_digest_again_is_a_no_op() -> None:
    once = merge_shard(None, "tiny", [desc()])
    assert merge_shard(once, "tiny", [desc()]) == once


def test_changed_digest_names_both() -> None:
    once = merge_shard(None, "tiny", [desc()])
    with pytest.raises(ImmutableConflict) as info:
        merge_shard(once, "tiny", [desc(digest="e" * 64)])
    assert str(info.value) == (
        f"tiny@1.0 for universal is already published with digest {'a' * 64}; this build produced "
        f"{'e' * 64}. Published versions are immutable: give the changed model a new version"
        " (if no source changed, build with the --level that published it)"
    )


def test_an_entry_names_its_shard_by_digest_and_size() -> None:
    shard = merge_shard(None, "a", [desc("a", "1.9"), desc("a", "1.10", digest="f" * 64)])
    data = shard_bytes(shard)
    entry = model_entry(shard, data, {"prod": "1.9"})
    assert (entry.latest, entry.aliases) == ("1.10", {"prod": "1.9"})
    assert (entry.shard.hash, entry.shard.size) == (blake3.blake3(data).hexdigest(), len(data))


def test_documents_agree() -> None:
    shard = merge_shard(None, "a", [desc("a", "1.0"), desc("a", "2.0", digest="f" * 64)])
    catalog = Catalog.of(
        Index(models={"a": model_entry(shard, shard_bytes(shard), {})}), {"a": shard}
    )
    docs = outside_documents(catalog)
    assert json.loads(docs["index"]) == json.loads(encode(shard.bundles))
    models = json.loads(docs["v1/models"])
    assert models["object"] == "list"
    (entry,) = models["data"]
    assert (
        entry["id"] == "a" and entry["object"] == "model" and entry["owned_by"] == "bundle-registry"
    )
    assert entry["created"] == int(datetime(2026, 11, 22, 8, tzinfo=UTC).timestamp())
    assert entry["license"] == "MIT"
    assert entry["versions"] == ["2.0", "1.0"]
    assert sorted(outside_documents(catalog, xybrid_index=False)) == ["v1/models"]


def _catalog(shards: dict[str, Shard]) -> Catalog:
    entries = {m: model_entry(s, shard_bytes(s), {}) for m, s in shards.items()}
    return Catalog.of(Index(models=entries), shards)


@pytest.mark.parametrize("seed", range(8))
def test_an_edited_document_is_byte_for_byte_the_whole_one(seed: int) -> None:
    rng = random.Random(seed)
    models = [f"m{n:02d}" for n in range(12)]

    def some_shard(model: str, versions: int) -> Shard:
        found = [
            desc(model, f"1.{v}", t, f"{rng.getrandbits(256):064x}")
            for v in range(versions)
            for t in rng.sample(["universal", "linux-x86_64", "macos-arm64"], 2)
        ]
        return merge_shard(None, model, found)

    before = {m: some_shard(m, rng.randint(1, 4)) for m in rng.sample(models, 8)}
    after = dict(before)
    changed: dict[str, Shard | None] = {}
    for model in rng.sample(models, 5):  # new models, new versions, and models gone
        new = None if model in after and rng.random() < 0.3 else some_shard(model, 3)
        changed[model] = new
        after.pop(model, None)
        if new is not None:
            after[model] = new
    old = outside_documents(_catalog(before))
    cards = {
        m: s and model_card(m, ModelInfo(s.description, s.metadata), list(s.bundles))
        for m, s in changed.items()
    }
    whole = outside_documents(_catalog(after))
    assert splice_models(old["v1/models"], cards) == whole["v1/models"]
    assert splice_entries(old["index"], changed) == whole["index"]


def test_index_json_stays_within_150_bytes_per_model() -> None:
    """The benchmark's shape: 5 versions x 4 targets per model, one alias each."""
    targets = ("linux-x86_64", "linux-arm64", "macos-arm64", "universal")
    entries = {}
    for m in range(200):
        model = f"model-{m:04d}"
        found = [
            desc(model, f"1.{v}", t, f"{m:020x}{v:022x}{i:022x}")
            for v in range(5)
            for i, t in enumerate(targets)
        ]
        shard = merge_shard(None, model, found)
        entries[model] = model_entry(shard, shard_bytes(shard), {"prod": "1.3"})
    index = Index(models=entries, documents={"v1/models": "0" * 64, "index": "1" * 64})
    assert len(encode(index)) / 200 <= 150
