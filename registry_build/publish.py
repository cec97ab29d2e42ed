"""Publish a built registry to a directory or a bucket; rebuild, verify and collect its garbage.

The source is a registry directory as ``registry-build build`` writes it; the destination any
:class:`~runtime.storage.store.Store` (a directory, ``s3://bucket/prefix``)::

    SRC/                                     DEST/ (after publish)
      blobs/<blake3>.xyb      -- uploaded -->  blobs/<blake3>.xyb        only those DEST lacks
      descriptors/<id>/<v>/<t>.json  ------->  descriptors/...           create-only
      (index.json, pages: ignored)             index.json, index, v1/models, pages
                                                                         merged with what DEST has

Order, so that a crash at any moment leaves DEST consistent (content before pointers):

1. read DEST's ``index.json`` (its etag is the compare-and-swap token);
2. refuse at once if a bundle is already published with another digest (no byte is sent);
3. learn what DEST holds, by one paginated LIST or by a HEAD per key, whichever costs fewer
   requests (:func:`plan_view`); blobs and descriptors the index already names are taken as present;
4. upload missing blobs create-only (verified against their digest first), in parallel;
5. write descriptors create-only (the same digest already there is a no-op);
6. write ``index``, ``v1/models`` and the pages that changed, then compare-and-swap ``index.json``;
   when another publisher got there first, re-read, re-merge and retry with jittered backoff.
   The derived documents go just before the index they derive from, so the last publisher to
   commit ``index.json`` also wrote the derived documents that match it.

Nothing unchanged is rewritten: equal content is recognised by etag (MD5 on S3, BLAKE3 locally).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import blake3
import msgspec

from registry_build.index import (
    IndexConflict,
    conflict,
    index_documents,
    merge_index,
)
from runtime.errors import (
    IntegrityError,
    KeyNotFound,
    PreconditionFailed,
    RegistryError,
    ResolveError,
)
from runtime.names import version_key
from runtime.registry.index import read_index
from runtime.registry.wire import (
    AliasIndex,
    BundleDescriptor,
    Index,
    alias_index_key,
    blob_key,
    decode_descriptor,
    descriptor_key,
    encode_pretty,
)
from runtime.storage.store import ObjectInfo, PutMode, Store

MAX_ATTEMPTS = 12
_BLOB_KEY = re.compile(r"^blobs/[0-9a-f]{64}\.xyb$")
LIST_PAGE = 1000
UPLOAD_WORKERS = 4
CHUNK = 1 << 20

Renderer = Callable[[Index, dict[str, AliasIndex]], dict[str, bytes]]


class SourceRegistryError(RegistryError, ValueError):
    """Raised when the directory to publish is not a complete built registry."""


@dataclass
class PublishReport:
    """What a publish did; ``requests`` counts the requests made to the destination."""

    uploaded: list[str] = field(default_factory=list)
    uploaded_bytes: int = 0
    skipped: int = 0
    written: list[str] = field(default_factory=list)
    requests: int = 0

    def summary(self) -> str:
        """The one line printed after every publish."""
        megabytes = self.uploaded_bytes / 1e6
        return (
            f"uploaded {len(self.uploaded)} blobs ({megabytes:.1f} MB), "
            f"skipped {self.skipped}, {self.requests} requests"
        )


@dataclass(frozen=True)
class LocalBundle:
    """A bundle of the source registry: its descriptor, the descriptor's bytes, the blob file."""

    descriptor: BundleDescriptor
    descriptor_bytes: bytes
    blob: Path


# -- counting requests ---------------------------------------------------------------------------


