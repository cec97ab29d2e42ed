"""The commit: record descriptors in a store, then the shards and documents that derive from them,
then ``index.json``.

A build ends here (into its own output directory), so does a publish (after uploading the blobs)
and a promotion (with no descriptors: the pages show aliases), and ``reindex`` reuses the last
steps. It is the one place that orders the writes, so that a crash at any moment leaves the store
consistent (content before pointers)::

    blobs/<blake3>.xyb              already there: packed by the build, uploaded by publish
    descriptors/<id>/<v>/<t>.json   1. create-only; the same digest already there is a no-op
    shards/<id>/<blake3>.json       2. create-only: the new shard of each model with new bundles
    index, v1/models, pages         3. those that changed
    index.json                      4. compare-and-swap on the etag read first; when another
                                       writer got there first: re-read, re-merge, retry

On a signed registry step 4 is the signed commit instead (:mod:`runtime.registry.head`,
:mod:`runtime.trust.repository`): the index is read from the metadata, signed with the online key
of :class:`Options` ``signing`` as the next version of targets, snapshot and timestamp, and
committed by the compare-and-swap of ``metadata/timestamp.json``, the one linearization point;
``index.json`` follows. Without the key, or with another, a commit to a signed registry is
refused before anything is written (:func:`prepare`, :func:`commit_index`).

The derived documents go just before the index they derive from, so the last writer to commit
``index.json`` also wrote the derived documents that match it. Nothing unchanged is rewritten, and
nothing is listed. The index is read through :mod:`runtime.registry.index`, which refuses a newer
format, so a commit never merges into (and overwrites) an index it does not understand; one of
format 1 is upgraded (:mod:`registry_build.state`).

Step 3 makes the documents one of two ways (:class:`Options`):

- whole, from every shard: for a registry of up to ``whole_models`` models (whose pages may
  then be one ``index.html``), for ``reindex`` and an upgrade, and whenever the edit below cannot
  be trusted. Each document is compared with what the store holds (a HEAD each).
- edited, for a larger registry, which is always split into a model list and a page per model:
  ``v1/models`` and ``index`` are the documents written for the index read, with the entries of
  the models whose shard changed since replaced; the pages of those models, and the list pages
  whose rows changed, are rendered again. The documents read are the ones written for that index
  only if their BLAKE3 is what its ``documents`` names (a publisher that lost its race, or died,
  may have written others since): otherwise they are made whole. A round that loses the race
  edits the same documents again, for the models that changed since it read them.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import blake3
import msgspec

from registry_build.destination import View
from registry_build.index import (
    MODEL_LIST,
    XYBRID_INDEX,
    Catalog,
    IndexConflict,
    conflict,
    default_of,
    merge_shard,
    model_card,
    model_entry,
    outside_documents,
    shard_bytes,
    splice_entries,
    splice_models,
)
from registry_build.render import ModelView, Site, list_rows
from registry_build.state import Published, Shards, read_state
from runtime.aliases.view import read_view
from runtime.errors import KeyNotFound, PreconditionFailed
from runtime.registry.head import IndexWriter
from runtime.registry.wire import (
    AliasIndex,
    BundleDescriptor,
    Index,
    ModelInfo,
    Shard,
    decode_document,
    descriptor_key,
    encode_pretty,
    shard_key,
)
from runtime.storage.store import PutMode, Store

if TYPE_CHECKING:
    from runtime.trust.keys import Signing

MAX_ATTEMPTS = 12  # compare-and-swap rounds on index.json before giving up
WHOLE_MODELS = 32  # up to this many models, documents and pages are made whole


class Pages(Protocol):
    """What renders the browse pages (:class:`registry_build.render.Site`; tests hand in a
    small stand-in)."""

    def site(
        self, catalog: Catalog, aliases: Mapping[str, AliasIndex], *, split: bool
    ) -> dict[str, bytes]: ...
    def models(self, catalog: Catalog, aliases: Mapping[str, AliasIndex]) -> dict[str, bytes]: ...
    def front(self, rows: list[ModelView]) -> dict[str, bytes]: ...


@dataclass(frozen=True)
class Options:
    """How a commit writes. ``xybrid_index``: keep ``index`` (Xybrid's ``GET /index``) current;
    ``model_list``: keep ``v1/models`` and the model list pages made from it current (off: both
    stay as they are, as ``index`` does without ``xybrid_index``; the pages of the models
    committed are written either way); ``whole_models``: up to this many models, documents are
    made whole (module notes); ``rewrite``: make them whole even when ``index.json`` would not
    change (a build whose output was touched since its last commit, reindex); ``pages``: what
    renders the browse pages; ``signing``: the online key (and a root to install) for a signed
    registry; ``default``: the registry's default model to name in ``index.json`` (None: name
    none; UNSET: keep what it names)."""

    xybrid_index: bool = True
    model_list: bool = True
    whole_models: int = WHOLE_MODELS
    rewrite: bool = False
    pages: Pages = field(default_factory=Site)
    signing: Signing | None = None
    default: str | msgspec.UnsetType | None = msgspec.UNSET

    def named(self, index: Index) -> Index:
        """``index`` naming the default model these options ask for."""
        if self.default is msgspec.UNSET:
            return index
        return msgspec.structs.replace(index, default=self.default or msgspec.UNSET)


DEFAULTS = Options()


@dataclass(frozen=True)
class Pending:
    """Descriptors checked against the shards they merge into, and what was read to check them
    (``index.json`` with its etag, the shards); ``new`` pairs those no shard holds with their
    file's bytes."""

    descriptors: tuple[BundleDescriptor, ...]
    new: tuple[tuple[BundleDescriptor, bytes], ...]
    state: Published
    shards: Shards


