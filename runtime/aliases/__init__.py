"""Alias promotion through atomic pointer files, with a tamper-evident audit trail.

An alias (``production``, ``stable``) names one version of a model and moves by promotion. The
same protocol works on a directory and on S3, because it needs only the store's create-only and
replace-if-etag-matches writes::

    aliases/<id>/<alias>.json         AliasPointer: the version the alias names now (mutable)
    aliases/<id>/<alias>/<seq>.json   AliasRecord: one immutable record per promotion, seq 1, 2, ...
    aliases/<id>/index.json           AliasIndex: a derived view of every alias with its history

Promotion:

1. Read the pointer (seq ``n``, the digest of record ``n``), or nothing for a new alias.
2. Claim seq ``n+1`` by writing its record create-only. The record carries the previous version
   and ``prev_digest``, the BLAKE3 of record ``n``'s bytes, so any edit or gap in the chain shows.
   Losing this write means another promotion took ``n+1``: roll the pointer forward, then retry
   from a fresh read (bounded, with jittered backoff), and finally raise :class:`AliasConflict`.
3. Move the pointer to the new record by compare-and-swap on the etag read in step 1. Once the
   record exists the promotion has happened: if the swap loses, the pointer is rolled forward to
   the newest record (which is ours or later), and never moves backwards.
4. Rewrite the derived view (compare-and-swap, merged from the records). Readers of aliases never
   depend on it; a page does.

A crash between steps 2 and 3 leaves a record ahead of the pointer: the next promotion, or the
next :func:`resolve_alias`, finds it and rolls the pointer forward. A crash during an alias's first
promotion leaves records and no pointer at all (so does a deleted pointer): :func:`resolve_alias`
then finds the newest record by probing (:func:`newest_pointer`, which the HTTP client uses too,
having no listing) and rolls forward from it.

Every file under ``aliases/`` is decoded by :func:`runtime.registry.wire.decode_document`, and a
record must
name the model, alias and seq of its key, so the names that become keys are checked names.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import blake3
import msgspec

from runtime.errors import (
    CorruptDocument,
    IntegrityError,
    InvalidNameError,
    KeyNotFound,
    PreconditionFailed,
    RegistryError,
    ResolveError,
)
from runtime.names import (
    TARGETS,
    UNIVERSAL,
    canonical_target,
    check_name,
    highest_version,
    is_name,
    parse_ref,
    version_key,
)
from runtime.registry.wire import (
    MAX_ACTOR,
    MAX_REASON,
    MAX_SEQ,
    AliasIndex,
    AliasPointer,
    AliasRecord,
    AliasView,
    BundleDescriptor,
    Index,
    alias_index_key,
    alias_pointer_key,
    alias_record_key,
    decode_document,
    encode,
    encode_pretty,
)
from runtime.storage.store import PutMode, Store

DEFAULT_ATTEMPTS = 256
RESERVED_ALIASES = frozenset({"index"})  # aliases/<id>/index.json is the model's alias view
_FIX = "restore it, or delete it (a pointer is rebuilt from the records by the next promote)"
_SEQ = re.compile("[1-9][0-9]{0,9}")  # a record's file name, before ".json"

Clock = Callable[[], datetime]
T = TypeVar("T")


class AliasConflict(RegistryError):
    """Raised when a promotion keeps losing the race for the next record after every attempt."""


def utc_now() -> datetime:
    """The current time in UTC (the default clock)."""
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """``2026-11-22T08:00:00.123Z``: UTC, millisecond precision."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def digest(data: bytes) -> str:
    """BLAKE3 hex digest of ``data`` (the chain's link from one record to the next)."""
    return blake3.blake3(data).hexdigest()


def default_actor(explicit: str | None = None) -> str:
    """Who promotes: ``explicit`` (``--actor``), else ``$GITHUB_ACTOR``, else the user name."""
    return explicit or os.environ.get("GITHUB_ACTOR") or getpass.getuser()


@dataclass(frozen=True)
class Promotion:
    """What :func:`promote_detailed` did: the record, races lost, and non-fatal follow-up issues."""

    record: AliasRecord
    retries: int
    warnings: tuple[str, ...] = ()


