"""The audit trail: an alias's history, the check of its chain, and re-hashing what a ref names.

Reads only. Records are found by listing ``aliases/<id>/<alias>/`` where the store lists, and by
probing seqs where it cannot (HTTP): every seq up to the newest record (found by bisection, from
the pointer's seq on), so a gap still shows as missing records.
"""

from __future__ import annotations

import contextlib
import re
from functools import partial

import blake3
import msgspec

from runtime.aliases.lookup import no_alias, resolve
from runtime.aliases.pointer import (
    decode,
    digest,
    get_record,
    newest_seq,
    read_pointer,
    read_record,
)
from runtime.errors import CorruptDocument, IntegrityError, KeyNotFound
from runtime.names import check_name
from runtime.registry.index import load_index
from runtime.registry.resolver import Resolution
from runtime.registry.wire import (
    MAX_SEQ,
    AliasPointer,
    AliasRecord,
    BundleDescriptor,
    alias_pointer_key,
    alias_record_key,
    decode_document,
)
from runtime.storage.store import ReadOnlyStore, Store

_SEQ = re.compile("[1-9][0-9]{0,9}")  # a record's file name, before ".json"
Records = list[tuple[int, str, bytes]]  # (seq, key, bytes), by seq


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


def records(store: Store, model: str, alias: str) -> tuple[Records, list[str]]:
    """The record files of ``model@alias``, and any other keys found among them (a listing
    shows those; probing finds records alone)."""
    prefix = f"aliases/{model}/{alias}/"
    try:
        keys = [info.key for info in store.list(prefix)]
    except ReadOnlyStore:
        return _probed(store, model, alias), []
    found: Records = []
    strays: list[str] = []
    for key in keys:
        stem = key[len(prefix) :].removesuffix(".json")
        if key.endswith(".json") and _SEQ.fullmatch(stem) and int(stem) <= MAX_SEQ:
            found.append((int(stem), key, get_record(store, key)))
        else:
            strays.append(key)
    return sorted(found), strays


def _probed(store: Store, model: str, alias: str) -> Records:
    """Every record that exists up to the newest one, found from the pointer's seq on (or from
    the start, when the pointer is missing or unreadable)."""
    after = 0
    with contextlib.suppress(CorruptDocument):
        after = read_pointer(store, model, alias).seq
    ahead = newest_seq(partial(get_record, store), model, alias, after)
    found: Records = []
    for seq in range(1, ahead[0] + 1 if ahead else after + 1):
        key = alias_record_key(model, alias, seq)
        with contextlib.suppress(KeyNotFound):
            found.append((seq, key, get_record(store, key)))
    return found


def history(store: Store, model: str, alias: str) -> tuple[AliasRecord, ...]:
    """Every promotion of ``model@alias``, oldest first, read from the records themselves."""
    check_name("model", model)
    check_name("alias", alias)
    found, _ = records(store, model, alias)
    if not found:
        raise no_alias(store, model, alias, f"no record under aliases/{model}/{alias}/ exists")
    return tuple(
        read_record(data, f"{store.location}/{key}", model, alias, seq) for seq, key, data in found
    )


def verify_chain(store: Store, model: str, alias: str) -> ChainReport:
    """Check the records of ``model@alias`` link up (seq 1..n, digests, versions) and that the
    pointer names the last one. Reads only; ``problems`` says what is wrong and where."""
    check_name("model", model)
    check_name("alias", alias)
    found, strays = records(store, model, alias)
    pointer = read_pointer(store, model, alias).value
    if not found and pointer is None:
        raise no_alias(store, model, alias)
    problems = [f"{key}: not a record (records are named <seq>.json)" for key in strays]
    missing = _gaps([seq for seq, _, _ in found])
    if missing:
        problems.append(f"aliases/{model}/{alias}/: record(s) {missing} missing")
    link, version = "", None
    for seq, key, data in found:
        problems += _record_problems(store, key, data, seq, link, version)
        link = digest(data)
        version = _version_of(data)
    last = found[-1][0] if found else 0
    problems += _pointer_problems(model, alias, pointer, last, link, version)
    return ChainReport(model, alias, len(found), version, tuple(problems))


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
        record = decode(data, AliasRecord, key, store)
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
    problems += _map_problems(store, found) if found.alias else []
    return Verification(
        found.ref, found.model, found.version, found.alias, checks, chain, tuple(problems)
    )


def _map_problems(store: Store, found: Resolution) -> list[str]:
    """A disagreement between the alias map of ``index.json`` (what clients resolve by) and the
    pointer that ``found`` went through."""
    entry = load_index(store).models.get(found.model)
    mapped = entry.aliases.get(found.alias or "") if entry is not None else None
    if mapped == found.version:
        return []
    return [
        f"index.json maps {found.model}@{found.alias} to {mapped or 'nothing'} but its pointer "
        f"names {found.version}, so clients resolve {mapped or 'nothing'} (an unfinished "
        "promotion): promote the alias again, or run `registry-build reindex`"
    ]


def raise_for_problems(report: Verification) -> None:
    """Raise :class:`IntegrityError` listing every problem of ``report``; nothing when intact."""
    if report.problems:
        count = len(report.problems)
        head = f"{report.ref}: {count} problem{'s' if count != 1 else ''} found:"
        raise IntegrityError("\n".join([head, *(f"  - {p}" for p in report.problems)]))
