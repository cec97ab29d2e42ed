"""The catalog: merge descriptors into a model's shard, make its ``index.json`` entry, and make
the documents that outsiders read.

::

    shards/<id>/<blake3>.json   one Shard per model state (:func:`merge_shard`, :func:`shard_bytes`)
    index.json                  one ModelEntry per model (:func:`model_entry`)
    index                       every bundle entry, a bare array (Xybrid's GET /index): optional
    v1/models                   an OpenAI-style model list, one card per model (:func:`model_card`):
                                optional (``--no-model-list``); the default model's card says
                                ``"default": true``

Merging enforces immutability: an (id, version, target) keeps its first digest. ``index`` and
``v1/models`` are made whole from a :class:`Catalog` (every shard; :func:`outside_documents`), or
edited: the previous document with the entries of the models whose shard changed replaced
(:func:`splice_models`, :func:`splice_entries`). Both ways give the same bytes: entries are
encoded one way (sorted keys), models in id order, a model's bundles in
:func:`runtime.registry.wire.sort_descriptors` order; an edit copies the other models' entries
byte for byte.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import blake3
import msgspec

from runtime.errors import ImmutableConflict, RegistryError
from runtime.names import version_key
from runtime.registry.wire import (
    BundleDescriptor,
    Index,
    ModelEntry,
    ModelInfo,
    Shard,
    ShardRef,
    encode,
    index_entry,
    sort_descriptors,
)

XYBRID_INDEX = "index"
MODEL_LIST = "v1/models"
VERSIONS_LISTED = 10  # versions a card of v1/models names (newest first): it must not grow


def conflict(existing: BundleDescriptor, new: BundleDescriptor) -> ImmutableConflict:
    """The error for a published (id, version, target) rebuilt with other content."""
    return ImmutableConflict(
        f"{new.id}@{new.version} for {new.target} is already published with digest "
        f"{existing.hash}; this build produced {new.hash}. Published versions are immutable: "
        "give the changed model a new version (if no source changed, build with the --level "
        "that published it)"
    )


@dataclass(frozen=True)
class Catalog:
    """What the pages, ``index`` and ``v1/models`` derive from: each model's description and
    metadata, every bundle entry, each model's alias map (as ``index.json`` holds it) and the
    registry's default model (None: it names none)."""

    models: dict[str, ModelInfo] = field(default_factory=dict)
    bundles: tuple[BundleDescriptor, ...] = ()
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)
    default: str | None = None

    @classmethod
    def of(cls, index: Index, shards: Mapping[str, Shard]) -> Catalog:
        """The catalog of ``index``, whose every model's shard ``shards`` holds (by model)."""
        ordered = [shards[model] for model in sorted(index.models)]
        return cls(
            {s.model: ModelInfo(s.description, s.metadata) for s in ordered},
            tuple(b for s in ordered for b in s.bundles),
            {m: dict(index.models[m].aliases) for m in sorted(index.models)},
            default_of(index),
        )


def default_of(index: Index) -> str | None:
    """The default model ``index`` names, or None."""
    return index.default if isinstance(index.default, str) else None


def merge_shard(shard: Shard | None, model: str, new: Iterable[BundleDescriptor]) -> Shard:
    """``shard`` (None: the model's first) plus the ``new`` descriptors of ``model``; the same
    digest again is a no-op. Raises ImmutableConflict naming both digests when a key exists with
    another digest. The description and metadata follow the model's highest version."""
    current = shard or Shard(model)
    entries = {b.key: b for b in current.bundles}
    top = max((version_key(b.version) for b in current.bundles), default=None)
    informs: BundleDescriptor | None = None  # the new descriptor that now states the model
    for descriptor in new:
        held = entries.get(descriptor.key)
        if held is not None:
            if held.hash != descriptor.hash:
                raise conflict(held, descriptor)
            continue
        entries[descriptor.key] = entry_of(descriptor)
        key = version_key(descriptor.version)
        if top is None or key >= top:
            top, informs = key, descriptor
    info = model_info(informs) if informs else ModelInfo(current.description, current.metadata)
    bundles = tuple(sort_descriptors(list(entries.values())))
    return Shard(model, info.description, info.metadata, bundles)


def entry_of(descriptor: BundleDescriptor) -> BundleDescriptor:
    """The descriptor as shards and ``index`` hold it (:func:`runtime.registry.wire.index_entry`),
    still marked when it is a placeholder: descriptors of earlier versions say so only in their
    metadata, which an entry leaves out."""
    entry = index_entry(descriptor)
    if descriptor.metadata.get("placeholder") is True and not entry.placeholder:
        return msgspec.structs.replace(entry, placeholder=True)
    return entry