class Resolution(msgspec.Struct, frozen=True):
    """What a ref names: the model, its version, the alias it went through, and its bundles."""

    ref: str
    model: str
    version: str
    alias: str | None = None
    bundles: tuple[BundleDescriptor, ...] = ()


class ChainReport(msgspec.Struct, frozen=True):
    """The outcome of :func:`verify_chain`; ``problems`` is empty when the chain is intact."""

    model: str
    alias: str
    records: int
    version: str | None
    problems: tuple[str, ...] = ()


class BundleCheck(msgspec.Struct, frozen=True):
    """One bundle re-hashed by :func:`verify`."""

    target: str
    hash: str
    size_bytes: int
    ok: bool
    problem: str = ""


class Verification(msgspec.Struct, frozen=True):
    """The outcome of :func:`verify`; ``problems`` is empty when everything checked out."""

    ref: str
    model: str
    version: str
    alias: str | None = None
    bundles: tuple[BundleCheck, ...] = ()
    chain: ChainReport | None = None
    problems: tuple[str, ...] = ()


# --- reading -----------------------------------------------------------------------------------


def _decode(data: bytes, kind: type[T], key: str, store: Store) -> T:
    return decode_document(data, kind, f"{store.location}/{key}", _FIX)


def _record(data: bytes, where: str, model: str, alias: str, seq: int) -> AliasRecord:
    """The record at ``aliases/<model>/<alias>/<seq>.json``, which must say that it is that one."""
    record = decode_document(data, AliasRecord, where, _FIX)
    if (record.model, record.alias, record.seq) != (model, alias, seq):
        raise CorruptDocument(
            f"{where}: names {record.model}@{record.alias} record {record.seq}, not "
            f"{model}@{alias} record {seq}; the registry is corrupt or hostile: {_FIX}"
        )
    return record


def load_index(store: Store) -> Index:
    """The registry's ``index.json``."""
    try:
        data, _ = store.get("index.json")
    except KeyNotFound:
        raise ResolveError(
            f"{store.location} has no index.json: build or publish the registry there first"
        ) from None
    return decode_document(
        data, Index, f"{store.location}/index.json", "rebuild it with `registry-build reindex`"
    )


def versions_of(index: Index, model: str, location: str) -> list[str]:
    """The versions ``index`` holds for ``model`` (natural order), or an error listing models."""
    versions = {d.version for d in index.bundles if d.id == model}
    if not versions:
        models = sorted({d.id for d in index.bundles})
        raise ResolveError(
            f"model {model!r} is not in the index of {location} "
            f"(models: {', '.join(models) or 'none'})"
        )
    return sorted(versions, key=version_key)


@dataclass(frozen=True)
class _Pointer:
    """The pointer as read: its value (None when absent) and the etag to swap against."""

    value: AliasPointer | None
    etag: str | None

    @property
    def seq(self) -> int:
        return self.value.seq if self.value else 0


def _read_pointer(store: Store, model: str, alias: str) -> _Pointer:
    key = alias_pointer_key(model, alias)
    try:
        data, etag = store.get(key)
    except KeyNotFound:
        return _Pointer(None, None)
    return _Pointer(_decode(data, AliasPointer, key, store), etag)


def _records_after(
    store: Store, model: str, alias: str, seq: int, until: int | None = None
) -> Iterator[tuple[AliasRecord, str]]:
    """Records seq+1, seq+2, ... with the digest of each, up to the first missing one (or up to
    seq ``until``, known to exist)."""
    while until is None or seq < until:
        seq += 1
        key = alias_record_key(model, alias, seq)
        try:
            data, _ = store.get(key)
        except KeyNotFound:
            return
        yield _record(data, f"{store.location}/{key}", model, alias, seq), digest(data)


