"""What a client knows of one registry's mutable documents, and resolution against them.

``index.json`` and alias pointers change, so they are read from the registry when it can be
reached, kept in the registry's own folder of the cache, and answered from that folder when the
client is offline or the registry is unreachable (with a notice saying so and since when)::

    <cache>/registries/<key>/           <key> = sha1 of the location (as shown, no credentials)
      location                          the location, in plain text
      index.json                        the last index.json fetched
      aliases/<model>/<alias>.json      the last pointer file read for each alias used

:meth:`Mirror.resolve` is the client's resolution: a ref naming an exact version that the saved
index holds, whose blob is cached, needs no request (versions are immutable; a target published
for that version after the index was saved is seen once the index is next fetched); anything else
reads the current index, then the pointer when the selector may be an alias, and hands both to
:func:`runtime.registry.resolver.resolve`. A selector that is not a version and has no pointer
file may still be an alias whose pointer is missing (a crash during its first promotion, or a
deleted pointer): its records are probed (:func:`runtime.aliases.pointer.newest_pointer`) and
the newest one answers.

Every file name here is built from names (:func:`runtime.names.check_name`), never from other
text a registry sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from runtime.aliases.pointer import newest_pointer
from runtime.client.cache import Cache
from runtime.errors import CorruptDocument, KeyNotFound, RegistryError
from runtime.names import Ref, check_name
from runtime.registry import resolver
from runtime.registry.index import decode_index, fetch_index
from runtime.registry.resolver import Catalog
from runtime.registry.wire import (
    AliasIndex,
    AliasPointer,
    BundleDescriptor,
    alias_index_key,
    alias_pointer_key,
    decode_document,
    encode_pretty,
)
from runtime.storage.atomic import write_atomic
from runtime.storage.store import Store, StoreUnreachable

Notice = Callable[[str], None]
_REBUILD = "ask the publisher to rebuild the registry's index.json"
_REPROMOTE = "ask the publisher to promote the alias again"
_RESAVE = "delete it, and fetch once while the registry is reachable"


class OfflineMiss(RegistryError, FileNotFoundError):
    """Raised when offline (or with the registry unreachable) and the cache lacks what is needed."""


class Mirror:
    """One registry's ``index.json`` and pointers: current when it can be reached, else as last
    seen. ``fallback`` says why answers come from the cache (None while they are current)."""

    def __init__(
        self,
        cache: Cache,
        location: str,
        store: Callable[[], Store],
        *,
        offline: bool = False,
        notice: Notice,
    ) -> None:
        key = hashlib.sha1(location.encode(), usedforsecurity=False).hexdigest()[:16]
        self.cache = cache
        self.folder = cache.root / "registries" / key
        self.location = location
        self.offline = offline
        self.notice = notice
        self.fallback: str | None = "offline" if offline else None
        self.index_path = self.folder / "index.json"
        self._store = store  # opened on first use: a cache hit needs no store (and no boto3)
        self._decoded: tuple[tuple[int, int], Catalog] | None = None

    def resolve(self, ref: Ref, targets: Sequence[str]) -> BundleDescriptor:
        """The index entry of the bundle ``ref`` names for the first of ``targets`` that has one
        (see the module notes)."""
        hit = self._immutable_hit(ref, targets)
        if hit is not None:
            return hit
        catalog = self._catalog()
        found = resolver.resolve(
            catalog,
            ref,
            self._alias_version(catalog, ref),
            targets=targets,
            where=self.location,
            known_aliases=lambda: self._aliases(ref.model),
        )
        return found.bundles[0]

    def _immutable_hit(self, ref: Ref, targets: Sequence[str]) -> BundleDescriptor | None:
        if ref.selector is None or self.offline:
            return None
        try:
            catalog = self.saved_catalog()
        except CorruptDocument:
            return None  # a damaged saved index: the registry's own answers below
        if catalog is None or self.saved_pointer(ref.model, ref.selector):
            return None
        found = catalog.find(ref.model, ref.selector, targets)
        return found if found is not None and self.cache.has_blob(found.hash) else None

    def _catalog(self) -> Catalog:
        """The registry's current index (saved here), or the saved one when offline or
        unreachable."""
        if self.offline:
            return self._saved_instead()
        try:
            index, data = fetch_index(self._store(), _REBUILD)
        except StoreUnreachable as exc:
            self.fallback = f"registry unreachable ({str(exc).split('; ')[0]})"
            return self._saved_instead()
        self.save_index(data)
        self.fallback = None
        return Catalog.of(index)

    def _saved_instead(self) -> Catalog:
        catalog = self.saved_catalog()
        if catalog is None:
            raise OfflineMiss(
                f"{self.fallback}, and the cache {self.cache.root} holds no index of "
                f"{self.location}: fetch once while the registry is reachable"
            )
        saved = time.gmtime(self.index_path.stat().st_mtime)
        self.notice(
            f"{self.fallback}: resolving from the cached index of {self.location} "
            f"(saved {time.strftime('%Y-%m-%d %H:%M:%S UTC', saved)})"
        )
        return catalog

    def _alias_version(self, catalog: Catalog, ref: Ref) -> str | None:
        """The version the selector names as an alias; None when it is no alias here."""
        versions = catalog.versions(ref.model)
        if ref.selector is None or not versions:
            return None
        pointer = self._pointer(ref.model, ref.selector, probe=ref.selector not in versions)
        return pointer.version if pointer is not None else None

    def _pointer(self, model: str, alias: str, probe: bool) -> AliasPointer | None:
        """The alias pointer, read from the registry when current (and saved), else the saved
        one. With ``probe``, a missing pointer file is made from the alias's newest record."""
        if self.fallback:
            return self.saved_pointer(model, alias)
        key = alias_pointer_key(model, alias)
        try:
            data = self._get(key)
        except KeyNotFound:
            pointer = self._from_records(model, alias) if probe else None
            self.save_pointer(model, alias, None if pointer is None else encode_pretty(pointer))
            return pointer
        pointer = decode_document(data, AliasPointer, f"{self.location}/{key}", _REPROMOTE)
        self.save_pointer(model, alias, data)  # only a pointer that decoded is kept
        return pointer

    def _from_records(self, model: str, alias: str) -> AliasPointer | None:
        pointer = newest_pointer(self._get, self.location, model, alias)
        if pointer is not None:
            self.notice(
                f"{self.location}/{alias_pointer_key(model, alias)} is missing: using record "
                f"{pointer.seq} of {model}@{alias} (the next promote restores the pointer)"
            )
        return pointer

    def _aliases(self, model: str) -> list[str]:
        """The model's aliases, for a message: the registry's alias view when current, else the
        pointers saved here."""
        if not self.fallback:
            with contextlib.suppress(RegistryError):
                key = alias_index_key(model)
                view = decode_document(self._get(key), AliasIndex, key, _REPROMOTE)
                return sorted(a.alias for a in view.aliases)
        folder = self.folder / "aliases" / check_name("model", model)
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []

    def _get(self, key: str) -> bytes:
        return self._store().get(key)[0]

    # -- the folder ------------------------------------------------------------------------

    def saved_catalog(self) -> Catalog | None:
        """The saved index, decoded once per change of the file; None when there is none."""
        try:
            st = self.index_path.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        if self._decoded is None or self._decoded[0] != stamp:
            index = decode_index(self.index_path.read_bytes(), str(self.index_path), _RESAVE)
            self._decoded = (stamp, Catalog.of(index))
        return self._decoded[1]

    def save_index(self, data: bytes) -> None:
        """Keep the ``index.json`` just fetched (and, once, the location it came from)."""
        if not (self.folder / "location").exists():
            write_atomic(self.folder / "location", self.location.encode() + b"\n")
        write_atomic(self.index_path, data)

    def _pointer_path(self, model: str, alias: str) -> Path:
        folder = self.folder / "aliases" / check_name("model", model)
        return folder / f"{check_name('alias', alias)}.json"

    def saved_pointer(self, model: str, alias: str) -> AliasPointer | None:
        """The last pointer file read for ``model``'s ``alias``, or None."""
        path = self._pointer_path(model, alias)
        try:
            return decode_document(path.read_bytes(), AliasPointer, str(path), "")
        except (FileNotFoundError, CorruptDocument):
            return None

    def save_pointer(self, model: str, alias: str, data: bytes | None) -> None:
        """Keep a pointer file just read; None records that the alias no longer exists."""
        path = self._pointer_path(model, alias)
        if data is None:
            path.unlink(missing_ok=True)
        else:
            write_atomic(path, data)
