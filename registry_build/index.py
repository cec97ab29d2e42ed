"""The catalog: merge descriptors into an :class:`~runtime.wire.Index` and encode its documents.

``index.json`` (the Index), ``index`` (its entries as a bare array, for Xybrid's ``GET /index``)
and ``v1/models`` (an OpenAI-style model list) are all derived from the same Index, so they can
never disagree. Merging enforces immutability: an (id, version, target) keeps its first digest.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from runtime.errors import ImmutableConflict, KeyNotFound, PreconditionFailed, RegistryError
from runtime.names import version_key
from runtime.store import PutMode, Store
from runtime.wire import (
    AliasIndex,
    BundleDescriptor,
    Index,
    ModelInfo,
    alias_index_key,
    decode_descriptor,
    decode_index,
    descriptor_key,
    encode,
    encode_pretty,
    index_entry,
    sort_descriptors,
)

INDEX_KEYS = ("index.json", "index", "v1/models")


class IndexFormatError(RegistryError, ValueError):
    """Raised when an existing ``index.json`` cannot be parsed."""


def conflict(existing: BundleDescriptor, new: BundleDescriptor) -> ImmutableConflict:
    """The error for a published (id, version, target) rebuilt with other content."""
    return ImmutableConflict(
        f"{new.id}@{new.version} for {new.target} is already published with digest "
        f"{existing.hash}; this build produced {new.hash}. Published versions are immutable: "
        "give the changed model a new version"
    )


def merge_index(index: Index, new: Iterable[BundleDescriptor]) -> Index:
    """``index`` plus ``new`` descriptors; the same digest again is a no-op.

    Raises ImmutableConflict naming both digests when a key exists with another digest.
    ``models`` follows each model's highest version.
    """
    entries = {d.key: d for d in index.bundles}
    newest: dict[str, tuple[object, ...]] = {}
    for entry in index.bundles:
        key = version_key(entry.version)
        newest[entry.id] = max(newest.get(entry.id, key), key)
    informs: dict[str, BundleDescriptor] = {}  # the new descriptor that now states each model
    for descriptor in new:
        current = entries.get(descriptor.key)
        if current is not None:
            if current.hash != descriptor.hash:
                raise conflict(current, descriptor)
            continue
        entries[descriptor.key] = index_entry(descriptor)
        key = version_key(descriptor.version)
        if descriptor.id not in newest or key >= newest[descriptor.id]:
            newest[descriptor.id] = key
            informs[descriptor.id] = descriptor
    models = {**index.models, **{m: model_info(d) for m, d in informs.items()}}
    bundles = tuple(sort_descriptors(list(entries.values())))
    return Index(models=dict(sorted(models.items())), bundles=bundles)


def model_info(descriptor: BundleDescriptor) -> ModelInfo:
    """A model's description and metadata, as the highest version's descriptor states them."""
    metadata = {k: v for k, v in descriptor.metadata.items() if k != "placeholder"}
    return ModelInfo(descriptor.description, metadata)


def index_documents(index: Index) -> dict[str, bytes]:
    """Store key -> bytes for ``index.json``, ``index`` and ``v1/models``."""
    return {
        "index.json": encode(index),
        "index": encode(index.bundles),
        "v1/models": encode(model_list(index)),
    }


def model_list(index: Index) -> dict[str, Any]:
    """The OpenAI-style ``{"object": "list", "data": [...]}`` of models with their metadata."""
    by_model: dict[str, list[BundleDescriptor]] = {}
    for entry in index.bundles:
        by_model.setdefault(entry.id, []).append(entry)
    data = []
    for model, entries in by_model.items():
        info = index.models.get(model, ModelInfo())
        versions = sorted({e.version for e in entries}, key=version_key, reverse=True)
        data.append(
            {
                **info.metadata,
                "id": model,
                "object": "model",
                "created": min(_epoch(e.created_at) for e in entries),
                "owned_by": str(info.metadata.get("source") or "bundle-registry"),
                "description": info.description,
                "versions": versions,
                "targets": sorted({e.target for e in entries}),
            }
        )
    return {"object": "list", "data": data}


@functools.lru_cache(maxsize=4096)
def _epoch(stamp: str) -> int:
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def read_index(store: Store) -> tuple[Index, str | None]:
    """The store's ``index.json`` and its etag; an empty Index and None when there is none yet."""
    try:
        data, etag = store.get("index.json")
    except KeyNotFound:
        return Index(), None
    try:
        return decode_index(data), etag
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise IndexFormatError(
            f"index.json in {store.location} is not a valid index ({exc}); "
            "rebuild it from descriptors/ with `registry-build reindex`"
        ) from None


