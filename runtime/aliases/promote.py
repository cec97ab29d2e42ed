"""Promotion: point ``model@alias`` at a version through its pointer file, with an audit record.

The protocol needs only the store's create-only and replace-if-etag-matches writes, so it works
on a directory and on S3 alike (an HTTP registry is read-only and refuses the first write):

1. Check the request against ``index.json`` (kept: it is the head step 4 writes at), then read the
   pointer (seq ``n``, the digest of record ``n``), or nothing for a new alias.
2. Claim seq ``n+1`` by writing its record create-only. The record carries the previous version
   and ``prev_digest``, the BLAKE3 of record ``n``'s bytes, so any edit or gap in the chain shows.
   Losing this write means another promotion took ``n+1``: read its record (the next claim
   chains to it) and claim ``n+2``, at once when the winner was asked after ours (ours is then
   the oldest racing), else after letting the older ones go first: a pause as long as the
   winner was asked before ours (at most :data:`MAX_PAUSE`), then on from the pointer. Older
   promotions thus win first, and the racers do not all storm every slot. After ``attempts``
   slots lost in a row :class:`~runtime.aliases.pointer.AliasConflict` is raised. A record's
   ``time`` is when its promotion was asked (the clock is read once).
3. Move the pointer to the new record by compare-and-swap on the etag read in step 1; a lost swap
   reads the pointer again and is done once it names our record or a later one (the pointer only
   moves forward, and whoever holds a later record moves it on). Once the record exists the
   promotion has happened: what fails from here on is a warning.
4. Update the alias map of ``index.json`` (:func:`runtime.aliases.view.sync_index_alias`), so the
   next resolve of a client sees it, at the head read in step 1 (the pointer as moved in step 3
   was seen after it, which keeps the map from moving back); a lost write reads both again. On a
   signed registry this is a signed commit with the online key (``signing``); without that key
   a promotion is refused before step 2 writes anything.
5. Bring the derived history view up to our record (:func:`runtime.aliases.view.refresh_view`),
   with the records read in step 2 (ours too) taken as read.

Steps 3 to 5 help rather than wait: a promotion that lost a race and then finds the slot after
its record taken, or that finds the pointer past its record, leaves them to the promotion of the
later record, which covers ours (and whose crash the next promotion repairs, as below); one that
finds the view already covering its record is done. A promotion that lost no race writes the map
at the head of step 1 without reading it again; after lost races that head is stale, so step 4
reads it first.

A crash between steps 2 and 3 leaves a record ahead of the pointer: the next promotion, or the
next resolve by the alias commands, finds it and rolls the pointer forward (and then does step 4).
A crash between steps 3 and 4 leaves ``index.json`` behind the pointer until the next promotion of
the alias, a resolve by the alias commands, or ``registry-build reindex``.
"""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec

from runtime.aliases.pointer import (
    DEFAULT_ATTEMPTS,
    AliasConflict,
    Found,
    ReadPointer,
    digest,
    pointer_for,
    read_pointer,
    records_after,
    swap,
)
from runtime.aliases.view import RESERVED_ALIASES, Seen, refresh_view, sync_index_alias
from runtime.errors import (
    InvalidNameError,
    KeyNotFound,
    PreconditionFailed,
    RegistryError,
    ResolveError,
)
from runtime.names import check_name
from runtime.registry.head import Head, IndexWriter, head_index, read_head
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
MAX_PAUSE = 0.5  # seconds: the longest a promotion lets older ones go first, once


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
    head = _check_request(store, model, alias, version, actor, reason, signing)
    wanted = AliasRecord(model, alias, version, None, actor, reason, rfc3339(clock()), 1)
    claim = _claim(store, wanted, attempts)
    return Promotion(claim.record, claim.retries, _finish(store, claim, head, signing))


def _check_request(
    store: Store,
    model: str,
    alias: str,
    version: str,
    actor: str,
    reason: str,
    signing: Signing | None,
) -> Head:
    """Every check before the first write: names, texts, the signing key where the registry is
    signed, the version in the index, the alias. Returns the head the index was read at."""
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
    return head


@dataclass(frozen=True)
class _Head:
    """The newest record known: its seq, the digest of its bytes, the version it names, and
    when its promotion was asked."""

    seq: int = 0
    digest: str = ""
    version: str | None = None
    time: str = ""

    @classmethod
    def of(cls, pointer: AliasPointer | None) -> _Head:
        if pointer is None:
            return cls()
        return cls(pointer.seq, pointer.record_digest, pointer.version, pointer.time)


@dataclass(frozen=True)
class _Claim:
    """A claimed record with its digest, the slots lost before it, the pointer as read before
    the first claim, and every record read on the way (ours too: by seq, with its digest)."""

    record: AliasRecord
    digest: str
    retries: int
    read: ReadPointer
    records: dict[int, Found]


