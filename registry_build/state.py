"""What a publisher reads of a registry before it writes: ``index.json`` with its etag, the shards
it names, and the alias maps the pointer files make.

::

    index.json                      read with its etag, the compare-and-swap token; format 1 is
                                    upgraded here, in memory: a shard per model made from its
                                    entries, alias maps from the pointer files (one listing of
                                    aliases/), all written by the commit that follows
    shards/<id>/<blake3>.json       read when a commit needs one, checked against its entry, kept
                                    by digest for the rest of the commit (:class:`Shards`)
    aliases/<id>/<alias>.json       read for the alias maps only by an upgrade and by reindex

Everything is read through :mod:`runtime.registry.index`, so an ``index.json`` of a newer format
is refused before anything is written.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from registry_build.index import merge_shard, model_entry, shard_bytes
from runtime.aliases.lookup import find_alias
from runtime.errors import RegistryError
from runtime.names import is_name
from runtime.registry.head import Head, SignedHead, read_head
from runtime.registry.index import INDEX_KEY, decode_published, read_shard
from runtime.registry.wire import (
    BundleDescriptor,
    Index,
    IndexV1,
    ModelInfo,
    Shard,
    ShardRef,
    shard_key,
    sort_descriptors,
)
from runtime.storage.store import Store

READERS = 8  # shards read at once when a commit needs them all
_ALIAS_KEY = re.compile(r"aliases/([^/]+)/([^/]+?)(?:\.json|/[^/]+)$")


@dataclass(frozen=True)
class Published:
    """``index.json`` as read (format 1 already upgraded), its etag and bytes (None: there is
    none yet), the shards an upgrade made that the store does not hold yet (key -> bytes), and
    what the signed metadata says (None: unsigned; :mod:`runtime.registry.head`)."""

    index: Index = field(default_factory=Index)
    etag: str | None = None
    data: bytes | None = None
    unwritten: dict[str, bytes] = field(default_factory=dict)
    signed: SignedHead | None = None

    @property
    def head(self) -> Head:
        """The head this state was read at: what a commit compares and swaps against."""
        return Head(self.data, self.etag, self.signed)


class Shards:
    """The shards of one registry read (or made) during one commit, by digest; each read one is
    checked against the entry that names it.

    A shard is named by its digest, so any copy that hashes right is the one: a publish hands in
    its source directory as ``local``, and a model whose shard there is the one the destination
    names costs no request (a CI job that publishes every model of its build each time reads only
    the shards of the models it changed).
    """

    def __init__(self, store: Store, local: Store | None = None) -> None:
        self.store, self.local = store, local
        self._by_digest: dict[str, Shard] = {}

    def add(self, digest: str, shard: Shard) -> None:
        """Remember a shard made here (its bytes hash to ``digest``)."""
        self._by_digest[digest] = shard

    def of(self, index: Index, model: str) -> Shard | None:
        """The shard that ``index`` names for ``model``; None when it holds no such model."""
        entry = index.models.get(model)
        if entry is None:
            return None
        found = self._by_digest.get(entry.shard.hash)
        if found is None:
            found = self._read(model, entry.shard)
            self._by_digest[entry.shard.hash] = found
        return found

    def _read(self, model: str, ref: ShardRef) -> Shard:
        if self.local is not None:
            with contextlib.suppress(RegistryError):  # not there, or other bytes: ask the store
                return read_shard(self.local, model, ref)[0]
        return read_shard(self.store, model, ref)[0]

    def every(self, index: Index) -> dict[str, Shard]:
        """The shard of every model of ``index``, by model (read :data:`READERS` at a time)."""
        models = sorted(index.models)
        with ThreadPoolExecutor(READERS) as pool:
            found = list(pool.map(lambda model: self.of(index, model), models))
        return {model: shard for model, shard in zip(models, found, strict=True) if shard}


def read_state(store: Store, shards: Shards) -> Published:
    """What ``store`` holds now (module notes: the signed index, on a signed registry); an
    index of format 1 comes back upgraded, its shards known to ``shards`` and listed as
    unwritten."""
    head = read_head(store)
    if head.data is None:
        return Published()
    index = decode_published(head.data, f"{store.location}/{INDEX_KEY}")
    on = Published(Index(), head.etag, head.data, signed=head.signed)
    if isinstance(index, IndexV1):
        return upgrade(store, index, on, shards)
    return replace(on, index=index)


def upgrade(store: Store, old: IndexV1, on: Published, shards: Shards) -> Published:
    """The format-2 state of a format-1 index (read as ``on``): every model's shard, made from
    its entries and its description and metadata; the alias maps from the pointer files."""
    grouped: dict[str, list[BundleDescriptor]] = {}
    for bundle in old.bundles:
        grouped.setdefault(bundle.id, []).append(bundle)
    aliases = pointer_aliases(store, grouped)
    made = [_shard(model, old.models.get(model, ModelInfo()), b) for model, b in grouped.items()]
    return build_state(made, aliases, shards, on)


def build_state(
    made: Iterable[Shard], aliases: dict[str, dict[str, str]], shards: Shards, on: Published
) -> Published:
    """``on`` with an index naming exactly the shards ``made`` (all unwritten) and their alias
    maps: an upgrade, or a rebuild from descriptors."""
    entries, unwritten = {}, {}
    for shard in sorted(made, key=lambda s: s.model):
        data = shard_bytes(shard)
        entry = model_entry(shard, data, aliases.get(shard.model, {}))
        shards.add(entry.shard.hash, shard)
        entries[shard.model] = entry
        unwritten[shard_key(shard.model, entry.shard.hash)] = data
    return Published(Index(models=entries), on.etag, on.data, unwritten, on.signed)


def shards_from(descriptors: Iterable[BundleDescriptor]) -> list[Shard]:
    """A shard per model of ``descriptors`` (full ones: the highest version states the model)."""
    grouped: dict[str, list[BundleDescriptor]] = {}
    for descriptor in descriptors:
        grouped.setdefault(descriptor.id, []).append(descriptor)
    return [merge_shard(None, model, found) for model, found in grouped.items()]


def _shard(model: str, info: ModelInfo, bundles: list[BundleDescriptor]) -> Shard:
    return Shard(model, info.description, info.metadata, tuple(sort_descriptors(bundles)))


def pointer_aliases(store: Store, models: Iterable[str]) -> dict[str, dict[str, str]]:
    """The alias map of each of ``models`` as its pointer files say (rolled forward to a record
    ahead of the pointer, without writing): one listing of ``aliases/``, then the pointers."""
    wanted = set(models)
    names: dict[str, set[str]] = {}
    for info in store.list("aliases/"):
        match = _ALIAS_KEY.fullmatch(info.key)
        if match and match[1] in wanted and is_name(match[2]) and match[2] != "index":
            names.setdefault(match[1], set()).add(match[2])
    found: dict[str, dict[str, str]] = {}
    for model in sorted(names):
        for alias in sorted(names[model]):
            pointer = find_alias(store, model, alias, repair=False)
            if pointer is not None:
                found.setdefault(model, {})[alias] = pointer.version
    return found