MAX_ATTEMPTS = 8


def write_descriptors(store: Store, descriptors: Sequence[BundleDescriptor]) -> list[str]:
    """Write each descriptor create-only; an existing one with the same digest is a no-op.

    Raises ImmutableConflict naming both digests when one exists with another digest.
    Returns the keys written.
    """
    written = []
    for descriptor in descriptors:
        key = descriptor_key(*descriptor.key)
        try:
            existing = decode_descriptor(store.get(key)[0])
        except KeyNotFound:
            try:
                store.put(key, encode_pretty(descriptor), PutMode.CREATE)
                written.append(key)
                continue
            except PreconditionFailed:
                existing = decode_descriptor(store.get(key)[0])
        if existing.hash != descriptor.hash:
            raise conflict(existing, descriptor)
    return written


def update_index(store: Store, new: Sequence[BundleDescriptor]) -> tuple[Index, list[str]]:
    """Merge ``new`` into the store's index by compare-and-swap: re-read, re-merge, retry.

    Nothing is written when the merged bytes equal what is there. ``index.json`` is the document
    compare-and-swapped; ``index`` and ``v1/models`` are derived from the same merge and written
    just before it. Returns the merged index and the keys written.
    """
    for attempt in range(MAX_ATTEMPTS):
        index, etag = read_index(store)
        merged = merge_index(index, new)
        documents = index_documents(merged)
        if etag is not None and encode(index) == documents["index.json"]:
            return merged, _write_changed(
                store, {k: v for k, v in documents.items() if k != "index.json"}
            )
        try:
            mode = PutMode.CREATE if etag is None else PutMode.MATCH
            # index and v1/models first: they are derived, and index.json is the one we CAS on.
            written = _write_changed(
                store, {k: v for k, v in documents.items() if k != "index.json"}
            )
            store.put("index.json", documents["index.json"], mode, etag)
            return merged, [*written, "index.json"]
        except (PreconditionFailed, KeyNotFound):
            time.sleep(random.uniform(0, 0.05 * 2**attempt))
    raise IndexConflict(
        f"index.json in {store.location} kept changing under {MAX_ATTEMPTS} attempts to merge "
        "into it; another publisher is very busy: retry"
    )


class IndexConflict(RegistryError):
    """Raised when compare-and-swap on ``index.json`` keeps losing to other writers."""


def _write_changed(store: Store, documents: dict[str, bytes]) -> list[str]:
    written = []
    for key, data in documents.items():
        try:
            if store.get(key)[0] == data:
                continue
        except KeyNotFound:
            pass
        store.put(key, data)
        written.append(key)
    return written


def read_aliases(store: Store, models: Iterable[str]) -> dict[str, AliasIndex]:
    """Each model's derived alias view (``aliases/<id>/index.json``), where one exists."""
    views = {}
    for model in models:
        try:
            views[model] = msgspec.json.decode(
                store.get(alias_index_key(model))[0], type=AliasIndex
            )
        except (KeyNotFound, msgspec.DecodeError, msgspec.ValidationError):
            continue
    return views


def write_pages(store: Store, index: Index) -> list[str]:
    """Render the browse pages from ``index`` (and alias views) and write the ones that changed."""
    from registry_build.render import render_site  # Jinja2 only when pages are rendered

    pages = render_site(index, read_aliases(store, index.models))
    return _write_changed(store, pages)


def write_registry(store: Store, descriptors: Sequence[BundleDescriptor]) -> list[str]:
    """Content before pointers: descriptors, then the index documents, then the pages."""
    written = write_descriptors(store, descriptors)
    index, index_written = update_index(store, descriptors)
    return [*written, *index_written, *write_pages(store, index)]
