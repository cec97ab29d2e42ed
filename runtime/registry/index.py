"""Reading ``index.json``: the one place that decodes a registry's catalog and checks its format.

Every reader (the client, the alias commands, the HTTP routes, a publisher merging into an index)
goes through :func:`decode_index` (over a store: :func:`read_index`, :func:`fetch_index`,
:func:`load_index`), so a document of a newer format is refused the same way everywhere, and a
publisher never merges into (and so overwrites) an index it does not understand. Decoding
validates every field (:func:`runtime.registry.wire.decode_document`).
"""

from __future__ import annotations

from runtime.errors import KeyNotFound, RegistryError, ResolveError
from runtime.registry.wire import INDEX_FORMAT, Index, decode_document
from runtime.storage.store import Store

INDEX_KEY = "index.json"
REBUILD = "rebuild it from descriptors/ with `registry-build reindex` (or ask the publisher to)"


class IndexFormatError(RegistryError, ValueError):
    """Raised when an ``index.json`` is of a newer format than this version reads."""


class NoIndex(ResolveError, FileNotFoundError):
    """Raised when a location holds no ``index.json``: it is not (yet) a registry."""


def decode_index(data: bytes, where: str, fix: str = REBUILD) -> Index:
    """``data`` as an Index; :class:`~runtime.errors.CorruptDocument` naming ``where`` when it is
    not one, :class:`IndexFormatError` when its format is newer than :data:`INDEX_FORMAT`."""
    index = decode_document(data, Index, where, fix)
    if index.format > INDEX_FORMAT:
        raise IndexFormatError(
            f"{where} has format {index.format}, newer than the {INDEX_FORMAT} this version of "
            "bundle-registry reads: upgrade bundle-registry (pip install -U bundle-registry)"
        )
    return index


def read_index(store: Store) -> tuple[Index, str | None]:
    """The store's index and its etag; an empty Index and None when there is none yet."""
    try:
        data, etag = store.get(INDEX_KEY)
    except KeyNotFound:
        return Index(), None
    return decode_index(data, f"{store.location}/{INDEX_KEY}"), etag


def fetch_index(store: Store, fix: str = REBUILD) -> tuple[Index, bytes]:
    """The store's index and the bytes it was decoded from; :class:`NoIndex` when the location
    holds none."""
    try:
        data, _ = store.get(INDEX_KEY)
    except KeyNotFound:
        raise NoIndex(
            f"{store.location} has no {INDEX_KEY}: is it a registry? Build one with "
            "`registry-build build`, or check --registry / BUNDLE_REGISTRY"
        ) from None
    return decode_index(data, f"{store.location}/{INDEX_KEY}", fix), data


def load_index(store: Store) -> Index:
    """The store's index; :class:`NoIndex` when the location holds none."""
    return fetch_index(store)[0]
