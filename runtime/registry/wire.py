"""Wire formats: one msgspec definition each, shared by the build side, the client and the service.

Static registry layout (a directory or a bucket prefix)::

    index.json                      Index (format 2): {"format", "models", "documents"} (no-cache)
                                    one ModelEntry per model: {"latest": VERSION, "shard":
                                    [BLAKE3, SIZE], "aliases": {ALIAS: VERSION}}; nothing in it
                                    grows with the number of versions
    shards/<id>/<blake3>.json       Shard: every bundle of one model (index entries) and the
                                    model's description and metadata; immutable, named by the
                                    BLAKE3 of its bytes, which index.json names with its size
    index                           every bundle entry as a bare JSON array (Xybrid GET /index);
                                    optional (``registry-build publish --no-index``)
    v1/models                       OpenAI-style model list {"object": "list", "data": [...]}
    index.html, models/...          browse pages (short cache)
    blobs/<blake3-hex>.xyb          bundle bytes, content-addressed, immutable
    descriptors/<id>/<version>/<target>.json
                                    one full BundleDescriptor per published bundle, written once
    aliases/<id>/<alias>.json       pointer file: the version an alias names now (mutable)
    aliases/<id>/<alias>/<seq>.json one immutable record per promotion

A shard's key is derived, never written: ``shards/<id>/<hash>.json`` (:func:`shard_key`), so an
index entry spends its bytes on the digest alone. An index entry's ``aliases`` is derived from the
pointer files (which stay the compare-and-swap truth that a promotion writes; a promotion then
updates this map), so a client resolves an alias from ``index.json`` without reading a pointer.
``documents`` names the BLAKE3 of the ``index`` and ``v1/models`` written for this index, so a
publisher can tell that those it reads match it before it edits them
(:mod:`registry_build.commit`).

Entries of shards and ``index`` are descriptors *without* ``files``, ``description`` and
``metadata`` (see :func:`index_entry`): a resolve needs the target, version, hash, size and url;
the descriptor file keeps the rest, and the shard keeps the description and metadata of the
model's highest version. Format 1 (:class:`IndexV1`: every entry in ``index.json``) is read only to
upgrade it.

A registry may be hostile, so every document read from one goes through :func:`decode_document`,
and its types carry their constraints: digests are 64 lowercase hex characters (``sha256`` and a
first record's ``prev_digest`` may be empty), sizes lie in 0..1 TiB (:data:`MAX_BUNDLE_BYTES`),
ids, versions, targets and aliases are names (:data:`runtime.names.NAME_PATTERN`), file paths are
safe relative paths, ``location.url`` is a relative key of plain names (the client reads the blob
from that key of the same registry; the cache names it by its digest only), and free text has no
control characters. A value that breaks a rule never leaves the decoder, so none reaches a path.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

import msgspec

from runtime.documents import quoted
from runtime.errors import CorruptDocument
from runtime.names import NAME_PATTERN, NAME_RULE, version_key, whole

INDEX_FORMAT = 2
MAX_BUNDLE_BYTES = 1 << 40  # 1 TiB: no bundle, and no file in one, is larger
MAX_FILES = 100_000  # files in one bundle
MAX_PATH = 4096  # characters of a file path inside a bundle, or of a key
MAX_SEQ = 2**31 - 1  # promotions of one alias
MAX_ACTOR = 256
MAX_REASON = 2000
MAX_STAMP = 64  # an RFC 3339 time

DIGEST_PATTERN = whole("[0-9a-f]{64}")
OPTIONAL_DIGEST_PATTERN = whole("(?:[0-9a-f]{64})?")
_PART = r"[^/\\\x00-\x1f\x7f]+"
SAFE_PATH_PATTERN = whole(rf"(?!.:)(?!(?:.*/)?\.\.?(?:/|$)){_PART}(?:/{_PART})*")
KEY_PATTERN = whole(r"(?:(?:[A-Za-z0-9][A-Za-z0-9._-]*/)*[A-Za-z0-9][A-Za-z0-9._-]*)?")
TEXT_PATTERN = whole(r"[^\x00-\x1f\x7f]*")

Digest = Annotated[str, msgspec.Meta(pattern=DIGEST_PATTERN)]
OptionalDigest = Annotated[str, msgspec.Meta(pattern=OPTIONAL_DIGEST_PATTERN)]
Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
Size = Annotated[int, msgspec.Meta(ge=0, le=MAX_BUNDLE_BYTES)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]
SafePath = Annotated[str, msgspec.Meta(max_length=MAX_PATH, pattern=SAFE_PATH_PATTERN)]
Key = Annotated[str, msgspec.Meta(max_length=MAX_PATH, pattern=KEY_PATTERN)]
Stamp = Annotated[str, msgspec.Meta(max_length=MAX_STAMP, pattern=TEXT_PATTERN)]
Actor = Annotated[str, msgspec.Meta(max_length=MAX_ACTOR, pattern=TEXT_PATTERN)]
Reason = Annotated[str, msgspec.Meta(max_length=MAX_REASON, pattern=TEXT_PATTERN)]
T = TypeVar("T")
VALUE_SHOWN = 70  # characters of a bad value quoted in a message: a whole digest, a cut novel


class Location(msgspec.Struct, frozen=True):
    """Where the bundle bytes live; ``url`` is relative to the registry root."""

    kind: str = "remote"
    url: Key = ""


class FileEntry(msgspec.Struct, frozen=True):
    """One file inside a bundle: its path in the archive, size, and BLAKE3 of its bytes."""

    path: SafePath
    size: Size
    blake3: Digest


class BundleDescriptor(msgspec.Struct, frozen=True, omit_defaults=True):
    """One published bundle. The Xybrid fields come first, exactly so named; then ours."""

    id: Name
    version: Name
    target: Name
    hash: Digest  # BLAKE3 hex of the .xyb file: the content address
    size_bytes: Size
    location: Location
    sha256: OptionalDigest = ""
    model_type: str = ""
    files: Annotated[tuple[FileEntry, ...], msgspec.Meta(max_length=MAX_FILES)] = ()
    description: str = ""
    metadata: dict[str, Any] = {}
    created_at: str = ""
    # A stand-in built from a missing source (``fallback: placeholder``); kept in index entries
    # (unlike ``metadata``) so that a client can warn before it fetches one. Absent when false.
    placeholder: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        """The (id, version, target) triple that names this bundle."""
        return (self.id, self.version, self.target)

    @property
    def blob_key(self) -> str:
        """The store key of the bundle's bytes: ``location.url``, else ``blobs/<hash>.xyb``."""
        return self.location.url or blob_key(self.hash)


