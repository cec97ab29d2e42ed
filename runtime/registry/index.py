"""Reading ``index.json`` and shards: the one place that decodes a registry's catalog.

::

    index.json                  Index, format 2 (:mod:`runtime.registry.wire`); format 1 is read
                                only by a publisher, to upgrade it (:func:`read_published`)
    shards/<id>/<blake3>.json   Shard: checked against the size and BLAKE3 that index.json names
                                before it is decoded (:func:`check_shard`)

Every reader (the client, the alias commands, the HTTP routes, a publisher merging into an index)
goes through :func:`decode_index`, which decodes the ``format`` field first, with a struct of that
field alone, and only then the whole document as the type of that format: a document of another
format is refused by its number (:class:`IndexFormatError`), never misread as a corrupt one, and
a publisher never merges into (and so overwrites) an index it does not understand. Decoding
validates every field (:func:`runtime.registry.wire.decode_document`).

A shard is bytes a registry sends like a blob's: its size and digest are checked against the
entry of ``index.json`` first (a tampered shard is refused like a tampered blob,
:class:`~runtime.errors.IntegrityError`), then it must be the shard of the model asked for.
"""

from __future__ import annotations

import contextlib

import blake3
import msgspec

from runtime.documents import quoted
from runtime.errors import CorruptDocument, IntegrityError, KeyNotFound, RegistryError, ResolveError
from runtime.registry.resolver import ModelState, unknown_model
from runtime.registry.wire import (
    INDEX_FORMAT,
    Index,
    IndexV1,
    ModelEntry,
    Shard,
    ShardRef,
    decode_document,
    shard_key,
)
from runtime.storage.store import MAX_DOCUMENT, ObjectTooLarge, Store

INDEX_KEY = "index.json"
REBUILD = "rebuild it from descriptors/ with `registry-build reindex` (or ask the publisher to)"
UPGRADE = (
    "upgrade the registry to format 2 with `registry-build reindex DEST` (a publish to it "
    "upgrades it too), or ask the publisher to"
)


class IndexFormatError(RegistryError, ValueError):
    """Raised when an ``index.json`` is of a newer format than this version reads."""


class OlderIndexFormat(IndexFormatError):
    """Raised when an ``index.json`` is of format 1, which only a publisher reads (to upgrade)."""


class NoIndex(ResolveError, FileNotFoundError):
    """Raised when a location holds no ``index.json``: it is not (yet) a registry."""


class _Format(msgspec.Struct):
    """The one field every format of ``index.json`` shares (format 1 may leave it out)."""

    format: int = 1


def index_format(data: bytes, where: str, fix: str = REBUILD) -> int:
    """The format number of an ``index.json``; :class:`IndexFormatError` when it is newer than
    :data:`INDEX_FORMAT`."""
    number = decode_document(data, _Format, where, fix).format
    if number > INDEX_FORMAT:
        raise IndexFormatError(
            f"{where} has format {number}, newer than the {INDEX_FORMAT} this version of "
            "bundle-registry reads: upgrade bundle-registry (pip install -U bundle-registry)"
        )
    return number


def decode_index(data: bytes, where: str, fix: str = REBUILD) -> Index:
    """``data`` as an Index of format 2; :class:`~runtime.errors.CorruptDocument` naming ``where``
    when it is not one, :class:`IndexFormatError` when its format is another."""
    if index_format(data, where, fix) < INDEX_FORMAT:
        raise OlderIndexFormat(
            f"{where} has format 1, older than the {INDEX_FORMAT} this version of "
            f"bundle-registry reads: {UPGRADE}"
        )
    try:
        return decode_document(data, Index, where, fix)
    except CorruptDocument as exc:
        raise _in_entry(data, where, fix) or exc from None


class _Entries(msgspec.Struct):
    models: dict[str, msgspec.Raw] = {}


def _in_entry(data: bytes, where: str, fix: str) -> CorruptDocument | None:
    """The error of the first model entry that does not decode, naming its model (a path
    through a JSON object's values does not name the key: ``$.models[...]``); None when the
    problem lies elsewhere."""
    with contextlib.suppress(msgspec.MsgspecError, RecursionError):
        for model, raw in msgspec.json.decode(data, type=_Entries).models.items():
            try:
                decode_document(raw, ModelEntry, f"{where} (model {quoted(model, 60)})", fix)
            except CorruptDocument as exc:
                return exc
    return None


def decode_published(data: bytes, where: str, fix: str = REBUILD) -> Index | IndexV1:
    """``data`` as the Index of its format, 1 included (a publisher upgrades format 1)."""
    if index_format(data, where, fix) < INDEX_FORMAT:
        return decode_document(data, IndexV1, where, fix)
    return decode_document(data, Index, where, fix)


