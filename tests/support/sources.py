"""Built registry directories for publish tests (a blob and a descriptor per bundle), a stand-in
renderer, and the consistency check every publish, commit and reindex test ends with."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import blake3

from registry_build.index import index_documents
from registry_build.publish import PublishReport, publish_registry
from runtime.registry.wire import (
    AliasIndex,
    BundleDescriptor,
    Index,
    Location,
    blob_key,
    decode_index,
    descriptor_key,
    encode_pretty,
)
from runtime.storage.store import Store

Bundle = tuple[str, str, str, bytes]  # model, version, target, payload


def make_source(root: Path, bundles: list[Bundle]) -> Path:
    """A built registry directory: a blob and a descriptor per bundle."""
    for model, version, target, payload in bundles:
        digest = blake3.blake3(payload).hexdigest()
        blob = root / blob_key(digest)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(payload)
        descriptor = BundleDescriptor(
            id=model,
            version=version,
            target=target,
            hash=digest,
            size_bytes=len(payload),
            location=Location("remote", blob_key(digest)),
            sha256=hashlib.sha256(payload).hexdigest(),
            description=f"{model} model",
            created_at="2026-11-22T08:00:00Z",
        )
        path = root / descriptor_key(model, version, target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_pretty(descriptor))
    return root


def bundles(model: str, versions: range, size: int = 2000) -> list[Bundle]:
    """One universal bundle per version with distinct random bytes."""
    return [(model, f"1.{v}", "universal", os.urandom(size)) for v in versions]


def pages(index: Index, aliases: dict[str, AliasIndex]) -> dict[str, bytes]:
    """A small stand-in for the browse pages: one list page and one page per model."""
    found = {"index.html": "".join(f"<li>{d.id}@{d.version} {d.target}" for d in index.bundles)}
    for model in index.models:
        found[f"models/{model}.html"] = f"<h1>{model}</h1>{aliases.get(model)}"
    return {key: text.encode() for key, text in found.items()}


def assert_consistent(store: Store) -> Index:
    """index, v1/models and pages derive from index.json; every blob it names is complete."""
    data, _ = store.get("index.json")
    index = decode_index(data)
    for key, expected in {**index_documents(index), **pages(index, {})}.items():
        assert store.get(key)[0] == expected, key
    for entry in index.bundles:
        blob, _ = store.get(blob_key(entry.hash))
        assert (len(blob), blake3.blake3(blob).hexdigest()) == (entry.size_bytes, entry.hash)
    return index


def publish(src: Path, store: Store) -> PublishReport:
    """Publish the built registry ``src`` to ``store`` with the stand-in pages, quietly."""
    return publish_registry(src, store, progress=False, render=pages)
