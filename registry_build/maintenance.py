"""Keeping a published registry healthy: rebuild its index, verify it, collect garbage.

Each works on a store as :mod:`registry_build.publish` leaves it::

    DEST/
      descriptors/<id>/<v>/<t>.json   the truth: reindex rebuilds everything below from these
      aliases/<id>/<alias>.json       ... and the alias maps of index.json from these
      shards/<id>/<blake3>.json       reindex: one per model (create-only); verify: each checked
                                      against index.json, its descriptors and blobs; gc: deleted
                                      when index.json no longer names it, after the grace period
      index.json, index, v1/models    reindex: rebuilt (by compare-and-swap, registry_build.commit)
      index.html, models/...          reindex: re-rendered
      blobs/<blake3>.xyb              verify: stream-hashed; gc: deleted when nothing names them
                                      and they are older than the grace period
      metadata/N.{targets,snapshot}.json, targets/<sha256>.index.json
                                      (signed) gc: deleted when older than the version the
                                      timestamp names and than the grace period (roots never)

None of them reads a blob except ``verify``, and none of them overwrites an ``index.json`` of a
newer format than this version writes. ``reindex`` upgrades a registry of format 1 (so does the
next publish); ``verify`` and ``gc`` read format 2 only and say to reindex first.

On a signed registry (``metadata/``, :mod:`runtime.trust`) ``reindex`` commits by signing, with
the online key (refused before anything is written without it), and ``verify`` also checks the
signed metadata as a client would: every root of the chain, the signatures, versions and expiry
of timestamp, snapshot and targets, and ``index.json`` against the hash they sign.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import blake3
import msgspec

from registry_build.commit import DEFAULTS, Options, Plan, commit_index
from registry_build.destination import View
from registry_build.state import Published, Shards, build_state, pointer_aliases, shards_from
from runtime.errors import CorruptDocument, KeyNotFound, RegistryError
from runtime.registry.head import marked_signed, read_head
from runtime.registry.index import (
    INDEX_KEY,
    NoIndex,
    decode_published,
    index_format,
    read_index,
    read_shard,
)
from runtime.registry.wire import (
    BundleDescriptor,
    Index,
    Shard,
    blob_key,
    decode_document,
    descriptor_key,
    shard_key,
)
from runtime.storage.store import ObjectInfo, Store

CHUNK = 1 << 20
_BLOB_KEY = re.compile(r"^blobs/[0-9a-f]{64}\.xyb$")
_SHARD_KEY = re.compile(r"^shards/[A-Za-z0-9][A-Za-z0-9._-]*/[0-9a-f]{64}\.json$")
_SIGNED_INDEX_KEY = re.compile(r"^targets/[0-9a-f]{64}\.index\.json$")
_VERSIONED_KEY = re.compile(r"^metadata/([1-9][0-9]{0,18})\.(?:targets|snapshot)\.json$")


def read_descriptors(store: Store) -> list[BundleDescriptor]:
    """Every descriptor under ``descriptors/`` (never a blob); a bad one is named, not skipped."""
    return [_read_descriptor(store, info.key) for info in store.list("descriptors/")]


def _read_descriptor(store: Store, key: str) -> BundleDescriptor:
    fix = "fix or remove it, then run the command again"
    return decode_document(store.get(key)[0], BundleDescriptor, f"{store.location}/{key}", fix)


class NothingToIndex(RegistryError, FileNotFoundError):
    """Raised when ``reindex`` finds no descriptor at the destination (a typo in the location,
    an empty prefix) and was not asked to initialise an empty registry there."""


def reindex(dest: Store, *, options: Options = DEFAULTS, init: bool = False) -> list[str]:
    """Rebuild the shards, ``index.json`` (its alias maps from the pointer files, its default
    model kept), ``index``, ``v1/models`` and the pages from ``descriptors/`` alone; returns the
    keys written. A destination without descriptors is refused (:class:`NothingToIndex`)
    unless ``init``: then an empty registry is written there.

    Descriptors with the same (id, version, target) twice cannot exist (their key is that
    triple), so the rebuild cannot conflict. Each round reads the descriptors and pointers again
    after ``index.json``, so what a publisher or a promotion committed meanwhile is kept.
    """
    if not init and next(iter(dest.list("descriptors/")), None) is None:
        raise NothingToIndex(
            f"{dest.location} holds no descriptors/ to rebuild an index from: check the location "
            "(reindexing a typo would start an empty registry there), or pass --init to start "
            "an empty registry on purpose"
        )
    shards = Shards(dest)

    def rebuilt(state: Published) -> Plan:
        made = shards_from(read_descriptors(dest))
        aliases = pointer_aliases(dest, [shard.model for shard in made])
        fresh = build_state(made, aliases, shards, state)
        index = msgspec.structs.replace(fresh.index, default=_kept_default(state, fresh.index))
        return Plan(index, fresh.unwritten)

    view, first = View(dest, listed=True), _replaceable(dest, shards)
    whole = replace(options, rewrite=True)
    return commit_index(dest, view, shards, rebuilt, first, whole, _replaceable)


def _replaceable(store: Store, shards: Shards) -> Published:
    """The head of the store (its etag: on a signed registry, what the metadata says too),
    whatever ``index.json`` holds (reindex replaces even one that no longer parses), unless it is
    of a newer format (IndexFormatError): that one is never overwritten. Of what it holds, only
    the default model is kept (in the index returned)."""
    head = read_head(store)
    if head.data is None:
        return Published()
    with contextlib.suppress(CorruptDocument):
        index_format(head.data, f"{store.location}/{INDEX_KEY}")
    default: str | msgspec.UnsetType = msgspec.UNSET
    with contextlib.suppress(CorruptDocument):
        found = decode_published(head.data, f"{store.location}/{INDEX_KEY}")
        default = found.default if isinstance(found, Index) else msgspec.UNSET
    return Published(Index(default=default), head.etag, head.data, signed=head.signed)


def _kept_default(state: Published, index: Index) -> str | msgspec.UnsetType:
    """The default model ``state`` names, if ``index`` still holds that model."""
    default = state.index.default
    return default if isinstance(default, str) and default in index.models else msgspec.UNSET


@dataclass(frozen=True)
class Problem:
    """One thing ``verify`` found wrong: a shard, a descriptor or a blob, of a bundle or model."""

    label: str  # model@version (target), or the model for its shard
    key: str
    what: str

    def __str__(self) -> str:
        return f"{self.label}: {self.key} {self.what}"


def _label(descriptor: BundleDescriptor) -> str:
    return f"{descriptor.id}@{descriptor.version} ({descriptor.target})"


def verify(dest: Store, *, workers: int = 4) -> tuple[int, list[Problem]]:
    """Check every shard ``index.json`` names (digest, model, highest version), each of its
    bundles against its descriptor file, and stream-hash every blob; returns (blobs checked,
    problems found)."""
    index, etag = read_index(dest)
    if etag is None:
        raise NoIndex(
            f"{dest.location} has no {INDEX_KEY}: publish or build a registry there first"
        )
    problems = _signed_problems(dest)
    shard_problems, bundles = _check_shards(dest, index)
    with ThreadPoolExecutor(workers) as pool:
        found = list(pool.map(lambda d: _verify_one(dest, d), bundles))
    return len(bundles), problems + shard_problems + [p for one in found for p in one]


def _signed_problems(dest: Store) -> list[Problem]:
    """What a client verifying from the registry's first root would refuse (none when the
    registry is not signed)."""
    if not marked_signed(dest.get(INDEX_KEY)[0]):
        return []
    from runtime.trust import require_trust

    require_trust(f"{dest.location} is signed: verifying it")
    from runtime.trust.client import TrustError, check_signed

    try:
        report = check_signed(dest, None)
    except (TrustError, KeyNotFound) as exc:
        return [Problem("signed metadata", "metadata/", f"is refused: {exc}")]
    if report.index_current:
        return []
    what = "is not the index the metadata signs (the next commit brings it in line)"
    return [Problem("signed metadata", INDEX_KEY, what)]


def _check_shards(dest: Store, index: Index) -> tuple[list[Problem], list[BundleDescriptor]]:
    """The problems of the shards themselves, and the bundles of those that could be read."""
    problems: list[Problem] = []
    bundles: list[BundleDescriptor] = []
    for model, entry in sorted(index.models.items()):
        key = shard_key(model, entry.shard.hash)
        try:
            shard = read_shard(dest, model, entry.shard)[0]
        except RegistryError as exc:
            problems.append(Problem(model, key, f"cannot be used: {exc}"))
            continue
        problems += _shard_problems(model, key, entry.latest, shard)
        bundles += shard.bundles
    return problems, bundles


def _shard_problems(model: str, key: str, latest: str, shard: Shard) -> list[Problem]:
    if latest in {b.version for b in shard.bundles}:
        return []
    return [Problem(model, key, f"holds no version {latest}, which index.json names the highest")]


def _verify_one(store: Store, descriptor: BundleDescriptor) -> list[Problem]:
    problems = _descriptor_problems(store, descriptor)
    key = blob_key(descriptor.hash)
    try:
        size, digest, sha256 = _hash_blob(store, key)
    except KeyNotFound:
        return [*problems, Problem(_label(descriptor), key, "is missing")]
    if size != descriptor.size_bytes:
        what = f"has {size} bytes, the index names {descriptor.size_bytes}"
    elif digest != descriptor.hash:
        what = f"has BLAKE3 {digest}, the index names {descriptor.hash}"
    elif descriptor.sha256 and sha256 != descriptor.sha256:
        what = f"has SHA-256 {sha256}, the index names {descriptor.sha256}"
    else:
        return problems
    return [*problems, Problem(_label(descriptor), key, what)]


def _descriptor_problems(store: Store, entry: BundleDescriptor) -> list[Problem]:
    """The descriptor file of a shard's entry: there, and naming the same blob."""
    key = descriptor_key(*entry.key)
    try:
        found = _read_descriptor(store, key)
    except KeyNotFound:
        return [Problem(_label(entry), key, "is missing (the shard names the bundle)")]
    except CorruptDocument as exc:
        return [Problem(_label(entry), key, f"cannot be read: {exc}")]
    if (found.hash, found.size_bytes) == (entry.hash, entry.size_bytes):
        return []
    what = (
        f"names blob {found.hash} ({found.size_bytes} bytes), the shard names {entry.hash} "
        f"({entry.size_bytes} bytes)"
    )
    return [Problem(_label(entry), key, what)]