class Manifest(msgspec.Struct, frozen=True):
    """``manifest.json``, the first entry of a ``.xyb``; field order is Xybrid's."""

    model_id: str
    version: str
    target: str
    hash: str
    files: list[str]
    has_metadata: bool = False


class ModelInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """A model's description and metadata (from its highest version's descriptor)."""

    description: str = ""
    metadata: dict[str, Any] = {}


class ShardRef(msgspec.Struct, frozen=True, array_like=True):
    """What a model's shard must be: the BLAKE3 of its bytes and their size, written as the pair
    ``[hash, size]`` (an index entry spends its bytes on the digest). Its key is
    ``shards/<id>/<hash>.json`` (:func:`shard_key`)."""

    hash: Digest
    size: Size


class ModelEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """One model in ``index.json``: all a resolve needs besides the shard it names."""

    latest: Name  # the highest version
    shard: ShardRef
    aliases: dict[Name, Name] = {}  # alias -> version, as the pointer files say


class Index(msgspec.Struct, frozen=True):
    """``index.json`` (format 2): one entry per model, and the digests of the ``documents``
    (``index``, ``v1/models``) written for it.

    ``signed`` is ``true`` in the index of a registry with signed metadata (``metadata/``,
    :mod:`runtime.trust`) and absent otherwise (never written as ``false``): it tells a writer
    without the signing key, before it writes anything, that it may not commit here. A client
    that verifies does not rely on it: it trusts what the metadata signed by its pinned root
    says, never this field.

    ``default`` names the registry's default model (what ``registry-runtime resolve`` without a
    model resolves); absent (never written as null) when the registry names none."""

    format: int = INDEX_FORMAT
    models: dict[Name, ModelEntry] = {}
    documents: dict[Key, Digest] = {}
    signed: bool | msgspec.UnsetType = msgspec.UNSET
    default: Name | msgspec.UnsetType = msgspec.UNSET


class Shard(msgspec.Struct, frozen=True, omit_defaults=True):
    """``shards/<id>/<blake3>.json``: every bundle of one model (index entries, by
    :func:`sort_descriptors`), with the model's description and metadata."""

    model: Name
    description: str = ""
    metadata: dict[str, Any] = {}
    bundles: tuple[BundleDescriptor, ...] = ()


class IndexV1(msgspec.Struct, frozen=True):
    """``index.json`` of format 1 (every bundle entry in the one document): read to upgrade."""

    format: int = 1
    models: dict[Name, ModelInfo] = {}
    bundles: tuple[BundleDescriptor, ...] = ()


def blob_key(digest: str) -> str:
    """Store key of a bundle blob."""
    return f"blobs/{digest}.xyb"


def descriptor_key(model: str, version: str, target: str) -> str:
    """Store key of a bundle's descriptor file."""
    return f"descriptors/{model}/{version}/{target}.json"


def shard_key(model: str, digest: str) -> str:
    """Store key of a model's shard, named by the BLAKE3 of its bytes."""
    return f"shards/{model}/{digest}.json"


def index_entry(descriptor: BundleDescriptor) -> BundleDescriptor:
    """The descriptor as it appears in shards and ``index``: without the bulky fields."""
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