class CountingStore:
    """A store wrapper that counts requests: S3's own HTTP count where the store keeps one,
    else one per call (a LIST one per page of 1000 keys)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.location = inner.location
        self.calls = 0
        self._start = getattr(inner, "requests", None)

    @property
    def requests(self) -> int:
        """Requests made through this wrapper so far."""
        now = getattr(self.inner, "requests", None)
        return self.calls if now is None or self._start is None else now - self._start

    def get(self, key: str) -> tuple[bytes, str]:
        self.calls += 1
        return self.inner.get(key)

    def head(self, key: str) -> ObjectInfo:
        self.calls += 1
        return self.inner.head(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        items = list(self.inner.list(prefix))
        self.calls += max(1, math.ceil(len(items) / LIST_PAGE))
        return iter(items)

    def open(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        self.calls += 1
        return self.inner.open(key)

    def delete(self, key: str) -> None:
        self.calls += 1
        self.inner.delete(key)

    def put(
        self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        self.calls += 1
        return self.inner.put(key, data, mode, etag)

    def put_file(
        self, key: str, path: Path, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        self.calls += 1
        return self.inner.put_file(key, path, mode, etag)


# -- what the destination holds ------------------------------------------------------------------


def same_content(etag: str, data: bytes) -> bool:
    """Whether an object with ``etag`` holds ``data``: S3 etags are MD5, local ones BLAKE3."""
    if not etag:
        return False
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    return etag in (md5, blake3.blake3(data).hexdigest()[:32])


class View:
    """What the destination holds, from one LIST or from a HEAD per key asked about."""

    def __init__(self, store: Store, listed: bool) -> None:
        self.store = store
        self.listed = listed
        self.objects: dict[str, ObjectInfo | None] = {}
        if listed:
            self.refresh()

    def refresh(self) -> None:
        """Forget what was learned; a listing view lists again."""
        self.objects = {}
        if self.listed:
            self.objects = {info.key: info for info in self.store.list()}

    def info(self, key: str) -> ObjectInfo | None:
        """The object under ``key``, or None."""
        if self.listed or key in self.objects:
            return self.objects.get(key)
        try:
            found: ObjectInfo | None = self.store.head(key)
        except KeyNotFound:
            found = None
        self.objects[key] = found
        return found

    def holds(self, key: str, data: bytes) -> bool:
        """Whether ``key`` already holds exactly ``data``."""
        info = self.info(key)
        if info is None or info.size != len(data):
            return False
        if not info.etag:  # a local listing leaves etags empty: hashing a local file is cheap
            info = self.store.head(key)
        return same_content(info.etag, data)

    def record(self, key: str, data: bytes, etag: str) -> None:
        """Remember what we just wrote."""
        self.objects[key] = ObjectInfo(key, len(data), etag, time.time())


def plan_view(store: Store, index: Index, asked: int) -> View:
    """A LIST view when paging through the whole destination costs fewer requests than ``asked``
    HEADs; the object count is estimated from the index (a blob and a descriptor per bundle)."""
    estimate = 2 * len(index.bundles) + 2 * len(index.models) + 3
    return View(store, listed=max(1, math.ceil(estimate / LIST_PAGE)) <= asked)


# -- publish -------------------------------------------------------------------------------------


def read_source(src_dir: Path) -> list[LocalBundle]:
    """Every bundle of a built registry directory, checked to have its blob."""
    root = Path(src_dir)
    if not (root / "descriptors").is_dir():
        raise SourceRegistryError(
            f"{root} has no descriptors/ directory: it is not a built registry; "
            f"build one with `registry-build build --out {root}`"
        )
    bundles = [_read_bundle(root, path) for path in sorted(root.glob("descriptors/*/*/*.json"))]
    if not bundles:
        raise SourceRegistryError(f"{root}/descriptors/ is empty: there is nothing to publish")
    return bundles


def _read_bundle(root: Path, path: Path) -> LocalBundle:
    data = path.read_bytes()
    try:
        descriptor = decode_descriptor(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise SourceRegistryError(f"{path}: not a valid bundle descriptor ({exc})") from None
    blob = root / blob_key(descriptor.hash)
    size = blob.stat().st_size if blob.is_file() else None
    if size != descriptor.size_bytes:
        found = "is missing" if size is None else f"has {size} bytes"
        raise SourceRegistryError(
            f"{blob} {found}; {path} names {descriptor.size_bytes} bytes: rebuild the registry"
        )
    return LocalBundle(descriptor, data, blob)


def publish_registry(
    src_dir: Path,
    dest: Store,
    *,
    progress: bool = False,
    render: Renderer | None = None,
    only: Collection[tuple[str, str, str]] | None = None,
) -> PublishReport:
    """Copy the built registry at ``src_dir`` into ``dest``: blobs, descriptors, index, pages;
    with ``only``, just the bundles of those (id, version, target) keys.

    Raises ImmutableConflict (naming both digests) before sending anything when a bundle is
    already published with other content, and IndexConflict when the index keeps changing.
    """
    bundles = read_source(src_dir)
    if only is not None:
        bundles = [b for b in bundles if b.descriptor.key in only]
    store = CountingStore(dest)
    index, etag = read_index(store)
    merge_index(index, [b.descriptor for b in bundles])  # fail early on a conflict
    fresh = {id(d) for d in _not_indexed(index, [b.descriptor for b in bundles])}
    new = [b for b in bundles if id(b.descriptor) in fresh]
    view = plan_view(store, index, asked=2 * len(new) + 2 * len(index.models) + 3)
    report = PublishReport()
    upload_blobs(store, view, new, report, progress)
    descriptors = [(b.descriptor, b.descriptor_bytes) for b in new]
    report.written += write_descriptors(store, view, descriptors)
    report.written += commit_index(
        store, view, lambda current: merge_index(current, [b.descriptor for b in bundles]),
        (index, etag), render,
    )  # fmt: skip
    report.skipped = len({b.descriptor.hash for b in bundles}) - len(report.uploaded)
    report.requests = store.requests
    return report


def _not_indexed(index: Index, descriptors: Iterable[BundleDescriptor]) -> list[BundleDescriptor]:
    """The descriptors ``index`` does not hold yet (same key and digest), in one pass."""
    held = {(d.key, d.hash) for d in index.bundles}
    return [d for d in descriptors if (d.key, d.hash) not in held]


def upload_blobs(
    store: Store, view: View, new: Sequence[LocalBundle], report: PublishReport, progress: bool
) -> None:
    """Upload, create-only and in parallel, the blobs of ``new`` that the destination lacks."""
    unique = {b.descriptor.hash: b for b in new}
    missing = [b for b in unique.values() if not _present(view, b)]
    bar = _progress_bar(sum(b.descriptor.size_bytes for b in missing), progress)
    try:
        with ThreadPoolExecutor(UPLOAD_WORKERS) as pool:
            for key in pool.map(lambda b: _upload(store, b, bar), missing):
                if key:
                    report.uploaded.append(key)
    finally:
        if bar is not None:
            bar.close()
    report.uploaded_bytes = sum(unique[_digest(k)].descriptor.size_bytes for k in report.uploaded)


def _digest(key: str) -> str:
    return key.removeprefix("blobs/").removesuffix(".xyb")


def _present(view: View, bundle: LocalBundle) -> bool:
    info = view.info(blob_key(bundle.descriptor.hash))
    return info is not None and info.size == bundle.descriptor.size_bytes


def _upload(store: Store, bundle: LocalBundle, bar: Any) -> str | None:
    check_blob(bundle)
    key = blob_key(bundle.descriptor.hash)
    try:
        store.put_file(key, bundle.blob, PutMode.CREATE)
    except PreconditionFailed:
        return None  # another publisher uploaded the same content meanwhile
    finally:
        if bar is not None:
            bar.update(bundle.descriptor.size_bytes)
    return key


def check_blob(bundle: LocalBundle) -> None:
    """Refuse to publish a blob whose bytes do not hash to the name it is published under."""
    hasher = blake3.blake3()
    with open(bundle.blob, "rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
    if hasher.hexdigest() != bundle.descriptor.hash:
        raise IntegrityError(
            f"{bundle.blob} hashes to {hasher.hexdigest()}, not the {bundle.descriptor.hash} its "
            "descriptor names: the build output is corrupt; delete that file and run "
            "`registry-build build` again, which rebuilds it"
        )


def _progress_bar(total: int, progress: bool) -> Any:
    if not progress or total == 0 or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc="upload", file=sys.stderr)


def write_descriptors(
    store: Store, view: View, new: Iterable[tuple[BundleDescriptor, bytes]]
) -> list[str]:
    """Write each descriptor (with its encoded bytes) create-only; the same digest already there
    is a no-op, another digest raises ImmutableConflict naming both."""
    written = []
    for descriptor, data in new:
        key = descriptor_key(*descriptor.key)
        if view.holds(key, data):
            continue
        try:
            store.put(key, data, PutMode.CREATE)
            written.append(key)
        except PreconditionFailed:
            existing = decode_descriptor(store.get(key)[0])
            if existing.hash != descriptor.hash:
                raise conflict(existing, descriptor) from None
    return written


def commit(
    store: Store, descriptors: Sequence[BundleDescriptor], *, render: Renderer | None = None
) -> list[str]:
    """Record descriptors whose blobs ``store`` already holds: descriptors create-only, then the
    index and pages by compare-and-swap. Returns the keys written; nothing unchanged is rewritten.

    This is how a build commits into its own output directory, and (with no descriptors) how
    pages are refreshed after a promotion.
    """
    index, etag = read_index(store)
    merge_index(index, descriptors)  # fail early on a conflict
    view = View(store, listed=False)
    new = [(d, encode_pretty(d)) for d in _not_indexed(index, descriptors)]
    written = write_descriptors(store, view, new)
    return written + commit_index(
        store, view, lambda current: merge_index(current, descriptors), (index, etag), render
    )


# -- the index: compare-and-swap -----------------------------------------------------------------


def commit_index(
    store: Store,
    view: View,
    compute: Callable[[Index], Index],
    first: tuple[Index, str | None],
    render: Renderer | None,
    read: Callable[[Store], tuple[Index, str | None]] = read_index,
) -> list[str]:
    """Write ``compute(current index)`` and what derives from it, by compare-and-swap on
    ``index.json``; returns the keys written. Unchanged documents are not rewritten."""
    current, etag = first
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
            current, etag = read(store)
            view.refresh()
        documents = _documents(store, view, compute(current), render)
        index_bytes = documents.pop("index.json")
        changed = {k: v for k, v in documents.items() if not view.holds(k, v)}
        if etag is not None and view.holds("index.json", index_bytes) and not changed:
            return []
        for key, data in changed.items():
            view.record(key, data, store.put(key, data))
        try:
            mode = PutMode.MATCH if etag is not None else PutMode.CREATE
            # Even when index.json's bytes stay the same, the conditional write proves that no
            # one committed since we read it, so the derived documents just written match it.
            store.put("index.json", index_bytes, mode, etag)
            return [*changed, "index.json"]
        except (PreconditionFailed, KeyNotFound):
            continue
    raise IndexConflict(
        f"index.json in {store.location} kept changing under {MAX_ATTEMPTS} attempts to merge "
        "into it; other publishers are very busy: run the command again"
    )


def _documents(store: Store, view: View, index: Index, render: Renderer | None) -> dict[str, bytes]:
    documents = index_documents(index)
    renderer = render or _default_renderer()
    documents.update(renderer(index, _aliases(store, view, index.models)))
    return documents


def _default_renderer() -> Renderer:
    from registry_build.render import render_site  # Jinja2 only when pages are rendered

    return render_site


def _aliases(store: Store, view: View, models: Iterable[str]) -> dict[str, AliasIndex]:
    """Each model's alias view, read only where one exists (no request per model otherwise)."""
    views = {}
    for model in models:
        key = alias_index_key(model)
        if view.info(key) is None:
            continue
        with contextlib.suppress(KeyNotFound, msgspec.DecodeError, msgspec.ValidationError):
            views[model] = msgspec.json.decode(store.get(key)[0], type=AliasIndex)
    return views