def _hash_blob(store: Store, key: str) -> tuple[int, str, str]:
    """(size, BLAKE3, SHA-256) of the object under ``key``, streamed."""
    size, digest, sha256 = 0, blake3.blake3(), hashlib.sha256()
    with store.open(key) as reader:
        while chunk := reader.read(CHUNK):
            size += len(chunk)
            digest.update(chunk)
            sha256.update(chunk)
    return size, digest.hexdigest(), sha256.hexdigest()


def referenced(store: Store) -> tuple[set[str], set[str]]:
    """(digests of the blobs, keys of the shards) that ``index.json`` or a descriptor names.

    Alias pointers and promotion history name versions, and a version reaches its blobs only
    through its descriptors (or shard entries), which gc never deletes; so every blob an alias
    or a history record can name is in this set already.
    """
    index = read_index(store)[0]
    shards = Shards(store).every(index)
    digests = {b.hash for shard in shards.values() for b in shard.bundles}
    indexed = {b.key for shard in shards.values() for b in shard.bundles}
    for info in store.list("descriptors/"):
        parts = info.key.removeprefix("descriptors/").removesuffix(".json").split("/")
        if tuple(parts) not in indexed:
            digests.add(_read_descriptor(store, info.key).hash)
    named = {shard_key(model, entry.shard.hash) for model, entry in index.models.items()}
    return digests, named


