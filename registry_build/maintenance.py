"""Keeping a published registry healthy: rebuild its index, verify its blobs, collect garbage.

Each works on a store as :mod:`registry_build.publish` leaves it::

    DEST/
      descriptors/<id>/<v>/<t>.json   the truth: reindex rebuilds everything below from these
      index.json, index, v1/models    reindex: rebuilt (by compare-and-swap, registry_build.commit)
      index.html, models/...          reindex: re-rendered
      blobs/<blake3>.xyb              verify: stream-hashed; gc: deleted when nothing names them
                                      and they are older than the grace period

None of them reads a blob except ``verify``, and none of them overwrites an ``index.json`` of a
newer format than this version writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import blake3

from registry_build.commit import Renderer, commit_index
from registry_build.destination import View
from registry_build.index import merge_index
from runtime.errors import CorruptDocument, KeyNotFound
from runtime.registry.index import INDEX_KEY, NoIndex, decode_index, read_index
from runtime.registry.wire import BundleDescriptor, Index, blob_key, decode_document
from runtime.storage.store import ObjectInfo, Store

CHUNK = 1 << 20
_BLOB_KEY = re.compile(r"^blobs/[0-9a-f]{64}\.xyb$")


def read_descriptors(store: Store) -> list[BundleDescriptor]:
    """Every descriptor under ``descriptors/`` (never a blob); a bad one is named, not skipped."""
    return [_read_descriptor(store, info.key) for info in store.list("descriptors/")]


def _read_descriptor(store: Store, key: str) -> BundleDescriptor:
    fix = "fix or remove it, then run the command again"
    return decode_document(store.get(key)[0], BundleDescriptor, f"{store.location}/{key}", fix)


def reindex(dest: Store, *, render: Renderer | None = None) -> list[str]:
    """Rebuild ``index.json``, ``index``, ``v1/models`` and the pages from ``descriptors/`` alone.

    Returns the keys written. Descriptors with the same (id, version, target) twice cannot
    exist (their key is that triple), so the rebuild cannot conflict.
    """

    def rebuilt(_: Index) -> Index:
        return merge_index(Index(), read_descriptors(dest))

    view = View(dest, listed=True)
    return commit_index(dest, view, rebuilt, _replaceable(dest), render, _replaceable)


def _replaceable(store: Store) -> tuple[Index, str | None]:
    """The etag of ``index.json``, whatever it holds (reindex replaces even one that no longer
    parses), unless it is of a newer format (IndexFormatError): that one is never overwritten."""
    try:
        data, etag = store.get(INDEX_KEY)
    except KeyNotFound:
        return Index(), None
    with contextlib.suppress(CorruptDocument):
        decode_index(data, f"{store.location}/{INDEX_KEY}")
    return Index(), etag


@dataclass(frozen=True)
class Problem:
    """One blob the index names that is missing or does not match its digest."""

    model: str
    version: str
    target: str
    key: str
    what: str

    def __str__(self) -> str:
        return f"{self.model}@{self.version} ({self.target}): {self.key} {self.what}"


def verify(dest: Store, *, workers: int = 4) -> tuple[int, list[Problem]]:
    """Stream-hash every blob ``index.json`` names; returns (blobs checked, problems found)."""
    index, etag = read_index(dest)
    if etag is None:
        raise NoIndex(
            f"{dest.location} has no {INDEX_KEY}: publish or build a registry there first"
        )
    with ThreadPoolExecutor(workers) as pool:
        found = list(pool.map(lambda d: _verify_one(dest, d), index.bundles))
    return len(index.bundles), [p for p in found if p is not None]


def _verify_one(store: Store, descriptor: BundleDescriptor) -> Problem | None:
    key = blob_key(descriptor.hash)
    try:
        size, digest, sha256 = _hash_blob(store, key)
    except KeyNotFound:
        return Problem(*descriptor.key, key, "is missing")
    if size != descriptor.size_bytes:
        what = f"has {size} bytes, the index names {descriptor.size_bytes}"
    elif digest != descriptor.hash:
        what = f"has BLAKE3 {digest}, the index names {descriptor.hash}"
    elif descriptor.sha256 and sha256 != descriptor.sha256:
        what = f"has SHA-256 {sha256}, the index names {descriptor.sha256}"
    else:
        return None
    return Problem(*descriptor.key, key, what)


def _hash_blob(store: Store, key: str) -> tuple[int, str, str]:
    """(size, BLAKE3, SHA-256) of the object under ``key``, streamed."""
    size, digest, sha256 = 0, blake3.blake3(), hashlib.sha256()
    with store.open(key) as reader:
        while chunk := reader.read(CHUNK):
            size += len(chunk)
            digest.update(chunk)
            sha256.update(chunk)
    return size, digest.hexdigest(), sha256.hexdigest()


def referenced_blobs(store: Store) -> set[str]:
    """Digests that a descriptor or ``index.json`` names.

    Alias pointers and promotion history name versions, and a version reaches its blobs only
    through its descriptors (or index entries), which gc never deletes; so every blob an alias
    or a history record can name is in this set already.
    """
    index = read_index(store)[0]
    digests = {d.hash for d in index.bundles}
    indexed = {d.key for d in index.bundles}
    for info in store.list("descriptors/"):
        parts = info.key.removeprefix("descriptors/").removesuffix(".json").split("/")
        if tuple(parts) not in indexed:
            digests.add(_read_descriptor(store, info.key).hash)
    return digests


def garbage(store: Store, grace_seconds: float, now: float | None = None) -> list[ObjectInfo]:
    """Blobs nothing names that are older than the grace period (younger ones may belong to a
    publish in progress, whose descriptor is not written yet)."""
    now = time.time() if now is None else now
    keep = referenced_blobs(store)
    return [
        info
        for info in store.list("blobs/")
        if _BLOB_KEY.match(info.key)  # only what a publish writes there, never other files
        and info.key.removeprefix("blobs/").removesuffix(".xyb") not in keep
        and now - info.modified > grace_seconds
    ]


def gc(
    dest: Store, grace_seconds: float, *, dry_run: bool, now: float | None = None
) -> list[ObjectInfo]:
    """Delete (unless ``dry_run``) unreferenced blobs older than the grace period; returns them."""
    doomed = garbage(dest, grace_seconds, now)
    if not dry_run:
        for info in doomed:
            with contextlib.suppress(KeyNotFound):
                dest.delete(info.key)
    return doomed
