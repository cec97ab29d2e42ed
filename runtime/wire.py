"""Wire formats: one msgspec definition each, shared by the build side, the client and the service.

Static registry layout (a directory or a bucket prefix)::

    index.json                      Index: {"format", "models", "bundles"} (mutable, no-cache)
    index                           the same bundle entries as a bare JSON array (Xybrid GET /index)
    v1/models                       OpenAI-style model list {"object": "list", "data": [...]}
    index.html, models/...          browse pages (short cache)
    blobs/<blake3-hex>.xyb          bundle bytes, content-addressed, immutable
    descriptors/<id>/<version>/<target>.json
                                    one full BundleDescriptor per published bundle, written once
    aliases/<id>/<alias>.json       pointer file: the version an alias names now (mutable)
    aliases/<id>/<alias>/<seq>.json one immutable record per promotion

Entries of ``index.json`` and ``index`` are descriptors *without* ``files``, ``description`` and
``metadata`` (see :func:`index_entry`), so the index stays small (the descriptor file keeps them;
``index.json``'s ``models`` carries each model's description and metadata from its highest version).
"""

from __future__ import annotations

from typing import Any

import msgspec

from runtime.names import version_key

INDEX_FORMAT = 1


class Location(msgspec.Struct, frozen=True):
    """Where the bundle bytes live; ``url`` is relative to the registry root."""

    kind: str = "remote"
    url: str = ""


class FileEntry(msgspec.Struct, frozen=True):
    """One file inside a bundle: its path in the archive, size, and BLAKE3 of its bytes."""

    path: str
    size: int
    blake3: str


class BundleDescriptor(msgspec.Struct, frozen=True, omit_defaults=True):
    """One published bundle. The Xybrid fields come first, exactly so named; then ours."""

    id: str
    version: str
    target: str
    hash: str  # BLAKE3 hex of the .xyb file: the content address
    size_bytes: int
    location: Location
    sha256: str = ""
    model_type: str = ""
    files: tuple[FileEntry, ...] = ()
    description: str = ""
    metadata: dict[str, Any] = {}
    created_at: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        """The (id, version, target) triple that names this bundle."""
        return (self.id, self.version, self.target)


class Manifest(msgspec.Struct, frozen=True):
    """``manifest.json``, the first entry of a ``.xyb``; field order is Xybrid's."""

    model_id: str
    version: str
    target: str
    hash: str
    files: list[str]
    has_metadata: bool = False


class ModelInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """Per-model description and metadata in ``index.json`` (from the model's highest version)."""

    description: str = ""
    metadata: dict[str, Any] = {}


class Index(msgspec.Struct, frozen=True):
    """``index.json``: the catalog."""

    format: int = INDEX_FORMAT
    models: dict[str, ModelInfo] = {}
    bundles: tuple[BundleDescriptor, ...] = ()


def blob_key(digest: str) -> str:
    """Store key of a bundle blob."""
    return f"blobs/{digest}.xyb"


def descriptor_key(model: str, version: str, target: str) -> str:
    """Store key of a bundle's descriptor file."""
    return f"descriptors/{model}/{version}/{target}.json"


def index_entry(descriptor: BundleDescriptor) -> BundleDescriptor:
    """The descriptor as it appears in ``index.json`` and ``index``: without the bulky fields."""
    return msgspec.structs.replace(descriptor, files=(), description="", metadata={})


def sort_descriptors(descriptors: list[BundleDescriptor]) -> list[BundleDescriptor]:
    """Canonical order: by model id, newest version first, then target."""
    by_target = sorted(descriptors, key=lambda d: (d.id, d.target))
    newest_first = sorted(by_target, key=lambda d: version_key(d.version), reverse=True)
    return sorted(newest_first, key=lambda d: d.id)


_encoder = msgspec.json.Encoder(order="deterministic")


def encode(value: object) -> bytes:
    """Compact deterministic JSON (sorted dict keys, struct fields in declared order)."""
    return _encoder.encode(value)


def encode_pretty(value: object) -> bytes:
    """Indented JSON for files people read (descriptors, pointer files)."""
    return msgspec.json.format(_encoder.encode(value), indent=2) + b"\n"


def decode_descriptor(data: bytes) -> BundleDescriptor:
    """Parse a descriptor file (raises msgspec.ValidationError naming the bad field)."""
    return msgspec.json.decode(data, type=BundleDescriptor)


def decode_index(data: bytes) -> Index:
    """Parse ``index.json`` (raises msgspec.ValidationError naming the bad field)."""
    return msgspec.json.decode(data, type=Index)


class AliasRecord(msgspec.Struct, frozen=True):
    """``aliases/<id>/<alias>/<seq>.json``: one immutable record per promotion.

    ``prev_digest`` is the BLAKE3 hex of the previous record file's bytes ("" for seq 1), so the
    chain shows any edit or gap.
    """

    model: str
    alias: str
    version: str
    previous: str | None
    actor: str
    reason: str
    time: str  # UTC, RFC 3339
    seq: int
    prev_digest: str = ""


class AliasPointer(msgspec.Struct, frozen=True):
    """``aliases/<id>/<alias>.json``: the version an alias names now, and its record."""

    model: str
    alias: str
    version: str
    seq: int
    record_digest: str  # BLAKE3 hex of aliases/<id>/<alias>/<seq>.json
    time: str = ""


class AliasView(msgspec.Struct, frozen=True):
    """One alias of a model with its history (oldest first), for pages and listings."""

    alias: str
    version: str
    seq: int
    time: str
    actor: str
    reason: str
    history: tuple[AliasRecord, ...] = ()


class AliasIndex(msgspec.Struct, frozen=True):
    """``aliases/<id>/index.json``: a derived view of a model's aliases, rewritten after each
    promotion (no-cache) so the browse page can show current aliases without a rebuild."""

    model: str
    aliases: tuple[AliasView, ...] = ()


def alias_pointer_key(model: str, alias: str) -> str:
    """Store key of an alias pointer file."""
    return f"aliases/{model}/{alias}.json"


def alias_record_key(model: str, alias: str, seq: int) -> str:
    """Store key of one promotion record."""
    return f"aliases/{model}/{alias}/{seq}.json"


def alias_index_key(model: str) -> str:
    """Store key of a model's derived alias view."""
    return f"aliases/{model}/index.json"
