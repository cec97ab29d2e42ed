"""Pointers and records: reading them, finding the newest record, and rolling a pointer forward.

::

    aliases/<id>/<alias>.json         AliasPointer: the version the alias names now (mutable)
    aliases/<id>/<alias>/<seq>.json   AliasRecord: one immutable record per promotion, seq 1, 2, ...

A pointer moves only by compare-and-swap (:func:`swap`) and only forward: a record ahead of it
(a promotion that crashed before moving it, or lost the swap) is found by probing seqs, which
needs no listing (:func:`newest_pointer`, which the HTTP client uses too), and
:func:`roll_forward` moves the pointer to it. A pointer made from a record depends on the record
alone (:func:`pointer_for`), so every writer that rolls forward writes the same bytes.

Nobody waits for anybody: a lost swap means that another writer moved the pointer forward, so a
writer reads it again at once and is done as soon as it names the record it wanted or a later
one (whoever holds the later record moves it on).

Every file is decoded by :func:`runtime.registry.wire.decode_document`, and a record must name
the model, alias and seq of its key (:func:`read_record`), so the names that become keys are
checked names.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import blake3

from runtime.errors import CorruptDocument, KeyNotFound, PreconditionFailed, RegistryError
from runtime.registry.wire import (
    MAX_SEQ,
    AliasPointer,
    AliasRecord,
    alias_pointer_key,
    alias_record_key,
    decode_document,
    encode_pretty,
)
from runtime.storage.store import PutMode, Store

DEFAULT_ATTEMPTS = 256
FIX = "restore it, or delete it (a pointer is rebuilt from the records by the next promote)"
T = TypeVar("T")
Get = Callable[[str], bytes]  # a key's bytes; KeyNotFound when it does not exist
Found = tuple[AliasRecord, str]  # a record as read, and the digest of its bytes


class AliasConflict(RegistryError):
    """Raised when a promotion keeps losing the race for the next record after every attempt."""


def digest(data: bytes) -> str:
    """BLAKE3 hex digest of ``data`` (the chain's link from one record to the next)."""
    return blake3.blake3(data).hexdigest()


def decode(data: bytes, kind: type[T], key: str, store: Store) -> T:
    """``data`` read from ``key`` of ``store`` as ``kind``, or CorruptDocument naming the file."""
    return decode_document(data, kind, f"{store.location}/{key}", FIX)


def read_record(data: bytes, where: str, model: str, alias: str, seq: int) -> AliasRecord:
    """The record at ``aliases/<model>/<alias>/<seq>.json``, which must say that it is that one."""
    record = decode_document(data, AliasRecord, where, FIX)
    if (record.model, record.alias, record.seq) != (model, alias, seq):
        raise CorruptDocument(
            f"{where}: names {record.model}@{record.alias} record {record.seq}, not "
            f"{model}@{alias} record {seq}; the registry is corrupt or hostile: {FIX}"
        )
    return record


@dataclass(frozen=True)
class ReadPointer:
    """The pointer as read: its value (None when absent) and the etag to swap against."""

    value: AliasPointer | None
    etag: str | None

    @property
    def seq(self) -> int:
        """The seq of the record it names; 0 when there is no pointer."""
        return self.value.seq if self.value else 0


MAX_RECORD_BYTES = 64 << 10  # a pointer or a record: its actor, reason and digests are bounded


def get_record(store: Store, key: str) -> bytes:
    """The bytes of a pointer or record at ``key``, refused unread past :data:`MAX_RECORD_BYTES`."""
    return store.get(key, limit=MAX_RECORD_BYTES)[0]


def read_pointer(store: Store, model: str, alias: str) -> ReadPointer:
    """The pointer of ``model@alias`` and its etag; an empty :class:`ReadPointer` when absent."""
    key = alias_pointer_key(model, alias)
    try:
        data, etag = store.get(key, limit=MAX_RECORD_BYTES)
    except KeyNotFound:
        return ReadPointer(None, None)
    return ReadPointer(decode(data, AliasPointer, key, store), etag)


def records_after(
    store: Store,
    model: str,
    alias: str,
    seq: int,
    until: int | None = None,
    known: Mapping[int, Found] | None = None,
) -> Iterator[Found]:
    """Records seq+1, seq+2, ... with the digest of each, up to the first missing one (or up to
    seq ``until``, known to exist); those in ``known`` (by seq, read earlier) are not read again."""
    known = known or {}
    while until is None or seq < until:
        seq += 1
        if seq in known:
            yield known[seq]
            continue
        key = alias_record_key(model, alias, seq)
        try:
            data, _ = store.get(key, limit=MAX_RECORD_BYTES)
        except KeyNotFound:
            return
        yield read_record(data, f"{store.location}/{key}", model, alias, seq), digest(data)


def newest_seq(get: Get, model: str, alias: str, after: int = 0) -> tuple[int, bytes] | None:
    """The newest record of ``model@alias`` after seq ``after`` and its bytes, or None when record
    ``after + 1`` does not exist.

    Works without a listing (HTTP has none): records ``after + 1, + 2, + 4, ...`` are read until
    one is missing, then the gap is bisected, so n records ahead cost about 2·log2(n) reads. With
    a gap in the records the answer is some record around it; verifying the chain reports the gap.
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
    return None if low == after else (low, read[low])


def newest_pointer(
    get: Get, where: str, model: str, alias: str, after: int = 0
) -> AliasPointer | None:
    """The pointer that the newest record of ``model@alias`` after seq ``after`` makes, or None
    when record ``after + 1`` does not exist (:func:`newest_seq`); ``get`` reads a key of the
    registry at ``where``."""
    found = newest_seq(get, model, alias, after)
    if found is None:
        return None
    seq, data = found
    where = f"{where}/{alias_record_key(model, alias, seq)}"
    return pointer_for(read_record(data, where, model, alias, seq), digest(data))


def newest(store: Store, model: str, alias: str, after: int) -> AliasPointer | None:
    """:func:`newest_pointer` over ``store``."""
    return newest_pointer(partial(get_record, store), store.location, model, alias, after)


def pointer_for(record: AliasRecord, record_digest: str) -> AliasPointer:
    """The pointer to ``record``, made from the record alone."""
    return AliasPointer(
        record.model, record.alias, record.version, record.seq, record_digest, record.time
    )


def swap(store: Store, model: str, alias: str, read: ReadPointer, new: AliasPointer) -> bool:
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


def backoff(attempt: int) -> None:
    """Sleep before retry ``attempt``: full jitter spreads racing writers apart."""
    time.sleep(random.uniform(0, min(1.0, 0.005 * 2**attempt)))


def roll_forward(
    store: Store, model: str, alias: str, *, at_least: int = 0, attempts: int = DEFAULT_ATTEMPTS
) -> AliasPointer | None:
    """Move the pointer to the newest record if records lie ahead of it (crash or race repair).

    Returns the pointer once it is at the newest record found or later (a lost swap means
    another writer moved it, maybe far enough), or at seq ``at_least`` or later; None when the
    alias has neither pointer nor records.
    """
    target = at_least
    for _ in range(attempts):
        read = read_pointer(store, model, alias)
        if target and read.seq >= target:
            return read.value
        pointer = newest(store, model, alias, read.seq)
        if pointer is None:
            return read.value
        if swap(store, model, alias, read, pointer):
            return pointer
        target = max(target, pointer.seq)
    raise AliasConflict(
        f"could not move the pointer of {model}@{alias} in {store.location} forward after "
        f"{attempts} attempts: other writers keep moving it; retry"
    )