def promote_newest(
    store: Store, descriptors: Iterable[BundleDescriptor], alias: str, actor: str | None, by: str
) -> list[str]:
    """Point ``alias`` at the highest of ``descriptors``' versions of each model, then refresh
    the pages. Recorded with ``actor`` (else ``$GITHUB_ACTOR``, else the user name) and a reason
    naming the command ``by`` and the commit (``$GITHUB_SHA``) when there is one.

    Placeholders are not promoted, and an alias already at the version gets no new record, so
    a CI job that builds with ``--alias`` on every push does not grow the history."""
    from runtime.aliases import default_actor, promote, resolve_alias

    sha = os.environ.get("GITHUB_SHA", "")
    reason = by + (f" at commit {sha}" if sha else "")
    newest: dict[str, str] = {}
    for d in descriptors:
        if d.metadata.get("placeholder"):
            continue
        if d.id not in newest or version_key(d.version) > version_key(newest[d.id]):
            newest[d.id] = d.version
    who = default_actor(actor)
    lines = []
    for model, version in sorted(newest.items()):
        with contextlib.suppress(ResolveError):
            if resolve_alias(store, model, alias).version == version:
                lines.append(f"{model}@{alias} -> {version} (already)")
                continue
        record = promote(store, model, alias, version, who, reason)
        lines.append(f"{model}@{alias} -> {version} (seq {record.seq})")
    commit(store, [])  # the pages show aliases
    return lines


