"""Promotion: point ``model@alias`` at a version through its pointer file, with an audit record.

The protocol needs only the store's create-only and replace-if-etag-matches writes, so it works
on a directory and on S3 alike (an HTTP registry is read-only and refuses the first write):

1. Read the pointer (seq ``n``, the digest of record ``n``), or nothing for a new alias.
2. Claim seq ``n+1`` by writing its record create-only. The record carries the previous version
   and ``prev_digest``, the BLAKE3 of record ``n``'s bytes, so any edit or gap in the chain shows.
   Losing this write means another promotion took ``n+1``: step past it and retry (bounded, with
   jittered backoff), and finally raise :class:`~runtime.aliases.pointer.AliasConflict`.
3. Move the pointer to the new record by compare-and-swap on the etag read in step 1. Once the
   record exists the promotion has happened: if the swap loses, the pointer is rolled forward to
   the newest record (which is ours or later), and never moves backwards.
4. Update the alias map of ``index.json`` from the pointer (compare-and-swap, retried:
   :func:`runtime.aliases.view.sync_index_alias`), so the next resolve of a client sees it. On a
   signed registry this is a signed commit with the online key (``signing``); without that key a
   promotion is refused before step 1 writes anything.
5. Rewrite the derived history view (:func:`runtime.aliases.view.refresh_view`).

A crash between steps 2 and 3 leaves a record ahead of the pointer: the next promotion, or the
next resolve by the alias commands, finds it and rolls the pointer forward (and then does step 4).
A crash between steps 3 and 4 leaves ``index.json`` behind the pointer until the next promotion of
the alias, a resolve by the alias commands, or ``registry-build reindex``.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from runtime.aliases.pointer import (
    DEFAULT_ATTEMPTS,
    AliasConflict,
    ReadPointer,
    backoff,
    decode,
    digest,
    pointer_for,
    read_pointer,
    swap,
)
from runtime.aliases.view import RESERVED_ALIASES, refresh_view, sync_index_alias
from runtime.errors import (
    InvalidNameError,
    KeyNotFound,
    PreconditionFailed,
    RegistryError,
    ResolveError,
)
from runtime.names import check_name
from runtime.registry.head import IndexWriter, head_index, read_head
from runtime.registry.index import model_of
from runtime.registry.wire import (
    MAX_ACTOR,
    MAX_REASON,
    AliasPointer,
    AliasRecord,
    alias_record_key,
    encode_pretty,
)
from runtime.storage.store import PutMode, Store

if TYPE_CHECKING:
    from runtime.trust.keys import Signing

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time in UTC (the default clock)."""
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """``2026-11-22T08:00:00.123Z``: UTC, millisecond precision."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def default_actor(explicit: str | None = None) -> str:
    """Who promotes: ``explicit`` (``--actor``), else ``$GITHUB_ACTOR``, else the user name."""
    return explicit or os.environ.get("GITHUB_ACTOR") or getpass.getuser()


@dataclass(frozen=True)
class Promotion:
    """What :func:`promote_detailed` did: the record, races lost, and non-fatal follow-up issues."""

    record: AliasRecord
    retries: int
    warnings: tuple[str, ...] = ()


def check_alias(versions: list[str], model: str, alias: str) -> None:
    """Refuse alias names that could be read as a version (one of ``versions``, the model's) or
    collide with the alias view."""
    check_name("alias", alias)
    if alias in RESERVED_ALIASES:
        raise InvalidNameError(
            f"alias {alias!r} is reserved (aliases/{model}/{alias}.json is the model's alias "
            "view): pick another name, e.g. 'production' or 'stable'"
        )
    if alias in versions:
        raise InvalidNameError(
            f"alias {alias!r} is also a version of model {model!r}, so {model}@{alias} would be "
            "ambiguous: pick a name that is not a version, e.g. 'production' or 'stable'"
        )
    if not alias[0].isalpha():
        raise InvalidNameError(
            f"alias {alias!r} looks like a version: an alias starts with a letter so that "
            f"{model}@{alias} is never ambiguous, e.g. 'production' or 'stable'"
        )


def _check_text(kind: str, value: str, limit: int, required: bool) -> str:
    if required and not value.strip():
        raise InvalidNameError(f"{kind} is empty: say who promotes (--actor or GITHUB_ACTOR)")
    if len(value) > limit:
        raise InvalidNameError(f"{kind} {value[:40]!r}... is longer than {limit} characters")
    if any(ch < " " or ch == "\x7f" for ch in value):
        raise InvalidNameError(
            f"{kind} {value[:40]!r} holds a control character (tab, newline, ...): "
            "write it on one line"
        )
    return value


def promote(
    store: Store,
    model: str,
    alias: str,
    version: str,
    actor: str,
    reason: str,
    *,
    clock: Clock = utc_now,
    attempts: int = DEFAULT_ATTEMPTS,
    signing: Signing | None = None,
) -> AliasRecord:
    """Point ``model@alias`` at ``version`` (which the index must hold); returns its record.
    A signed registry needs ``signing``, the online key (see the module notes)."""
    return promote_detailed(
        store, model, alias, version, actor, reason, clock=clock, attempts=attempts,
        signing=signing,
    ).record  # fmt: skip


def promote_detailed(
    store: Store,
    model: str,
    alias: str,
    version: str,
    actor: str,
    reason: str,
    *,
    clock: Clock = utc_now,
    attempts: int = DEFAULT_ATTEMPTS,
    signing: Signing | None = None,
) -> Promotion:
    """:func:`promote`, also reporting how many races it lost and any follow-up that failed."""
    _check_request(store, model, alias, version, actor, reason, signing)
    read = read_pointer(store, model, alias)
    head = _Head.of(read.value)
    for attempt in range(attempts):
        record = AliasRecord(
            model, alias, version, head.version, actor, reason, rfc3339(clock()), head.seq + 1,
            head.digest,
        )  # fmt: skip
        data = encode_pretty(record)
        try:
            store.put(alias_record_key(model, alias, record.seq), data, PutMode.CREATE)
        except PreconditionFailed:
            head = _advance(store, model, alias, head)
            backoff(attempt)
            continue
        return Promotion(record, attempt, _finish(store, record, digest(data), read, signing))
    raise AliasConflict(
        f"could not promote {model}@{alias} to {version} in {store.location}: another promotion "
        f"took the next record {attempts} times in a row; retry"
    )


def _check_request(
    store: Store,
    model: str,
    alias: str,
    version: str,
    actor: str,
    reason: str,
    signing: Signing | None,
) -> None:
    """Every check before the first write: names, texts, the signing key where the registry is
    signed, the version in the index, the alias."""
    check_name("model", model)
    check_name("version", version)
    _check_text("actor", actor, MAX_ACTOR, required=True)
    _check_text("reason", reason, MAX_REASON, required=False)
    head = read_head(store)
    IndexWriter(store, signing).check(head)
    versions = model_of(store, head_index(store, head), model).versions()
    if version not in versions:
        raise ResolveError(
            f"model {model!r} has no version {version!r} in {store.location} "
            f"(versions: {', '.join(versions)}): publish it first or pick one of those"
        )
    check_alias(versions, model, alias)


@dataclass(frozen=True)
class _Head:
    """The newest record known: its seq, the digest of its bytes, and the version it names."""

    seq: int = 0
    digest: str = ""
    version: str | None = None

    @classmethod
    def of(cls, pointer: AliasPointer | None) -> _Head:
        return cls(pointer.seq, pointer.record_digest, pointer.version) if pointer else cls()


def _advance(store: Store, model: str, alias: str, head: _Head) -> _Head:
    """Step past the record that took ``head.seq + 1`` (another promotion's, or a crashed one's).

    Straight to the pointer when it is further ahead: a writer that lost many races in a row
    would otherwise walk the records one lost race at a time while the others keep promoting.
    """
    pointer = read_pointer(store, model, alias).value
    if pointer is not None and pointer.seq > head.seq + 1:
        return _Head.of(pointer)
    key = alias_record_key(model, alias, head.seq + 1)
    try:
        data, _ = store.get(key)
    except KeyNotFound:
        return head  # deleted since: a broken chain that verify_chain reports
    record = decode(data, AliasRecord, key, store)
    return _Head(head.seq + 1, digest(data), record.version)


def _finish(
    store: Store,
    record: AliasRecord,
    record_digest: str,
    read: ReadPointer,
    signing: Signing | None,
) -> tuple[str, ...]:
    """Move the pointer, update index.json's alias map and refresh the view; the promotion
    already happened, so only warn."""
    warnings: list[str] = []
    model, alias = record.model, record.alias
    try:
        _move_pointer(store, pointer_for(record, record_digest), read)
    except RegistryError as exc:
        warnings.append(f"the pointer was not moved yet (the next promote or resolve will): {exc}")
    try:
        sync_index_alias(store, model, alias, signing=signing)
    except RegistryError as exc:
        warnings.append(f"index.json's alias map was not updated, so clients do not see it: {exc}")
    try:
        refresh_view(store, model, alias, covering=record.seq)
    except RegistryError as exc:
        warnings.append(f"aliases/{model}/index.json was not refreshed: {exc}")
    return tuple(warnings)


def _move_pointer(
    store: Store, pointer: AliasPointer, read: ReadPointer, attempts: int = DEFAULT_ATTEMPTS
) -> None:
    """Swap the pointer to ``pointer`` unless it already names that seq or a later one.

    Swapping from any earlier state straight to our record is safe: the pointer only moves
    forward, and whoever holds a later record moves it past ours.
    """
    for attempt in range(attempts):
        if read.seq >= pointer.seq or swap(store, pointer.model, pointer.alias, read, pointer):
            return
        backoff(attempt)
        read = read_pointer(store, pointer.model, pointer.alias)
    raise AliasConflict(
        f"could not move the pointer of {pointer.model}@{pointer.alias} in {store.location} to "
        f"record {pointer.seq} after {attempts} attempts: other writers keep moving it; retry"
    )