def read_index(store: Store) -> tuple[Index, str | None]:
    """The store's index (format 2) and its etag; an empty Index and None when there is none."""
    try:
        data, etag = store.get(INDEX_KEY, limit=MAX_DOCUMENT)
    except KeyNotFound:
        return Index(), None
    return decode_index(data, f"{store.location}/{INDEX_KEY}"), etag


def read_published(store: Store) -> tuple[Index | IndexV1, str | None]:
    """:func:`read_index` for a publisher: an index of format 1 is returned to be upgraded."""
    try:
        data, etag = store.get(INDEX_KEY, limit=MAX_DOCUMENT)
    except KeyNotFound:
        return Index(), None
    return decode_published(data, f"{store.location}/{INDEX_KEY}"), etag


def fetch_index(
    store: Store, fix: str = REBUILD, if_none_match: str | None = None
) -> tuple[Index, bytes, str]:
    """The store's index, the bytes it was decoded from and their etag; :class:`NoIndex` when the
    location holds none, and :class:`~runtime.storage.store.NotModified` when ``if_none_match``
    is still its etag."""
    try:
        data, etag = store.get(INDEX_KEY, if_none_match, MAX_DOCUMENT)
    except KeyNotFound:
        raise no_index(store) from None
    return decode_index(data, f"{store.location}/{INDEX_KEY}", fix), data, etag


def no_index(store: Store) -> NoIndex:
    """The error for a location that holds no ``index.json``."""
    return NoIndex(
        f"{store.location} has no {INDEX_KEY}: is it a registry? Build one with "
        "`registry-build build`, or check --registry / BUNDLE_REGISTRY"
    )


def load_index(store: Store) -> Index:
    """The store's index; :class:`NoIndex` when the location holds none."""
    return fetch_index(store)[0]


def entry_of(index: Index, model: str, where: str) -> ModelEntry:
    """The entry of ``model`` in ``index`` (of the registry at ``where``), or the error naming
    the models it holds."""
    entry = index.models.get(model)
    if entry is None:
        raise unknown_model(model, index.models, where)
    return entry


def check_shard(data: bytes, model: str, ref: ShardRef, where: str, fix: str = REBUILD) -> Shard:
    """``data``, read from ``where``, as the shard of ``model`` that ``ref`` names: its size and
    BLAKE3 first (:class:`IntegrityError`), then its fields, then its model."""
    stale = _stale(fix)
    if len(data) != ref.size:
        raise IntegrityError(f"{where} has {len(data)} bytes, index.json names {ref.size}; {stale}")
    actual = blake3.blake3(data).hexdigest()
    if actual != ref.hash:
        raise IntegrityError(f"{where} has BLAKE3 {actual}, index.json names {ref.hash}; {stale}")
    shard = decode_document(data, Shard, where, fix)
    strays = sorted({b.id for b in shard.bundles} - {model})
    if shard.model != model or strays:
        named = ", ".join(dict.fromkeys([shard.model, *strays]))
        raise CorruptDocument(
            f"{where} holds bundles of {named}, not of {model!r} alone; the registry is corrupt "
            f"or hostile: {fix}"
        )
    return shard


def _stale(fix: str) -> str:
    return f"the shard is corrupt or index.json is stale: retry, or {fix}"


def read_shard(store: Store, model: str, ref: ShardRef, fix: str = REBUILD) -> tuple[Shard, bytes]:
    """The shard ``ref`` names for ``model``, read from ``store`` and checked, and its bytes."""
    key = shard_key(model, ref.hash)
    where = f"{store.location}/{key}"
    try:
        data = store.get(key, limit=ref.size)[0]
    except KeyNotFound:
        raise KeyNotFound(
            f"{key} not found in {store.location}, though index.json names it: {fix}"
        ) from None
    except ObjectTooLarge:  # refused before it was read whole
        raise IntegrityError(
            f"{where} has more than {ref.size} bytes, index.json names {ref.size}; {_stale(fix)}"
        ) from None
    return check_shard(data, model, ref, where, fix), data


def load_model(store: Store, model: str) -> ModelState:
    """``model`` as a resolve sees it, from the store's index and the model's shard."""
    return model_of(store, load_index(store), model)


def model_of(store: Store, index: Index, model: str) -> ModelState:
    """``model`` as a resolve sees it, from ``index`` (of ``store``) and the model's shard."""
    entry = entry_of(index, model, store.location)
    return ModelState.of(model, entry, read_shard(store, model, entry.shard)[0])