@dataclass(frozen=True)
class Plan:
    """What one round commits: the new ``index.json`` (``documents`` yet to be filled in), the
    shards it names that the store does not hold yet, and the models whose pages are rendered
    again though their shard did not change (``refresh``)."""

    index: Index
    unwritten: dict[str, bytes]
    refresh: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Base:
    """Documents known to be the ones written for an index: that index's shard digest per
    model, alias maps and default model, and the bytes of ``v1/models`` and ``index`` (those the
    options keep current)."""

    digests: dict[str, str]
    aliases: dict[str, dict[str, str]]
    documents: dict[str, bytes]
    default: str | None = None


Compute = Callable[[Published], Plan]  # the plan of a round, from what the store holds
Reader = Callable[[Store, Shards], Published]  # reads what the store holds


def prepare(
    store: Store,
    descriptors: Sequence[BundleDescriptor],
    files: Mapping[tuple[str, str, str], bytes] | None = None,
    local: Store | None = None,
    signing: Signing | None = None,
) -> Pending:
    """Read the store's index and the shards of the models of ``descriptors`` and check the
    descriptors against them, and ``signing`` against the registry, before anything is written.

    Raises ImmutableConflict naming both digests when a bundle is published with another digest,
    IndexFormatError when the index is of a newer format, and SigningKeyRequired (or another
    signing error) when the commit could not be signed. ``files`` holds descriptor files to
    copy byte for byte (a publish copies the source's); the others are encoded. ``local`` is the
    source registry of a publish, where a shard the store names may be read without a request
    (:class:`registry_build.state.Shards`).
    """
    shards = Shards(store, local)
    state = read_state(store, shards)
    IndexWriter(store, signing).check(state.head)
    held: set[tuple[tuple[str, str, str], str]] = set()
    for model, found in _by_model(descriptors).items():
        current = shards.of(state.index, model)
        merge_shard(current, model, found)  # raises on a conflict
        held |= {(b.key, b.hash) for b in current.bundles} if current else set()
    new = [d for d in descriptors if (d.key, d.hash) not in held]
    files = files or {}
    pairs = tuple((d, files.get(d.key) or encode_pretty(d)) for d in new)
    return Pending(tuple(descriptors), pairs, state, shards)