def garbage(store: Store, grace_seconds: float, now: float | None = None) -> list[ObjectInfo]:
    """Blobs nothing names and shards ``index.json`` does not name, older than the grace period
    (younger ones may belong to a publish in progress, whose index is not written yet)."""
    now = time.time() if now is None else now
    blobs, shards = referenced(store)
    old = [  # only what a publish writes there, never other files
        *(i for i in store.list("blobs/") if _BLOB_KEY.match(i.key) and _digest(i) not in blobs),
        *(i for i in store.list("shards/") if _SHARD_KEY.match(i.key) and i.key not in shards),
        *_signed_garbage(store),
    ]
    return [info for info in old if now - info.modified > grace_seconds]


def _signed_garbage(store: Store) -> list[ObjectInfo]:
    """Metadata of versions before the one the timestamp names, and signed copies of other
    indexes than the one it signs (no client reads them again; a newer, unnamed version may be
    a commit in progress). Nothing on an unsigned registry."""
    head = read_head(store)
    if head.signed is None or not head.signed.version or head.data is None:
        return []
    current = f"targets/{hashlib.sha256(head.data).hexdigest()}.index.json"
    return [
        *(i for i in store.list("targets/") if _SIGNED_INDEX_KEY.match(i.key) and i.key != current),
        *(i for i in store.list("metadata/") if _older(i.key, head.signed.version)),
    ]


def _older(key: str, version: int) -> bool:
    match = _VERSIONED_KEY.match(key)
    return match is not None and int(match[1]) < version


def _digest(info: ObjectInfo) -> str:
    return info.key.removeprefix("blobs/").removesuffix(".xyb")


def gc(
    dest: Store, grace_seconds: float, *, dry_run: bool, now: float | None = None
) -> list[ObjectInfo]:
    """Delete (unless ``dry_run``) unreferenced blobs and shards older than the grace period;
    returns them."""
    doomed = garbage(dest, grace_seconds, now)
    if not dry_run:
        for info in doomed:
            with contextlib.suppress(KeyNotFound):
                dest.delete(info.key)
    return doomed