def decode_document(data: bytes, kind: type[T], where: str, fix: str) -> T:
    """``data`` decoded as ``kind``, or :class:`CorruptDocument` naming ``where``, the field, its
    value and the rule it breaks, then ``fix``."""
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        problem = _field_problem(str(exc), data)
    except msgspec.DecodeError as exc:
        problem = f" is not valid JSON ({exc})"
    except RecursionError:
        problem = " nests arrays or objects too deeply to be a registry document"
    raise CorruptDocument(f"{where}{problem}; the registry is corrupt or hostile: {fix}")


_SIZE_RULE = f"is not a size from 0 to {MAX_BUNDLE_BYTES} bytes (1 TiB)"
_SEQ_RULE = f"is not a sequence number from 1 to {MAX_SEQ}"
_PATTERN_RULES = {
    DIGEST_PATTERN: "is not a 64-character lowercase hex digest",
    OPTIONAL_DIGEST_PATTERN: "is neither empty nor a 64-character lowercase hex digest",
    NAME_PATTERN: f"is not a valid name ({NAME_RULE})",
    SAFE_PATH_PATTERN: (
        "is not a safe relative path (no leading '/', drive, '.' or '..' part, empty part, "
        "backslash or control character)"
    ),
    KEY_PATTERN: "is not a relative key of letters, digits, '.', '_', '-' and '/'",
    TEXT_PATTERN: "holds a control character",
}
# msgspec's words for a broken constraint -> ours.
_RULES = {
    **{f"Expected `str` matching regex {p!r}": rule for p, rule in _PATTERN_RULES.items()},
    "Expected `int` >= 0": _SIZE_RULE,
    f"Expected `int` <= {MAX_BUNDLE_BYTES}": _SIZE_RULE,
    "Expected `int` >= 1": _SEQ_RULE,
    f"Expected `int` <= {MAX_SEQ}": _SEQ_RULE,
}
_AT = re.compile(r"(?s)(?P<text>.*?)(?: - at (?P<key>`key` in )?`(?P<path>[^`]*)`)?")
_STEP = re.compile(r"\.([^.[]+)|\[(\d+)\]")


def _field_problem(message: str, data: bytes) -> str:
    """``: $.path: 'value' breaks this rule`` from a msgspec validation message."""
    match = _AT.fullmatch(message)
    if match is None:  # not msgspec's usual shape: pass it on as it is
        return f": {message}"
    text, path = match["text"], match["path"] or "$"
    if match["key"]:
        return f": {path}: a key {_RULES.get(text, _lower(text))}"
    rule = _RULES.get(text)
    value = _value_at(data, path) if text.startswith("Expected") else None
    if value is None:
        return f": {path}: {rule or _lower(text)}"
    if rule is None:
        return f": {path}: {quoted(value[0], VALUE_SHOWN)}: {_lower(text)}"
    return f": {path}: {quoted(value[0], VALUE_SHOWN)} {rule}"


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def _value_at(data: bytes, path: str) -> tuple[object] | None:
    """The value at a msgspec path like ``$.bundles[3].hash`` (in a 1-tuple), or None."""
    try:
        value: Any = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None
    steps = list(_STEP.finditer(path[1:]))
    if "".join(step[0] for step in steps) != path[1:]:
        return None  # a step msgspec does not spell out, such as a dict value's "[...]"
    for step in steps:
        field, index = step.groups()
        try:
            value = value[field] if field is not None else value[int(index)]
        except (KeyError, IndexError, TypeError):
            return None
    return (value,)


class AliasRecord(msgspec.Struct, frozen=True):
    """``aliases/<id>/<alias>/<seq>.json``: one immutable record per promotion.

    ``prev_digest`` is the BLAKE3 hex of the previous record file's bytes ("" for seq 1), so the
    chain shows any edit or gap.
    """

    model: Name
    alias: Name
    version: Name
    previous: Name | None
    actor: Actor
    reason: Reason
    time: Stamp  # UTC, RFC 3339
    seq: Seq
    prev_digest: OptionalDigest = ""

    def __post_init__(self) -> None:
        if (self.seq == 1) != (self.prev_digest == ""):
            raise ValueError(
                f"record {self.seq} has prev_digest {quoted(self.prev_digest, VALUE_SHOWN)}: it is "
                "empty in record 1 and the digest of the record before in every later one"
            )


class AliasPointer(msgspec.Struct, frozen=True):
    """``aliases/<id>/<alias>.json``: the version an alias names now, and its record."""

    model: Name
    alias: Name
    version: Name
    seq: Seq
    record_digest: Digest  # BLAKE3 hex of aliases/<id>/<alias>/<seq>.json
    time: Stamp = ""


class AliasView(msgspec.Struct, frozen=True):
    """One alias of a model with its history (oldest first), for pages and listings."""

    alias: Name
    version: Name
    seq: Seq
    time: Stamp
    actor: Actor
    reason: Reason
    history: tuple[AliasRecord, ...] = ()


class AliasIndex(msgspec.Struct, frozen=True):
    """``aliases/<id>/index.json``: a derived view of a model's aliases, rewritten after each
    promotion (no-cache) so the browse page can show current aliases without a rebuild."""

    model: Name
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