def newest_pointer(
    get: Callable[[str], bytes], where: str, model: str, alias: str, after: int = 0
) -> AliasPointer | None:
    """The pointer that the newest record of ``model@alias`` after seq ``after`` makes, or None
    when record ``after + 1`` does not exist.

    Works without a listing (HTTP has none): ``get(key)`` reads a key of the registry at ``where``
    (raising KeyNotFound). Records ``after + 1, + 2, + 4, ...`` are read until one is missing, then
    the gap is bisected, so n records ahead cost about 2·log2(n) reads. With a gap in the records
    the answer is some record around it; :func:`verify_chain` reports the gap.
    """
    read: dict[int, bytes] = {}

    def exists(seq: int) -> bool:
        with contextlib.suppress(KeyNotFound):
            read[seq] = get(alias_record_key(model, alias, seq))
            return True
        return False

    low, step = after, 1
    while low + step <= MAX_SEQ and exists(low + step):
        low, step = low + step, step * 2
    high = min(low + step, MAX_SEQ + 1)  # missing, or past the last seq there can be
    while high - low > 1 and low > after:
        middle = (low + high) // 2
        low, high = (middle, high) if exists(middle) else (low, middle)
    if low == after:
        return None
    where = f"{where}/{alias_record_key(model, alias, low)}"
    return _pointer_for(_record(read[low], where, model, alias, low), digest(read[low]))


def _newest(store: Store, model: str, alias: str, after: int) -> AliasPointer | None:
    return newest_pointer(lambda key: store.get(key)[0], store.location, model, alias, after)


def _pointer_for(record: AliasRecord, record_digest: str) -> AliasPointer:
    # Derived from the record alone, so every writer that rolls forward writes the same bytes.
    return AliasPointer(
        record.model, record.alias, record.version, record.seq, record_digest, record.time
    )


def _swap(store: Store, model: str, alias: str, read: _Pointer, new: AliasPointer) -> bool:
    """Replace the pointer if it is still what was read; False when another writer moved it."""
    key = alias_pointer_key(model, alias)
    try:
        if read.etag is None:
            store.put(key, encode_pretty(new), PutMode.CREATE)
        else:
            store.put(key, encode_pretty(new), PutMode.MATCH, read.etag)
    except (PreconditionFailed, KeyNotFound):
        return False
    return True


def _backoff(attempt: int) -> None:
    # Full jitter: spreads racing writers apart without a fixed order.
    time.sleep(random.uniform(0, min(1.0, 0.005 * 2**attempt)))


def roll_forward(
    store: Store, model: str, alias: str, *, at_least: int = 0, attempts: int = DEFAULT_ATTEMPTS
) -> AliasPointer | None:
    """Move the pointer to the newest record if records lie ahead of it (crash or race repair).

    Returns the pointer once it is at the newest record or at seq ``at_least`` or later; None when
    the alias has neither pointer nor records.
    """
    for attempt in range(attempts):
        read = _read_pointer(store, model, alias)
        if at_least and read.seq >= at_least:
            return read.value
        pointer = _newest(store, model, alias, read.seq)
        if pointer is None:
            return read.value
        if _swap(store, model, alias, read, pointer):
            return pointer
        _backoff(attempt)
    raise AliasConflict(
        f"could not move the pointer of {model}@{alias} in {store.location} forward after "
        f"{attempts} attempts: other writers keep moving it; retry"
    )


# --- promoting ---------------------------------------------------------------------------------


def check_alias(index: Index, model: str, alias: str, location: str) -> None:
    """Refuse alias names that could be read as a version or collide with the alias view."""
    check_name("alias", alias)
    if alias in RESERVED_ALIASES:
        raise InvalidNameError(
            f"alias {alias!r} is reserved (aliases/{model}/{alias}.json is the model's alias "
            "view): pick another name, e.g. 'production' or 'stable'"
        )
    if alias in versions_of(index, model, location):
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
) -> AliasRecord:
    """Point ``model@alias`` at ``version`` (which the index must hold); returns its record."""
    return promote_detailed(
        store, model, alias, version, actor, reason, clock=clock, attempts=attempts
    ).record


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
) -> Promotion:
    """:func:`promote`, also reporting how many races it lost and any follow-up that failed."""
    check_name("model", model)
    check_name("version", version)
    _check_text("actor", actor, MAX_ACTOR, required=True)
    _check_text("reason", reason, MAX_REASON, required=False)
    index = load_index(store)
    versions = versions_of(index, model, store.location)
    if version not in versions:
        raise ResolveError(
            f"model {model!r} has no version {version!r} in {store.location} "
            f"(versions: {', '.join(versions)}): publish it first or pick one of those"
        )
    check_alias(index, model, alias, store.location)
    read = _read_pointer(store, model, alias)
    head = _Head.of(read.value)
    for attempt in range(attempts):
        record = AliasRecord(
            model,
            alias,
            version,
            head.version,
            actor,
            reason,
            rfc3339(clock()),
            head.seq + 1,
            head.digest,
        )
        data = encode_pretty(record)
        try:
            store.put(alias_record_key(model, alias, record.seq), data, PutMode.CREATE)
        except PreconditionFailed:
            head = _advance(store, model, alias, head)
            _backoff(attempt)
            continue
        return Promotion(record, attempt, _finish(store, record, digest(data), read))
    raise AliasConflict(
        f"could not promote {model}@{alias} to {version} in {store.location}: another promotion "
        f"took the next record {attempts} times in a row; retry"
    )


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
    pointer = _read_pointer(store, model, alias).value
    if pointer is not None and pointer.seq > head.seq + 1:
        return _Head.of(pointer)
    key = alias_record_key(model, alias, head.seq + 1)
    try:
        data, _ = store.get(key)
    except KeyNotFound:
        return head  # deleted since: a broken chain that verify_chain reports
    record = _decode(data, AliasRecord, key, store)
    return _Head(head.seq + 1, digest(data), record.version)


