"""The catalog: merge descriptors into an :class:`~runtime.registry.wire.Index` and encode its
documents.

``index.json`` (the Index), ``index`` (its entries as a bare array, for Xybrid's ``GET /index``)
and ``v1/models`` (an OpenAI-style model list) are all derived from the same Index, so they can
never disagree. Merging enforces immutability: an (id, version, target) keeps its first digest.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from runtime.errors import ImmutableConflict, RegistryError
from runtime.names import version_key
from runtime.registry.wire import (
    BundleDescriptor,
    Index,
    ModelInfo,
    encode,
    index_entry,
    sort_descriptors,
)

INDEX_KEYS = ("index.json", "index", "v1/models")


def conflict(existing: BundleDescriptor, new: BundleDescriptor) -> ImmutableConflict:
    """The error for a published (id, version, target) rebuilt with other content."""
    return ImmutableConflict(
        f"{new.id}@{new.version} for {new.target} is already published with digest "
        f"{existing.hash}; this build produced {new.hash}. Published versions are immutable: "
        "give the changed model a new version (if no source changed, build with the --level "
        "that published it)"
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


class IndexConflict(RegistryError):
    """Raised when compare-and-swap on ``index.json`` keeps losing to other writers."""
