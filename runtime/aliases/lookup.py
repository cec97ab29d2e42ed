"""Reading what aliases name: one alias (:func:`resolve_alias`), a ref through the one resolver
(:func:`resolve`), and a model's aliases (:func:`aliases`).

Everything here only reads, so it works on every store, HTTP included. These are the
publisher's tools (the alias commands, the HTTP routes), so an alias is read from its pointer
file, the compare-and-swap truth, where a client reads the alias map of ``index.json``. A pointer
file that is missing while records exist (a crash during an alias's first promotion, or a deleted
pointer) is answered from the newest record, found by probing (no listing needed); with
``repair`` the pointer, the history view and the alias map of ``index.json`` are then fixed too,
where the store takes writes.
"""

from __future__ import annotations

import contextlib

from runtime.aliases.pointer import get_record, newest, read_pointer, read_record, roll_forward
from runtime.aliases.view import alias_names, refresh_view, sync_index_alias
from runtime.errors import KeyNotFound, RegistryError, ResolveError
from runtime.names import Ref, parse_ref
from runtime.registry import resolver
from runtime.registry.index import entry_of, load_index, load_model
from runtime.registry.resolver import ModelState, Resolution, target_order
from runtime.registry.wire import AliasPointer, AliasView, alias_record_key
from runtime.storage.store import Store


def no_alias(store: Store, model: str, alias: str, damage: str | None = None) -> ResolveError:
    """The error for an alias that cannot be read: unknown, or known by files that are damaged
    (``damage`` says how, when the caller knows better than "no pointer and no record 1")."""
    known = alias_names(store, model)
    if alias in known:
        return resolver.damaged_alias(model, alias, store.location, damage)
    return ResolveError(
        f"model {model!r} has no alias {alias!r} in {store.location} "
        f"(aliases: {', '.join(known) or 'none'})"
    )


def resolve_alias(store: Store, model: str, alias: str, *, repair: bool = True) -> AliasPointer:
    """The pointer of ``model@alias``, rolled forward first if a record lies ahead of it, or made
    from the newest record when the pointer file is missing.

    With ``repair`` the store is fixed as well (pointer and view); without it, or when the store
    refuses the write, the newest record's pointer is returned and the store left as it was.
    """
    found = find_alias(store, model, alias, repair)
    if found is None:
        raise no_alias(store, model, alias)
    return found


def find_alias(store: Store, model: str, alias: str, repair: bool) -> AliasPointer | None:
    """:func:`resolve_alias`, or None when the alias has neither a pointer nor a first record."""
    read = read_pointer(store, model, alias)
    ahead = newest(store, model, alias, read.seq)
    if ahead is None:
        return read.value
    if repair:  # a read-only or contended store may refuse: the answer above is still right
        with contextlib.suppress(RegistryError):
            ahead = roll_forward(store, model, alias, attempts=8) or ahead
            sync_index_alias(store, model, alias, attempts=8)
            refresh_view(store, model, alias, attempts=8)
    return ahead


def resolve(
    store: Store, ref: str, target: str | None = None, *, repair: bool = True
) -> Resolution:
    """What ``ref`` names: ``model`` (highest version), ``model@version`` or ``model@alias``
    (:func:`runtime.registry.resolver.resolve`). A selector is an alias when a pointer (or a
    record) of that name exists, else a version. With ``target`` the one bundle for it (or
    ``universal``) is returned, else every target of the version."""
    parsed = parse_ref(ref)
    state = load_model(store, parsed.model)
    targets = None if target is None else target_order(target)
    alias_version = _alias_version(store, state, parsed, repair)
    return resolver.resolve(state, parsed, alias_version, targets=targets, where=store.location)


def _alias_version(store: Store, state: ModelState, ref: Ref, repair: bool) -> str | None:
    """The version the selector names as an alias, by its pointer; None when it has none (it is
    a version, or, when the pointer and records are gone too, an alias of ``index.json`` only).
    With ``repair`` a map of ``index.json`` that disagrees with the pointer is brought in line."""
    if ref.selector is None:
        return None
    pointer = find_alias(store, ref.model, ref.selector, repair)
    if pointer is None:
        known = ref.selector not in state.versions() and ref.selector in alias_names(
            store, ref.model
        )
        if known:
            raise resolver.damaged_alias(ref.model, ref.selector, store.location)
        return None
    if repair and state.aliases.get(ref.selector) != pointer.version:
        with contextlib.suppress(RegistryError):  # a read-only store: the answer still stands
            sync_index_alias(store, ref.model, ref.selector, attempts=8)
    return pointer.version


def aliases(store: Store, model: str) -> tuple[AliasView, ...]:
    """Every alias of ``model`` with its current version and latest record (no history)."""
    entry_of(load_index(store), model, store.location)
    return tuple(_current(store, model, name) for name in alias_names(store, model))


def _current(store: Store, model: str, alias: str) -> AliasView:
    pointer = resolve_alias(store, model, alias, repair=False)
    key = alias_record_key(model, alias, pointer.seq)
    try:
        data = get_record(store, key)
    except KeyNotFound:
        damage = f"its pointer names record {pointer.seq}, but {key} does not exist"
        raise no_alias(store, model, alias, damage) from None
    record = read_record(data, f"{store.location}/{key}", model, alias, pointer.seq)
    return AliasView(alias, pointer.version, pointer.seq, record.time, record.actor, record.reason)
