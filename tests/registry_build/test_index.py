"""The catalog: merge, immutability, the three documents."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from registry_build.index import index_documents, merge_index
from runtime.errors import ImmutableConflict
from runtime.registry.wire import (
    BundleDescriptor,
    FileEntry,
    Index,
    Location,
    blob_key,
    decode_index,
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


def test_merge_sorts_by_model_then_newest_version_then_target() -> None:
    new = [desc("b", "1.9"), desc("a", "1.9"), desc("a", "1.10", "linux-x86_64"), desc("a", "1.10")]
    merged = merge_index(Index(), new)
    assert [(d.id, d.version, d.target) for d in merged.bundles] == [
        ("a", "1.10", "linux-x86_64"), ("a", "1.10", "universal"), ("a", "1.9", "universal"),
        ("b", "1.9", "universal"),
    ]  # fmt: skip


def test_index_entries_drop_bulky_fields_and_models_keep_them() -> None:
    merged = merge_index(Index(), [desc("a", "2.0"), desc("a", "1.0", digest="d" * 64)])
    assert all(e.files == () and e.description == "" and e.metadata == {} for e in merged.bundles)
    assert merged.models["a"].description == "a 2.0"  # from the highest version, not the last added


def test_same_digest_again_is_a_no_op() -> None:
    once = merge_index(Index(), [desc()])
    assert merge_index(once, [desc()]) == once


def test_changed_digest_names_both() -> None:
    once = merge_index(Index(), [desc()])
    with pytest.raises(ImmutableConflict) as info:
        merge_index(once, [desc(digest="e" * 64)])
    assert str(info.value) == (
        f"tiny@1.0 for universal is already published with digest {'a' * 64}; this build produced "
        f"{'e' * 64}. Published versions are immutable: give the changed model a new version"
        " (if no source changed, build with the --level that published it)"
    )


def test_documents_agree() -> None:
    merged = merge_index(Index(), [desc("a", "1.0"), desc("a", "2.0", digest="f" * 64)])
    docs = index_documents(merged)
    assert decode_index(docs["index.json"]) == merged
    assert json.loads(docs["index"]) == json.loads(docs["index.json"])["bundles"]
    models = json.loads(docs["v1/models"])
    assert models["object"] == "list"
    (entry,) = models["data"]
    assert (
        entry["id"] == "a" and entry["object"] == "model" and entry["owned_by"] == "bundle-registry"
    )
    assert entry["created"] == int(datetime(2026, 11, 22, 8, tzinfo=UTC).timestamp())
    assert entry["license"] == "MIT"
    assert entry["versions"] == ["2.0", "1.0"]


def test_index_entry_fits_the_size_budget() -> None:
    # A realistic registry: 20 models x 5 versions x 2 targets; the per-model section amortizes.
    new = [
        desc(f"model-{m:05d}", f"1.{v}.0", t, f"{m:020x}{v:022x}{i:022x}")
        for m in range(20) for v in range(5) for i, t in enumerate(("linux-x86_64", "macos-arm64"))
    ]  # fmt: skip
    per_entry = len(index_documents(merge_index(Index(), new))["index.json"]) / len(new)
    assert per_entry <= 450, per_entry
    # Even one descriptor per model stays near the budget.
    single = [desc(f"model-{i:05d}", "1.0.0", "linux-x86_64", f"{i:064x}") for i in range(100)]
    assert len(index_documents(merge_index(Index(), single))["index.json"]) / 100 <= 500
