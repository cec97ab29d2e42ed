"""The derived views of a model's aliases, and the names of its aliases.

::

    aliases/<id>/index.json           AliasIndex: every alias of the model with its history
    index.json                        models[<id>].aliases: alias -> version, what clients read

Both are rewritten after each promotion by compare-and-swap. The history view is merged from the
records, so a browse page shows current aliases without a rebuild; readers of an alias never depend
on it, except where nothing else can name the aliases: a store without a listing (HTTP) learns a
model's alias names from the view alone (:func:`alias_names`).

The alias map of ``index.json`` (:func:`sync_index_alias`) is what a client resolves an alias by.
It is read before the pointer and written only if ``index.json`` is still what was read, so it
never moves back: whoever writes after another writer read ``index.json`` again first, and so
read a pointer at least as new as the one the other wrote. On a signed registry "``index.json``"
is the signed index and the write is a signed commit (:mod:`runtime.registry.head`), which needs
the online key.

Neither loop waits between rounds: a lost compare-and-swap means that another writer's write
landed, so the next round reads again at once, and a writer is done as soon as what it reads
covers what it came to write (the view holds its record; the pointer is past its record, so
the promotion of the later one writes the map).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from runtime.aliases.pointer import (
    DEFAULT_ATTEMPTS,
    AliasConflict,
    Found,
    decode,
    read_pointer,
    records_after,
)
from runtime.errors import CorruptDocument, KeyNotFound, PreconditionFailed
from runtime.names import check_name, is_name
from runtime.registry.head import Head, IndexWriter, read_head
from runtime.registry.index import INDEX_KEY, decode_index
from runtime.registry.wire import (
    AliasIndex,
    AliasPointer,
    AliasView,
    Index,
    alias_index_key,
    encode,
)
from runtime.storage.store import MAX_DOCUMENT, PutMode, ReadOnlyStore, Store

if TYPE_CHECKING:
    from runtime.trust.keys import Signing

RESERVED_ALIASES = frozenset({"index"})  # aliases/<id>/index.json is the model's alias view


def alias_names(store: Store, model: str) -> list[str]:
    """Every alias of ``model`` that has a pointer or a file under its folder, sorted; a name
    that is not a valid alias (a stray file) is left out, so no such name becomes a key.

    A store that cannot list (HTTP) answers with the aliases its derived view names."""
    prefix = f"aliases/{check_name('model', model)}/"
    try:
        keys = [info.key[len(prefix) :] for info in store.list(prefix)]
    except ReadOnlyStore:
        view = read_view(store, model)[0]
        return sorted(v.alias for v in view.aliases) if view else []
    names = {_alias_of(rest) for rest in keys}
    return sorted(n for n in names if is_name(n) and n not in RESERVED_ALIASES)


def _alias_of(rest: str) -> str:
    """The alias a key under ``aliases/<id>/`` belongs to: its folder, or its pointer's name
    ("" for a stray file, which is no name)."""
    folder, slash, _ = rest.partition("/")
    if slash:
        return folder
    return rest.removesuffix(".json") if rest.endswith(".json") else ""


def read_view(store: Store, model: str) -> tuple[AliasIndex | None, str | None]:
    """The view and its etag; (None, etag) when it exists but is unreadable (it is rebuilt)."""
    key = alias_index_key(model)
    try:
        data, etag = store.get(key, limit=MAX_DOCUMENT)
    except KeyNotFound:
        return AliasIndex(model), None
    try:
        return decode(data, AliasIndex, key, store), etag
    except CorruptDocument:
        return None, etag


def _merged(
    store: Store,
    model: str,
    view: AliasView | None,
    alias: str,
    until: int | None,
    known: Mapping[int, Found] | None = None,
) -> AliasView | None:
    """``view`` extended by the records after its last one (up to seq ``until`` when given, which
    saves probing for the end; those in ``known`` are not read again); None when there is
    nothing new."""
    history = list(view.history) if view else []
    if [r.seq for r in history] != list(range(1, len(history) + 1)):
        history = []  # not a prefix of the chain: rebuild this alias from its records
    new = [r for r, _ in records_after(store, model, alias, len(history), until, known)]
    if not new:
        return None
    full = (*history, *new)
    last = full[-1]
    return AliasView(alias, last.version, last.seq, last.time, last.actor, last.reason, full)


def refresh_view(
    store: Store,
    model: str,
    alias: str | None = None,
    *,
    covering: int = 0,
    attempts: int = DEFAULT_ATTEMPTS,
    known: Mapping[int, Found] | None = None,
) -> AliasIndex:
    """Bring ``aliases/<model>/index.json`` up to the records of ``alias`` (all when None).

    The view only ever grows by records read from the store, and is written by compare-and-swap,
    so concurrent refreshes converge on the full history. With ``covering``, stop as soon as the
    view holds that seq of ``alias``: whoever wrote it had read everything up to there, and a
    later promotion refreshes it for its own record. Records of ``alias`` in ``known`` (by seq,
    with their digests: what a promotion read already) are not read again.
    """
    for _ in range(attempts):
        view, etag = read_view(store, model)
        names = [alias] if alias and view is not None else alias_names(store, model)
        current = {v.alias: v for v in (view.aliases if view else ())}
        if view is not None and alias in current and 0 < covering <= current[alias].seq:
            return view
        until = covering if alias and view is not None and covering else None
        changed = {
            n: m
            for n in names
            if (m := _merged(store, model, current.get(n), n, until, known if n == alias else None))
        }
        if not changed and view is not None:
            return view
        current.update(changed)
        updated = AliasIndex(model, tuple(current[n] for n in sorted(current)))
        mode = PutMode.CREATE if etag is None else PutMode.MATCH
        try:
            store.put(alias_index_key(model), encode(updated), mode, etag)
            return updated
        except (PreconditionFailed, KeyNotFound):
            continue  # another refresh landed: read it, it may cover ours
    raise AliasConflict(
        f"could not refresh {alias_index_key(model)} in {store.location} after {attempts} "
        "attempts: other promotions keep rewriting it; it catches up on the next promotion"
    )


@dataclass(frozen=True)
class Seen:
    """The head of ``index.json`` as read, and the pointer as read (or written) after it: one
    round of :func:`sync_index_alias` (a promotion has both in hand)."""

    head: Head
    pointer: AliasPointer | None

    @classmethod
    def read(cls, store: Store, model: str, alias: str) -> Seen:
        """Both read now, in that order (module notes)."""
        head = read_head(store)
        return cls(head, read_pointer(store, model, alias).value)


def sync_index_alias(
    store: Store,
    model: str,
    alias: str,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    signing: Signing | None = None,
    seen: Seen | None = None,
    until: int | None = None,
) -> AliasPointer | None:
    """Make the alias map of ``index.json`` say what the pointer of ``model@alias`` says now
    (module notes); returns that pointer (None: no pointer, so no alias). Nothing is written when
    the map already agrees, or when ``index.json`` does not hold the model; a signed registry
    needs ``signing`` (else SigningKeyRequired, and nothing is written).

    ``seen`` serves the first round instead of reading both again. With ``until`` (the seq of a
    promotion's record) a pointer past it ends the work: the promotion of that later record
    writes the map, and the pointer found is returned."""
    writer = IndexWriter(store, signing)
    for _ in range(attempts):
        seen = seen or Seen.read(store, model, alias)
        pointer = seen.pointer
        if until is not None and pointer is not None and pointer.seq > until:
            return pointer
        if _commit_alias(store, writer, seen, model, alias):
            return pointer
        seen = None
    raise AliasConflict(
        f"could not update the alias map of {INDEX_KEY} in {store.location} for {model}@{alias} "
        f"after {attempts} attempts: other writers keep changing it; run the promotion again"
    )


def _commit_alias(store: Store, writer: IndexWriter, seen: Seen, model: str, alias: str) -> bool:
    """Commit the map of ``seen.head`` saying ``seen.pointer``'s version; True when done (or
    nothing to do), False when another writer committed since ``seen.head`` was read."""
    head, where = seen.head, f"{store.location}/{INDEX_KEY}"
    index = Index() if head.data is None else decode_index(head.data, where)
    entry = index.models.get(model)
    version = seen.pointer.version if seen.pointer is not None else None
    if entry is None or head.etag is None or entry.aliases.get(alias) == version:
        return True
    aliases = {k: v for k, v in entry.aliases.items() if k != alias}
    aliases.update({alias: version} if version is not None else {})
    changed = msgspec.structs.replace(entry, aliases=dict(sorted(aliases.items())))
    updated = msgspec.structs.replace(index, models={**index.models, model: changed})
    return writer.write(head, writer.encode(head, updated)) is not None