# -- reindex, verify, gc -------------------------------------------------------------------------


def read_descriptors(store: Store) -> list[BundleDescriptor]:
    """Every descriptor under ``descriptors/`` (never a blob); a bad one is named, not skipped."""
    return [_read_descriptor(store, info.key) for info in store.list("descriptors/")]


def _read_descriptor(store: Store, key: str) -> BundleDescriptor:
    try:
        return decode_descriptor(store.get(key)[0])
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise SourceRegistryError(
            f"{key} in {store.location} is not a valid descriptor ({exc}); "
            "fix or remove it, then run the command again"
        ) from None


def _read_etag_only(store: Store) -> tuple[Index, str | None]:
    # reindex replaces index.json whatever it holds, even when it no longer parses.
    try:
        return Index(), store.get("index.json")[1]
    except KeyNotFound:
        return Index(), None


def reindex(dest: Store, *, render: Renderer | None = None) -> list[str]:
    """Rebuild ``index.json``, ``index``, ``v1/models`` and the pages from ``descriptors/`` alone.

    Returns the keys written. Descriptors with the same (id, version, target) twice cannot
    exist (their key is that triple), so the rebuild cannot conflict.
    """
    store = CountingStore(dest)
    view = View(store, listed=True)

    def rebuilt(_: Index) -> Index:
        return merge_index(Index(), read_descriptors(store))

    return commit_index(store, view, rebuilt, _read_etag_only(store), render, _read_etag_only)


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
        raise SourceRegistryError(
            f"{dest.location} has no index.json: publish or build a registry there first"
        )
    with ThreadPoolExecutor(workers) as pool:
        found = list(pool.map(lambda d: _verify_one(dest, d), index.bundles))
    return len(index.bundles), [p for p in found if p is not None]


def _verify_one(store: Store, descriptor: BundleDescriptor) -> Problem | None:
    key = blob_key(descriptor.hash)
    size, digest, sha256 = 0, blake3.blake3(), hashlib.sha256()
    try:
        with store.open(key) as reader:
            while chunk := reader.read(CHUNK):
                size += len(chunk)
                digest.update(chunk)
                sha256.update(chunk)
    except KeyNotFound:
        return Problem(*descriptor.key, key, "is missing")
    if size != descriptor.size_bytes:
        what = f"has {size} bytes, the index names {descriptor.size_bytes}"
    elif digest.hexdigest() != descriptor.hash:
        what = f"has BLAKE3 {digest.hexdigest()}, the index names {descriptor.hash}"
    elif descriptor.sha256 and sha256.hexdigest() != descriptor.sha256:
        what = f"has SHA-256 {sha256.hexdigest()}, the index names {descriptor.sha256}"
    else:
        return None
    return Problem(*descriptor.key, key, what)


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
        and _digest(info.key) not in keep
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