def _claim(store: Store, wanted: AliasRecord, attempts: int) -> _Claim:
    """Step 2 (module notes): claim the slot after the pointer's record, and after each slot
    lost, the next one, chained to the record that won it."""
    model, alias = wanted.model, wanted.alias
    read = read_pointer(store, model, alias)
    head, records = _Head.of(read.value), dict[int, Found]()
    for attempt in range(attempts):
        record = msgspec.structs.replace(
            wanted, previous=head.version, seq=head.seq + 1, prev_digest=head.digest
        )
        data = encode_pretty(record)
        try:
            store.put(alias_record_key(model, alias, record.seq), data, PutMode.CREATE)
        except PreconditionFailed:
            head = _winner(store, model, alias, head, records)
            head = _after_elders(store, wanted, head)
            continue
        records[record.seq] = (record, digest(data))
        return _Claim(record, digest(data), attempt, read, records)
    raise AliasConflict(
        f"could not promote {model}@{alias} to {wanted.version} in {store.location}: another "
        f"promotion took the next record {attempts} times in a row; retry"
    )


def _winner(store: Store, model: str, alias: str, head: _Head, records: dict[int, Found]) -> _Head:
    """The record that took slot ``head.seq + 1`` (another promotion's, or a crashed one's),
    noted in ``records``; ``head`` itself when that record is gone again (a broken chain that
    verify_chain reports)."""
    found = next(records_after(store, model, alias, head.seq, head.seq + 1), None)
    if found is None:
        return head
    record, record_digest = found
    records[record.seq] = found
    return _Head(record.seq, record_digest, record.version, record.time)


def _after_elders(store: Store, wanted: AliasRecord, head: _Head) -> _Head:
    """Let the promotions asked before ours go first (step 2, module notes).

    The one that just won a slot was asked ``gap`` seconds before ours: others asked in between
    are likely racing for the next slots, and take about that long, so pause for it (at most
    :data:`MAX_PAUSE`) and go on from the pointer. A winner asked after ours means ours is the
    oldest still racing: claim the next slot at once.
    """
    gap = _seconds_between(head.time, wanted.time)
    if gap <= 0:
        return head
    time.sleep(min(MAX_PAUSE, gap))
    pointer = read_pointer(store, wanted.model, wanted.alias).value
    return _Head.of(pointer) if pointer is not None and pointer.seq > head.seq else head


def _seconds_between(earlier: str, later: str) -> float:
    """``later - earlier`` in seconds, two RFC 3339 stamps; 0 when either is not one."""
    try:
        return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()
    except (ValueError, TypeError):  # not a stamp, or one without a zone
        return 0.0


def _finish(store: Store, claim: _Claim, head: Head, signing: Signing | None) -> tuple[str, ...]:
    """Steps 3 to 5 (module notes), unless a later promotion does them; the promotion already
    happened, so only warn."""
    record = claim.record
    if claim.retries and _superseded(store, record):
        return ()
    try:
        moved = _move_pointer(store, pointer_for(record, claim.digest), claim.read)
    except RegistryError as exc:
        return (f"the pointer was not moved yet (the next promote or resolve will): {exc}",)
    if moved.seq > record.seq:
        return ()
    seen = None if claim.retries else Seen(head, moved)  # after lost races, head is stale
    return _follow_up(store, claim, seen, signing)


def _superseded(store: Store, record: AliasRecord) -> bool:
    """Whether the slot after ``record`` is taken: the promotion that took it moves the pointer
    past ours and writes the map and the view (or, if it crashed, the next promote or resolve
    repairs them, as after any crash between steps 2 and 3)."""
    key = alias_record_key(record.model, record.alias, record.seq + 1)
    try:
        store.head(key)
    except KeyNotFound:
        return False
    return True


def _follow_up(
    store: Store, claim: _Claim, seen: Seen | None, signing: Signing | None
) -> tuple[str, ...]:
    """Steps 4 and 5: the map of index.json, then the view; only warn."""
    record = claim.record
    model, alias = record.model, record.alias
    warnings: list[str] = []
    try:
        mapped = sync_index_alias(store, model, alias, signing=signing, seen=seen, until=record.seq)
    except RegistryError as exc:
        warnings.append(f"index.json's alias map was not updated, so clients do not see it: {exc}")
        mapped = None
    if mapped is not None and mapped.seq > record.seq:
        return tuple(warnings)
    try:
        refresh_view(store, model, alias, covering=record.seq, known=claim.records)
    except RegistryError as exc:
        warnings.append(f"aliases/{model}/index.json was not refreshed: {exc}")
    return tuple(warnings)


def _move_pointer(
    store: Store, pointer: AliasPointer, read: ReadPointer, attempts: int = DEFAULT_ATTEMPTS
) -> AliasPointer:
    """Swap the pointer to ``pointer`` unless it already names that seq or a later one; returns
    the pointer as it is then (``pointer``, or the later one).

    Swapping from any earlier state straight to our record is safe: the pointer only moves
    forward, and whoever holds a later record moves it past ours. A lost swap means another
    writer moved it, so it is read again at once.
    """
    for _ in range(attempts):
        if read.value is not None and read.seq >= pointer.seq:
            return read.value
        if swap(store, pointer.model, pointer.alias, read, pointer):
            return pointer
        read = read_pointer(store, pointer.model, pointer.alias)
    raise AliasConflict(
        f"could not move the pointer of {pointer.model}@{pointer.alias} in {store.location} to "
        f"record {pointer.seq} after {attempts} attempts: other writers keep moving it; retry"
    )