def _finish(
    store: Store, record: AliasRecord, record_digest: str, read: _Pointer
) -> tuple[str, ...]:
    """Move the pointer and refresh the view; the promotion already happened, so only warn."""
    warnings: list[str] = []
    model, alias = record.model, record.alias
    try:
        _move_pointer(store, _pointer_for(record, record_digest), read)
    except RegistryError as exc:
        warnings.append(f"the pointer was not moved yet (the next promote or resolve will): {exc}")
    try:
        refresh_view(store, model, alias, covering=record.seq)
    except RegistryError as exc:
        warnings.append(f"aliases/{model}/index.json was not refreshed: {exc}")
    return tuple(warnings)


def _move_pointer(
    store: Store, pointer: AliasPointer, read: _Pointer, attempts: int = DEFAULT_ATTEMPTS
) -> None:
    """Swap the pointer to ``pointer`` unless it already names that seq or a later one.

    Swapping from any earlier state straight to our record is safe: the pointer only moves
    forward, and whoever holds a later record moves it past ours.
    """
    for attempt in range(attempts):
        if read.seq >= pointer.seq or _swap(store, pointer.model, pointer.alias, read, pointer):
            return
        _backoff(attempt)
        read = _read_pointer(store, pointer.model, pointer.alias)
    raise AliasConflict(
        f"could not move the pointer of {pointer.model}@{pointer.alias} in {store.location} to "
        f"record {pointer.seq} after {attempts} attempts: other writers keep moving it; retry"
    )


# --- the derived view --------------------------------------------------------------------------


def alias_names(store: Store, model: str) -> list[str]:
    """Every alias of ``model`` that has a pointer or a file under its folder, sorted; a name
    that is not a valid alias (a stray file) is left out, so no such name becomes a key."""
    prefix = f"aliases/{check_name('model', model)}/"
    names: set[str] = set()
    for info in store.list(prefix):
        rest = info.key[len(prefix) :]
        if "/" in rest:
            names.add(rest.split("/", 1)[0])
        elif rest.endswith(".json"):
            names.add(rest.removesuffix(".json"))
    return sorted(n for n in names if is_name(n) and n not in RESERVED_ALIASES)


def _read_view(store: Store, model: str) -> tuple[AliasIndex | None, str | None]:
    """The view and its etag; (None, etag) when it exists but is unreadable (it is rebuilt)."""
    key = alias_index_key(model)
    try:
        data, etag = store.get(key)
    except KeyNotFound:
        return AliasIndex(model), None
    try:
        return _decode(data, AliasIndex, key, store), etag
    except CorruptDocument:
        return None, etag


