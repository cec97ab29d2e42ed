"""The commit: record descriptors in a store, then the documents that derive from its index.

A build ends here (into its own output directory), so does a publish (after uploading the blobs)
and a promotion (with no descriptors: the pages show aliases), and ``reindex`` reuses the last
step. It is the one place that orders the writes, so that a crash at any moment leaves the store
consistent (content before pointers)::

    blobs/<blake3>.xyb              already there: packed by the build, uploaded by publish
    descriptors/<id>/<v>/<t>.json   1. create-only; the same digest already there is a no-op
    index, v1/models, pages         2. those that changed
    index.json                      3. compare-and-swap on the etag read before step 1; when
                                       another writer got there first: re-read, re-merge, retry

The derived documents go just before the index they derive from, so the last writer to commit
``index.json`` also wrote the derived documents that match it. Nothing unchanged is rewritten.
The index is read through :func:`runtime.registry.index.read_index`, which refuses a newer format,
so a commit never merges into (and overwrites) an index it does not understand.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from registry_build.destination import View
from registry_build.index import IndexConflict, conflict, index_documents, merge_index
from runtime.aliases.view import read_view
from runtime.errors import KeyNotFound, PreconditionFailed
from runtime.registry.index import read_index
from runtime.registry.wire import (
    AliasIndex,
    BundleDescriptor,
    Index,
    alias_index_key,
    decode_document,
    descriptor_key,
    encode_pretty,
)
from runtime.storage.store import PutMode, Store

MAX_ATTEMPTS = 12  # compare-and-swap rounds on index.json before giving up

Renderer = Callable[[Index, dict[str, AliasIndex]], dict[str, bytes]]
Reader = Callable[[Store], tuple[Index, str | None]]


@dataclass(frozen=True)
class Pending:
    """Descriptors checked against the index they merge into, read with its etag (the
    compare-and-swap token); ``new`` pairs those the index lacks with their file's bytes."""

    descriptors: tuple[BundleDescriptor, ...]
    new: tuple[tuple[BundleDescriptor, bytes], ...]
    index: Index
    etag: str | None


def prepare(
    store: Store,
    descriptors: Sequence[BundleDescriptor],
    files: Mapping[tuple[str, str, str], bytes] | None = None,
) -> Pending:
    """Read the store's index and check ``descriptors`` against it before anything is written.

    Raises ImmutableConflict naming both digests when a bundle is published with another digest,
    and IndexFormatError when the index is of a newer format. ``files`` holds descriptor files to
    copy byte for byte (a publish copies the source's); the others are encoded.
    """
    index, etag = read_index(store)
    merge_index(index, descriptors)
    held = {(d.key, d.hash) for d in index.bundles}
    new = [d for d in descriptors if (d.key, d.hash) not in held]
    files = files or {}
    pairs = tuple((d, files.get(d.key) or encode_pretty(d)) for d in new)
    return Pending(tuple(descriptors), pairs, index, etag)


def commit(
    store: Store, descriptors: Sequence[BundleDescriptor], *, render: Renderer | None = None
) -> list[str]:
    """Record descriptors whose blobs ``store`` already holds (module doc); returns the keys
    written, none when nothing changed. With no descriptors it refreshes the pages."""
    return record(store, prepare(store, descriptors), View(store, listed=False), render)


def record(store: Store, pending: Pending, view: View, render: Renderer | None = None) -> list[str]:
    """Write the new descriptors of ``pending``, then the index and what derives from it."""
    written = write_descriptors(store, view, pending.new)

    def merged(current: Index) -> Index:
        return merge_index(current, pending.descriptors)

    return written + commit_index(store, view, merged, (pending.index, pending.etag), render)


def write_descriptors(
    store: Store, view: View, new: Iterable[tuple[BundleDescriptor, bytes]]
) -> list[str]:
    """Write each descriptor (with its file's bytes) create-only; the same digest already there
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
            existing = _existing_descriptor(store, key)
            if existing.hash != descriptor.hash:
                raise conflict(existing, descriptor) from None
    return written


def _existing_descriptor(store: Store, key: str) -> BundleDescriptor:
    # No index names it (else prepare() would have seen it): a publisher died before its index.
    fix = "no index.json names it, so delete it and run the command again"
    return decode_document(store.get(key)[0], BundleDescriptor, f"{store.location}/{key}", fix)


def commit_index(
    store: Store,
    view: View,
    compute: Callable[[Index], Index],
    first: tuple[Index, str | None],
    render: Renderer | None,
    read: Reader = read_index,
) -> list[str]:
    """Write ``compute(current index)`` and what derives from it, by compare-and-swap on
    ``index.json`` (``first`` is the index and etag already read, ``read`` re-reads them after a
    lost round); returns the keys written. Unchanged documents are not rewritten."""
    current, etag = first
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
            current, etag = read(store)
            view.refresh()
        written = _try_commit(store, view, compute(current), etag, render)
        if written is not None:
            return written
    raise IndexConflict(
        f"index.json in {store.location} kept changing under {MAX_ATTEMPTS} attempts to merge "
        "into it; other publishers are very busy: run the command again"
    )


def _try_commit(
    store: Store, view: View, index: Index, etag: str | None, render: Renderer | None
) -> list[str] | None:
    """One round: the derived documents that changed, then ``index.json`` if its etag is still
    ``etag``; the keys written, or None when another writer committed first."""
    documents = _documents(store, view, index, render)
    index_bytes = documents.pop("index.json")
    changed = {k: v for k, v in documents.items() if not view.holds(k, v)}
    if etag is not None and view.holds("index.json", index_bytes) and not changed:
        return []
    for key, data in changed.items():
        view.record(key, data, store.put(key, data))
    mode = PutMode.MATCH if etag is not None else PutMode.CREATE
    try:
        # Even when index.json's bytes stay the same, the conditional write proves that no one
        # committed since we read it, so the derived documents just written match it.
        store.put("index.json", index_bytes, mode, etag)
    except (PreconditionFailed, KeyNotFound):
        return None
    return [*changed, "index.json"]


def _documents(store: Store, view: View, index: Index, render: Renderer | None) -> dict[str, bytes]:
    documents = index_documents(index)
    renderer = render or _default_renderer()
    documents.update(renderer(index, _aliases(store, view, index.models)))
    return documents


def _default_renderer() -> Renderer:
    from registry_build.render import render_site  # Jinja2 only when pages are rendered

    return render_site


def _aliases(store: Store, view: View, models: Iterable[str]) -> dict[str, AliasIndex]:
    """Each model's alias view, read only where one exists (no request per model otherwise);
    an unreadable one is left out (the next promotion rebuilds it)."""
    views = {}
    for model in models:
        if view.info(alias_index_key(model)) is None:
            continue
        found = read_view(store, model)[0]
        if found is not None:
            views[model] = found
    return views