def model_info(descriptor: BundleDescriptor) -> ModelInfo:
    """A model's description and metadata, as the highest version's descriptor states them."""
    metadata = {k: v for k, v in descriptor.metadata.items() if k != "placeholder"}
    return ModelInfo(descriptor.description, metadata)


def shard_bytes(shard: Shard) -> bytes:
    """The bytes a shard is stored as (and named by the BLAKE3 of)."""
    return encode(shard)


def model_entry(shard: Shard, data: bytes, aliases: Mapping[str, str]) -> ModelEntry:
    """The ``index.json`` entry of the shard stored as ``data``, with the model's alias map."""
    latest = max((b.version for b in shard.bundles), key=version_key)
    ref = ShardRef(blake3.blake3(data).hexdigest(), len(data))
    return ModelEntry(latest, ref, dict(sorted(aliases.items())))


# -- the documents outsiders read --------------------------------------------------------------


def outside_documents(
    catalog: Catalog, xybrid_index: bool = True, model_list: bool = True
) -> dict[str, bytes]:
    """Store key -> bytes of ``v1/models`` (with ``model_list``) and ``index`` (with
    ``xybrid_index``), made whole."""
    documents = {MODEL_LIST: encode(model_cards(catalog))} if model_list else {}
    if xybrid_index:
        documents[XYBRID_INDEX] = encode(catalog.bundles)
    return documents


def model_cards(catalog: Catalog) -> dict[str, Any]:
    """The OpenAI-style ``{"object": "list", "data": [...]}`` of models with their metadata."""
    by_model: dict[str, list[BundleDescriptor]] = {}
    for entry in catalog.bundles:
        by_model.setdefault(entry.id, []).append(entry)
    data = [
        model_card(model, catalog.models.get(model, ModelInfo()), entries, catalog.default)
        for model, entries in sorted(by_model.items())
    ]
    return {"object": "list", "data": data}


def model_card(
    model: str, info: ModelInfo, entries: list[BundleDescriptor], default: str | None = None
) -> dict[str, Any]:
    """One model of ``v1/models``: its metadata, then the OpenAI fields, then ours. Nothing in
    it grows with the model's versions: ``versions`` names the newest :data:`VERSIONS_LISTED`,
    ``version_count`` says how many there are. ``"default": true`` marks the registry's default
    model (a metadata key of that name is left out: only this card may say it)."""
    versions = sorted({e.version for e in entries}, key=version_key, reverse=True)
    card = {
        **{k: v for k, v in info.metadata.items() if k != "default"},
        "id": model,
        "object": "model",
        "created": min(_epoch(e.created_at) for e in entries),
        "owned_by": str(info.metadata.get("source") or "bundle-registry"),
        "description": info.description,
        "versions": versions[:VERSIONS_LISTED],
        "version_count": len(versions),
        "targets": sorted({e.target for e in entries}),
    }
    return {**card, "default": True} if model == default else card


@functools.lru_cache(maxsize=4096)
def _epoch(stamp: str) -> int:
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


class _Named(msgspec.Struct):
    """The model id of an entry of ``index`` or ``v1/models`` (the rest stays as it is)."""

    id: str


class _ModelList(msgspec.Struct):
    data: list[msgspec.Raw]


_named = msgspec.json.Decoder(_Named)


def splice_models(previous: bytes, cards: Mapping[str, dict[str, Any] | None]) -> bytes:
    """``v1/models`` as ``previous`` with the card of each model in ``cards`` replaced (None:
    removed), in id order. Raises msgspec errors when ``previous`` is not such a list."""
    old = msgspec.json.decode(previous, type=_ModelList).data
    kept = {_named.decode(raw).id: [raw] for raw in old}
    return encode({"object": "list", "data": _spliced(kept, cards)})


def splice_entries(previous: bytes, shards: Mapping[str, Shard | None]) -> bytes:
    """``index`` as ``previous`` with every entry of each model in ``shards`` replaced by its
    shard's (None: removed); the other models' entries keep their bytes and order."""
    kept: dict[str, list[Any]] = {}
    for raw in msgspec.json.decode(previous, type=list[msgspec.Raw]):
        kept.setdefault(_named.decode(raw).id, []).append(raw)
    return encode(_spliced(kept, {m: s and list(s.bundles) for m, s in shards.items()}))


def _spliced(kept: dict[str, list[Any]], new: Mapping[str, Any]) -> list[Any]:
    """The entries of every model, in id order: ``new``'s where it names the model (a list of
    entries, one entry, or None for none), else those ``kept``."""
    merged: dict[str, list[Any]] = {**kept}
    for model, entries in new.items():
        merged.pop(model, None)
        if entries is not None:
            merged[model] = entries if isinstance(entries, list) else [entries]
    return [entry for model in sorted(merged) for entry in merged[model]]


class IndexConflict(RegistryError):
    """Raised when compare-and-swap on ``index.json`` keeps losing to other writers."""