def _merged(
    store: Store, model: str, view: AliasView | None, alias: str, until: int | None
) -> AliasView | None:
    """``view`` extended by the records after its last one (up to seq ``until`` when given, which
    saves probing for the end); None when there is nothing new."""
    history = list(view.history) if view else []
    if [r.seq for r in history] != list(range(1, len(history) + 1)):
        history = []  # not a prefix of the chain: rebuild this alias from its records
    new = [record for record, _ in _records_after(store, model, alias, len(history), until)]
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
) -> AliasIndex:
    """Bring ``aliases/<model>/index.json`` up to the records of ``alias`` (all when None).

    The view only ever grows by records read from the store, and is written by compare-and-swap,
    so concurrent refreshes converge on the full history. With ``covering``, stop as soon as the
    view holds that seq of ``alias``: whoever wrote it had read everything up to there, and a
    later promotion refreshes it for its own record.
    """
    for attempt in range(attempts):
        view, etag = _read_view(store, model)
        names = [alias] if alias and view is not None else alias_names(store, model)
        current = {v.alias: v for v in (view.aliases if view else ())}
        if view is not None and alias in current and 0 < covering <= current[alias].seq:
            return view
        until = covering if alias and view is not None and covering else None
        changed = {n: m for n in names if (m := _merged(store, model, current.get(n), n, until))}
        if not changed and view is not None:
            return view
        current.update(changed)
        updated = AliasIndex(model, tuple(current[n] for n in sorted(current)))
        mode = PutMode.CREATE if etag is None else PutMode.MATCH
        try:
            store.put(alias_index_key(model), encode(updated), mode, etag)
            return updated
        except (PreconditionFailed, KeyNotFound):
            _backoff(attempt)
    raise AliasConflict(
        f"could not refresh {alias_index_key(model)} in {store.location} after {attempts} "
        "attempts: other promotions keep rewriting it; it catches up on the next promotion"
    )


# --- resolving and listing ---------------------------------------------------------------------


def _no_alias(store: Store, model: str, alias: str, damage: str | None = None) -> ResolveError:
    """The error for an alias that cannot be read: unknown, or known by files that are damaged
    (``damage`` says how, when the caller knows better than "no pointer and no record 1")."""
    known = alias_names(store, model)
    if alias in known:
        damage = damage or (
            f"neither its pointer {alias_pointer_key(model, alias)} nor its first record "
            f"{alias_record_key(model, alias, 1)} exists"
        )
        return ResolveError(
            f"alias {alias!r} of model {model!r} in {store.location} is damaged: {damage}; "
            "restore the files, or promote the alias again"
        )
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
    found = _find_alias(store, model, alias, repair)
    if found is None:
        raise _no_alias(store, model, alias)
    return found


def _find_alias(store: Store, model: str, alias: str, repair: bool) -> AliasPointer | None:
    """:func:`resolve_alias`, or None when the alias has neither a pointer nor a first record."""
    read = _read_pointer(store, model, alias)
    newest = _newest(store, model, alias, read.seq)
    if newest is None:
        return read.value
    if repair:  # a read-only or contended store may refuse: the answer above is still right
        with contextlib.suppress(RegistryError):
            newest = roll_forward(store, model, alias, attempts=8) or newest
            refresh_view(store, model, alias, attempts=8)
    return newest


def _canonical(target: str) -> str:
    canon = canonical_target(target)
    if canon is None:
        raise InvalidNameError(
            f"target {target!r} is not a known target (known: {', '.join(TARGETS)})"
        )
    return canon


def _bundles(
    index: Index, model: str, version: str, target: str | None
) -> tuple[BundleDescriptor, ...]:
    found = [d for d in index.bundles if d.id == model and d.version == version]
    if target is None:
        return tuple(sorted(found, key=lambda d: d.target))
    canon = _canonical(target)
    for wanted in (canon, UNIVERSAL):
        for d in found:
            if d.target == wanted:
                return (d,)
    targets = ", ".join(sorted(d.target for d in found))
    raise ResolveError(
        f"{model}@{version} has no bundle for target {canon!r} or {UNIVERSAL!r} "
        f"(targets: {targets})"
    )


def resolve(
    store: Store, ref: str, target: str | None = None, *, repair: bool = True
) -> Resolution:
    """What ``ref`` names: ``model`` (highest version), ``model@version`` or ``model@alias``.

    As DESIGN.md and the client have it: a selector is an alias when a pointer (or a record) of
    that name exists, else a version. With ``target`` the one bundle for it (or ``universal``)
    is returned, else every target of the version.
    """
    parsed = parse_ref(ref)
    index = load_index(store)
    versions = versions_of(index, parsed.model, store.location)
    alias: str | None = None
    if parsed.selector is None:
        version = highest_version(versions)
    else:
        pointer = _find_alias(store, parsed.model, parsed.selector, repair)
        if pointer is not None:
            alias, version = parsed.selector, _alias_version(pointer, versions, store.location)
        elif parsed.selector in versions:
            version = parsed.selector
        elif parsed.selector in (known := alias_names(store, parsed.model)):
            raise _no_alias(store, parsed.model, parsed.selector)
        else:
            raise ResolveError(
                f"model {parsed.model!r} has no version or alias {parsed.selector!r} in "
                f"{store.location} (versions: {', '.join(versions)}; "
                f"aliases: {', '.join(known) or 'none'})"
            )
    bundles = _bundles(index, parsed.model, version, target)
    return Resolution(str(parsed), parsed.model, version, alias, bundles)