def commit(
    store: Store,
    descriptors: Sequence[BundleDescriptor],
    *,
    refresh: Collection[str] = (),
    options: Options = DEFAULTS,
) -> list[str]:
    """Record descriptors whose blobs ``store`` already holds (module doc); returns the keys
    written, none when nothing changed. ``refresh`` names models whose pages to render again
    (their aliases moved)."""
    pending = prepare(store, descriptors, signing=options.signing)
    return record(store, pending, View(store, listed=False), refresh, options)


def record(
    store: Store,
    pending: Pending,
    view: View,
    refresh: Collection[str] = (),
    options: Options = DEFAULTS,
) -> list[str]:
    """Write the new descriptors of ``pending``, then its shards, documents and index."""
    written = write_descriptors(store, pending.new)

    def merged(state: Published) -> Plan:
        return merge_plan(state, pending.shards, pending.descriptors, refresh)

    return written + commit_index(store, view, pending.shards, merged, pending.state, options)


def commit_index(
    store: Store,
    view: View,
    shards: Shards,
    compute: Compute,
    first: Published,
    options: Options = DEFAULTS,
    read: Reader = read_state,
) -> list[str]:
    """Commit ``compute(what the store holds)`` by compare-and-swap on ``index.json`` (module
    doc, steps 2 to 4): ``first`` is what was read already, ``read`` reads it again after a lost
    round. Returns the keys written; unchanged documents are not rewritten."""
    return _Rounds(store, view, shards, options, first).run(compute, read)


def merge_plan(
    state: Published,
    shards: Shards,
    descriptors: Iterable[BundleDescriptor],
    refresh: Collection[str] = (),
) -> Plan:
    """The index of ``state`` with ``descriptors`` merged into their models' shards; each
    changed shard is made here (and known to ``shards``) and listed as unwritten."""
    entries = dict(state.index.models)
    unwritten = dict(state.unwritten)
    for model, found in _by_model(descriptors).items():
        current = shards.of(state.index, model)
        merged = merge_shard(current, model, found)
        if merged == current:
            continue
        data = shard_bytes(merged)
        if model in entries:  # a shard an upgrade made and this one replaces need not be written
            unwritten.pop(shard_key(model, entries[model].shard.hash), None)
        aliases = entries[model].aliases if model in entries else {}
        entries[model] = model_entry(merged, data, aliases)
        shards.add(entries[model].shard.hash, merged)
        unwritten[shard_key(model, entries[model].shard.hash)] = data
    index = Index(
        models=dict(sorted(entries.items())),
        documents=state.index.documents,
        default=state.index.default,
    )
    return Plan(index, unwritten, frozenset(refresh) & set(entries))


def _by_model(descriptors: Iterable[BundleDescriptor]) -> dict[str, list[BundleDescriptor]]:
    grouped: dict[str, list[BundleDescriptor]] = {}
    for descriptor in descriptors:
        grouped.setdefault(descriptor.id, []).append(descriptor)
    return dict(sorted(grouped.items()))


def write_descriptors(store: Store, new: Iterable[tuple[BundleDescriptor, bytes]]) -> list[str]:
    """Write each descriptor (with its file's bytes) create-only; the same digest already there
    is a no-op, another digest raises ImmutableConflict naming both."""
    written = []
    for descriptor, data in new:
        key = descriptor_key(*descriptor.key)
        try:
            store.put(key, data, PutMode.CREATE)
            written.append(key)
        except PreconditionFailed:
            existing = _existing_descriptor(store, key)
            if existing.hash != descriptor.hash:
                raise conflict(existing, descriptor) from None
    return written


def _existing_descriptor(store: Store, key: str) -> BundleDescriptor:
    # No shard names it (else prepare() would have seen it): a publisher died before its index.
    fix = "no index.json names it, so delete it and run the command again"
    return decode_document(store.get(key)[0], BundleDescriptor, f"{store.location}/{key}", fix)