def _alias_version(pointer: AliasPointer, versions: list[str], location: str) -> str:
    if pointer.version not in versions:
        raise ResolveError(
            f"{pointer.model}@{pointer.alias} points at version {pointer.version!r}, which the "
            f"index of {location} no longer holds (versions: {', '.join(versions)}): promote "
            "the alias to one of those"
        )
    return pointer.version


def aliases(store: Store, model: str) -> tuple[AliasView, ...]:
    """Every alias of ``model`` with its current version and latest record (no history)."""
    versions_of(load_index(store), model, store.location)
    views = []
    for name in alias_names(store, model):
        pointer = resolve_alias(store, model, name, repair=False)
        key = alias_record_key(model, name, pointer.seq)
        try:
            data = store.get(key)[0]
        except KeyNotFound:
            damage = f"its pointer names record {pointer.seq}, but {key} does not exist"
            raise _no_alias(store, model, name, damage) from None
        record = _record(data, f"{store.location}/{key}", model, name, pointer.seq)
        views.append(
            AliasView(name, pointer.version, pointer.seq, record.time, record.actor, record.reason)
        )
    return tuple(views)


def _record_keys(store: Store, model: str, alias: str) -> tuple[dict[int, str], list[str]]:
    """The records of an alias by seq, and any other keys found among them."""
    prefix = f"aliases/{model}/{alias}/"
    by_seq: dict[int, str] = {}
    strays: list[str] = []
    for info in store.list(prefix):
        stem = info.key[len(prefix) :].removesuffix(".json")
        if info.key.endswith(".json") and _SEQ.fullmatch(stem) and int(stem) <= MAX_SEQ:
            by_seq[int(stem)] = info.key
        else:
            strays.append(info.key)
    return by_seq, strays


def history(store: Store, model: str, alias: str) -> tuple[AliasRecord, ...]:
    """Every promotion of ``model@alias``, oldest first, read from the records themselves."""
    check_name("model", model)
    check_name("alias", alias)
    by_seq, _ = _record_keys(store, model, alias)
    if not by_seq:
        raise _no_alias(store, model, alias, f"no record under aliases/{model}/{alias}/ exists")
    return tuple(
        _record(store.get(key)[0], f"{store.location}/{key}", model, alias, seq)
        for seq, key in sorted(by_seq.items())
    )


# --- verifying ---------------------------------------------------------------------------------


def verify_chain(store: Store, model: str, alias: str) -> ChainReport:
    """Check the records of ``model@alias`` link up (seq 1..n, digests, versions) and that the
    pointer names the last one. Reads only; ``problems`` says what is wrong and where."""
    check_name("model", model)
    check_name("alias", alias)
    by_seq, strays = _record_keys(store, model, alias)
    read = _read_pointer(store, model, alias)
    if not by_seq and read.value is None:
        raise _no_alias(store, model, alias)
    problems = [f"{key}: not a record (records are named <seq>.json)" for key in strays]
    missing = _gaps(sorted(by_seq))
    if missing:
        problems.append(f"aliases/{model}/{alias}/: record(s) {missing} missing")
    link, version = "", None
    for seq in sorted(by_seq):
        data = store.get(by_seq[seq])[0]
        problems += _record_problems(store, by_seq[seq], data, seq, link, version)
        link = digest(data)
        version = _version_of(data)
    problems += _pointer_problems(model, alias, read.value, max(by_seq, default=0), link, version)
    return ChainReport(model, alias, len(by_seq), version, tuple(problems))