class _Rounds:
    """Compare-and-swap rounds on ``index.json`` (module doc, steps 2 to 4)."""

    def __init__(
        self, store: Store, view: View, shards: Shards, options: Options, first: Published
    ) -> None:
        self.store, self.view, self.shards, self.options = store, view, shards, options
        self.first = first  # what was read first: the documents to edit must match it
        self.writer = IndexWriter(store, options.signing)
        self._based: tuple[Base | None] | None = None  # read when a round first needs them

    def run(self, compute: Compute, reread: Reader) -> list[str]:
        """:func:`commit_index`."""
        state = self.first
        self.writer.check(state.head)  # before the first write
        for attempt in range(MAX_ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
                state = reread(self.store, self.shards)
                self.view.refresh()
            written = self._round(state, compute(state))
            if written is not None:
                return written
        raise IndexConflict(
            f"index.json in {self.store.location} kept changing under {MAX_ATTEMPTS} attempts to "
            "merge into it; other publishers are very busy: run the command again"
        )

    def _round(self, state: Published, plan: Plan) -> list[str] | None:
        """One round: shards, the documents that changed, then ``index.json`` if its etag is
        still the one read; the keys written, or None when another writer committed first."""
        head = state.head
        plan = replace(plan, index=self.options.named(plan.index))
        unchanged = (
            plan.index.models == state.index.models
            and plan.index.default == state.index.default
            and not plan.unwritten
        )
        settled = state.etag and not self.writer.installs(head)
        if unchanged and not plan.refresh and not self.options.rewrite and settled:
            return []
        documents, digests = self._documents(plan, self._base())
        index_bytes = self.writer.encode(
            head, msgspec.structs.replace(plan.index, documents=digests)
        )
        if state.data == index_bytes and not documents and not plan.unwritten:
            return []
        written = self._write_shards(plan.unwritten)
        for key, data in documents.items():
            self.view.record(key, data, self.store.put(key, data))
        # Even when index.json's bytes stay the same, the conditional write proves that no one
        # committed since we read it, so the derived documents just written match it.
        committed = self.writer.write(head, index_bytes)
        if committed is None:
            return None
        return [*written, *documents, *committed]

    def _write_shards(self, unwritten: Mapping[str, bytes]) -> list[str]:
        written = []
        for key, data in unwritten.items():
            if self.view.listed and self.view.info(key) is not None:
                continue  # named by its digest: a listing shows it is there already
            # Named by its digest: a shard already there holds these very bytes.
            with contextlib.suppress(PreconditionFailed):
                self.store.put(key, data, PutMode.CREATE)
                written.append(key)
        return written

    # -- the documents ---------------------------------------------------------------------

    def _base(self) -> Base | None:
        """The documents written for the index read first, when they can be edited (module
        doc); read once, by the first round that needs them."""
        if self._based is None:
            self._based = (self._read_base(self.first),)
        return self._based[0]

    def _read_base(self, state: Published) -> Base | None:
        models = state.index.models
        if len(models) <= self.options.whole_models or state.unwritten or self.options.rewrite:
            return None
        documents = {}
        for key in self._outside_keys():
            data = _read(self.store, key)
            digest = state.index.documents.get(key)
            if data is None or digest != blake3.blake3(data).hexdigest():
                return None
            documents[key] = data
        digests = {model: entry.shard.hash for model, entry in models.items()}
        aliases = {m: dict(e.aliases) for m, e in models.items()}
        return Base(digests, aliases, documents, default_of(state.index))

    def _outside_keys(self) -> list[str]:
        wanted = ((MODEL_LIST, self.options.model_list), (XYBRID_INDEX, self.options.xybrid_index))
        return [key for key, kept in wanted if kept]

    def _documents(self, plan: Plan, base: Base | None) -> tuple[dict[str, bytes], dict[str, str]]:
        """The documents to write for ``plan`` (whole or edited) and the digests of
        ``v1/models`` and ``index`` for its ``documents``."""
        if base is None:
            outside, pages = self._whole(plan)
            changed = {k: v for k, v in {**outside, **pages}.items() if not self.view.holds(k, v)}
        else:
            outside, changed = self._edited(plan, base)
        return changed, {k: blake3.blake3(v).hexdigest() for k, v in sorted(outside.items())}

    def _whole(self, plan: Plan) -> tuple[dict[str, bytes], dict[str, bytes]]:
        index = plan.index
        catalog = Catalog.of(index, self.shards.every(index))
        outside = outside_documents(catalog, self.options.xybrid_index, self.options.model_list)
        split = len(index.models) > self.options.whole_models
        views = self._views(index, index.models)
        return outside, self.options.pages.site(catalog, views, split=split)

    def _edited(self, plan: Plan, base: Base) -> tuple[dict[str, bytes], dict[str, bytes]]:
        index = plan.index
        default = default_of(index)
        changed = _changed_models(base.digests, index)
        # The cards of the models the default moved between also change.
        moved = {m for m in (base.default, default) if m is not None and m in index.models}
        carded = sorted(set(changed) | moved)
        shards = {m: self.shards.of(index, m) for m in changed}
        outside = {}
        if self.options.model_list:
            cards = _cards({m: self.shards.of(index, m) for m in carded} | shards, default)
            outside[MODEL_LIST] = splice_models(base.documents[MODEL_LIST], cards)
        if self.options.xybrid_index:
            outside[XYBRID_INDEX] = splice_entries(base.documents[XYBRID_INDEX], shards)
        written = {k: v for k, v in outside.items() if v != base.documents[k]}
        redo = sorted((set(carded) | plan.refresh) & set(index.models))
        some = {m: s for m in redo if (s := self.shards.of(index, m)) is not None}
        catalog = Catalog.of(_only(index, redo), some)
        written |= self.options.pages.models(catalog, self._views(index, redo))
        if self.options.model_list:
            written |= self._front(outside[MODEL_LIST], index, base, bool(plan.refresh))
        return outside, written

    def _front(self, models: bytes, index: Index, base: Base, every: bool) -> dict[str, bytes]:
        """The list pages whose rows changed since ``base`` (all of them with ``every``)."""
        pages = self.options.pages
        now = {m: dict(e.aliases) for m, e in index.models.items()}
        after = pages.front(list_rows(_card_list(models), now))
        if every:
            return after
        before = pages.front(list_rows(_card_list(base.documents[MODEL_LIST]), base.aliases))
        return {key: data for key, data in after.items() if before.get(key) != data}

    def _views(self, index: Index, models: Iterable[str]) -> dict[str, AliasIndex]:
        """The alias history view of each of ``models`` that has aliases (one read each); an
        unreadable one is left out (the next promotion rebuilds it)."""
        views = {}
        for model in models:
            entry = index.models.get(model)
            found = read_view(self.store, model)[0] if entry and entry.aliases else None
            if found is not None and found.aliases:
                views[model] = found
        return views


def _changed_models(before: Mapping[str, str], index: Index) -> list[str]:
    """The models whose shard digest differs between ``before`` and ``index`` (gone ones too)."""
    now = {model: entry.shard.hash for model, entry in index.models.items()}
    return sorted(m for m in set(before) | set(now) if before.get(m) != now.get(m))


def _cards(
    shards: Mapping[str, Shard | None], default: str | None
) -> dict[str, dict[str, Any] | None]:
    return {
        model: model_card(model, ModelInfo(s.description, s.metadata), list(s.bundles), default)
        if s is not None
        else None
        for model, s in shards.items()
    }


def _card_list(models: bytes) -> list[dict[str, Any]]:
    data = msgspec.json.decode(models, type=dict[str, Any]).get("data", [])
    return [card for card in data if isinstance(card, dict)]


def _only(index: Index, models: Collection[str]) -> Index:
    return Index(
        models={m: e for m, e in index.models.items() if m in models}, default=index.default
    )


def _read(store: Store, key: str) -> bytes | None:
    try:
        return store.get(key)[0]
    except KeyNotFound:
        return None