def _gaps(seqs: list[int]) -> str:
    """The seqs missing before the last of ``seqs`` (sorted), as "2, 5-9"; "" when none. Spelled
    as ranges, so a record named 2000000000.json costs a line, not a list of two billion."""
    spans, expected = [], 1
    for seq in seqs:
        if seq > expected:
            spans.append(str(expected) if seq == expected + 1 else f"{expected}-{seq - 1}")
        expected = seq + 1
    return ", ".join(spans)


def _version_of(data: bytes) -> str | None:
    with contextlib.suppress(CorruptDocument):
        return decode_document(data, AliasRecord, "", "").version
    return None


def _record_problems(
    store: Store, key: str, data: bytes, seq: int, link: str, previous: str | None
) -> list[str]:
    try:
        record = _decode(data, AliasRecord, key, store)
    except CorruptDocument as exc:
        return [str(exc)]
    problems = []
    model, alias = key.split("/")[1:3]
    if (record.model, record.alias, record.seq) != (model, alias, seq):
        problems.append(
            f"{key}: names {record.model}@{record.alias} seq {record.seq}, "
            f"expected {model}@{alias} seq {seq}"
        )
    if record.prev_digest != link:
        problems.append(
            f"{key}: prev_digest {record.prev_digest or '(empty)'} does not match the previous "
            f"record ({link or 'none, so it must be empty'}): "
            "a record was edited, replaced or removed"
        )
    if record.previous != previous:
        problems.append(
            f"{key}: previous version {record.previous!r} but the record before names {previous!r}"
        )
    return problems


def _pointer_problems(
    model: str, alias: str, pointer: AliasPointer | None, last: int, link: str, version: str | None
) -> list[str]:
    key = alias_pointer_key(model, alias)
    if pointer is None:
        return [f"{key}: missing although {last} record(s) exist (the next promote restores it)"]
    if pointer.seq < last:
        return [
            f"{key}: at seq {pointer.seq}, behind the last record {last} (an unfinished "
            "promotion; the next promote or resolve rolls it forward)"
        ]
    if (pointer.seq, pointer.record_digest, pointer.version) != (last, link, version):
        return [
            f"{key}: names seq {pointer.seq}, version {pointer.version!r}, digest "
            f"{pointer.record_digest}, but the last record is seq {last}, version {version!r}, "
            f"digest {link}"
        ]
    return []


def check_bundle(store: Store, descriptor: BundleDescriptor) -> BundleCheck:
    """Stream the bundle's blob from ``store`` and compare its BLAKE3 and size with the index."""
    key = descriptor.blob_key
    hasher, size = blake3.blake3(), 0
    try:
        with store.open(key) as handle:
            while chunk := handle.read(1 << 20):
                hasher.update(chunk)
                size += len(chunk)
    except KeyNotFound:
        problem = f"{key} is missing from {store.location}: republish this bundle"
        return BundleCheck(
            descriptor.target, descriptor.hash, descriptor.size_bytes, False, problem
        )
    actual = hasher.hexdigest()
    if (actual, size) == (descriptor.hash, descriptor.size_bytes):
        return BundleCheck(descriptor.target, descriptor.hash, descriptor.size_bytes, True)
    problem = (
        f"{key} has BLAKE3 {actual} and {size} bytes, but the index names "
        f"{descriptor.hash} and {descriptor.size_bytes} bytes: the blob is damaged, republish it"
    )
    return BundleCheck(descriptor.target, descriptor.hash, descriptor.size_bytes, False, problem)


def verify(store: Store, ref: str, target: str | None = None) -> Verification:
    """Re-hash the bundles ``ref`` names (one target, or all of the version) and, for an alias,
    check its chain. Reads only; ``problems`` collects everything wrong."""
    found = resolve(store, ref, target, repair=False)
    checks = tuple(check_bundle(store, d) for d in found.bundles)
    chain = verify_chain(store, found.model, found.alias) if found.alias else None
    problems = [c.problem for c in checks if not c.ok]
    problems += list(chain.problems) if chain else []
    return Verification(
        found.ref, found.model, found.version, found.alias, checks, chain, tuple(problems)
    )


def raise_for_problems(report: Verification) -> None:
    """Raise :class:`IntegrityError` listing every problem of ``report``; nothing when intact."""
    if report.problems:
        count = len(report.problems)
        head = f"{report.ref}: {count} problem{'s' if count != 1 else ''} found:"
        raise IntegrityError("\n".join([head, *(f"  - {p}" for p in report.problems)]))
