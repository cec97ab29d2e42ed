"""What a client knows of one registry's ``index.json``, and resolution against it.

``index.json`` changes, so it is read from the registry when it can be reached, conditionally
(its last etag goes back as ``If-None-Match``: a registry where nothing changed answers 304 and
sends no body), kept in the registry's own folder of the cache, and answered from that folder when
the client is offline or the registry is unreachable (with a notice saying so and since when)::

    <cache>/registries/<key>/           <key> = sha1 of the location (as shown, no credentials)
      location                          the location, in plain text
      index.json                        the last index.json fetched
      index.etag                        its etag; absent, the next read asks unconditionally

Shards are immutable and named by their digest, so they are cached with the blobs, shared by
every registry (:meth:`runtime.client.cache.Cache.shard`): a model's shard is read from the
registry only when the digest that ``index.json`` names for it is not cached, and a cached shard
is used only when that digest names it, so a stale one never is. A warm resolve with nothing
changed costs one request, answered 304.

:meth:`Mirror.resolve` is the client's resolution: a ref naming an exact version that the saved
index and a cached shard hold, whose blob is cached, needs no request (versions are immutable; a
target published for that version after the index was saved is seen once the index is next
fetched); anything else reads the current index and the model's shard and hands them to
:func:`runtime.registry.resolver.resolve`. No ref (``registry-runtime resolve`` alone) names the
registry's default model, the one ``index.json`` names as ``default``. An alias is answered by
the alias map of ``index.json``, never by a pointer file: ``index.json`` is what a registry
vouches for as a whole (and what a signature covers), while a pointer is the publisher's working
state.

With a pinned root (``Registry(..., trust=...)``) ``index.json`` is read through python-tuf
instead, verified from that root (:class:`runtime.trust.client.SignedIndex`, whose state is kept
in ``tuf/`` of the registry's folder), and the folder's key names the root too, so that what a
client saved without verifying is never taken for verified::

    <cache>/registries/<key>/           <key> = sha1 of the location and the root's SHA-256
      index.json                        the index.json the signed metadata names, verified
      tuf/                              python-tuf's metadata, timestamp.json's etag

A warm resolve is then one conditional request for ``metadata/timestamp.json`` instead of
``index.json``. Offline the saved index answers as without a root; with the registry unreachable
it does so only while the timestamp trusted last has not expired.

Every file name here is built from a digest or the location's hash, never from other text a
registry sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.client.cache import Cache
from runtime.errors import CorruptDocument, IntegrityError, RegistryError
from runtime.names import Ref
from runtime.registry import resolver
from runtime.registry.index import (
    OlderIndexFormat,
    check_shard,
    decode_index,
    entry_of,
    fetch_index,
    read_shard,
)
from runtime.registry.resolver import ModelState
from runtime.registry.wire import BundleDescriptor, Index, ModelEntry, Shard
from runtime.storage.atomic import write_atomic
from runtime.storage.store import NotModified, Store, StoreUnreachable

if TYPE_CHECKING:
    from runtime.trust.client import SignedIndex
    from runtime.trust.keys import TrustRoot

Notice = Callable[[str], None]
_REBUILD = "ask the publisher to rebuild the registry's index.json"
_RESAVE = "delete it, and fetch once while the registry is reachable"


class OfflineMiss(RegistryError, FileNotFoundError):
    """Raised when offline (or with the registry unreachable) and the cache lacks what is needed."""


class NoDefaultModel(RegistryError, LookupError):
    """Raised when a ref names no model and the registry names no default model to use."""


class Mirror:
    """One registry's ``index.json``: current when it can be reached, else as last seen.
    ``fallback`` says why answers come from the cache (None while they are current)."""

    def __init__(
        self,
        cache: Cache,
        location: str,
        store: Callable[[], Store],
        *,
        offline: bool = False,
        notice: Notice,
        trust: TrustRoot | None = None,
    ) -> None:
        named = location if trust is None else f"{location}\n{trust.digest}"
        key = hashlib.sha1(named.encode(), usedforsecurity=False).hexdigest()[:16]
        self.cache = cache
        self.folder = cache.root / "registries" / key
        self.location = location
        self.offline = offline
        self.notice = notice
        self.fallback: str | None = "offline" if offline else None
        self.index_path = self.folder / "index.json"
        self.etag_path = self.folder / "index.etag"
        self._store = store  # opened on first use: a cache hit needs no store (and no boto3)
        self._decoded: tuple[tuple[int, int], Index] | None = None
        self.signed = _signed_index(trust, self.folder, location)

    def resolve(self, ref: Ref | None, targets: Sequence[str]) -> BundleDescriptor:
        """The index entry of the bundle ``ref`` names (None: the registry's default model) for
        the first of ``targets`` that has one (see the module notes)."""
        hit = None if ref is None else self._immutable_hit(ref, targets)
        if hit is not None:
            return hit
        index = self.current()
        ref = ref or Ref(self.default_model(index))
        state = self.model(ref.model, index)
        return resolver.resolve(state, ref, targets=targets, where=self.location).bundles[0]

    def current(self) -> Index:
        """The registry's index: read (conditionally) when it can be, else as saved."""
        return self._index()

    def model(self, model: str, index: Index) -> ModelState:
        """``model`` as a resolve sees it, from :meth:`shard`."""
        return ModelState.of(model, *self.shard(model, index))

    def shard(self, model: str, index: Index) -> tuple[ModelEntry, Shard]:
        """``model``'s entry in ``index`` and its shard (cached, or read and then cached;
        offline or unreachable, only from the cache)."""
        entry = entry_of(index, model, self.location)
        return entry, self._shard(model, entry)

    def default_model(self, index: Index) -> str:
        """The model ``index`` names as the registry's default; :class:`NoDefaultModel` when it
        names none."""
        if isinstance(index.default, str):
            return index.default
        raise NoDefaultModel(
            f"no model given, and {self.location}/index.json names no default model: name one "
            f"(models: {resolver.listing(sorted(index.models))})"
        )

    def _immutable_hit(self, ref: Ref, targets: Sequence[str]) -> BundleDescriptor | None:
        if ref.selector is None or self.offline:
            return None
        try:
            index = self.saved_index()
        except CorruptDocument:
            return None  # a damaged saved index: the registry's own answers below
        entry = index.models.get(ref.model) if index is not None else None
        if entry is None or ref.selector in entry.aliases:
            return None
        shard = self._cached_shard(ref.model, entry)
        if shard is None:
            return None
        found = ModelState.of(ref.model, entry, shard).find(ref.selector, targets)
        return found if found is not None and self.cache.has_blob(found.hash) else None

    def _index(self) -> Index:
        """The registry's current index (saved here), or the saved one when offline or
        unreachable."""
        if self.offline:
            return self._saved_instead()
        if self.signed is not None:
            return self._verified(self.signed)
        etag = self._saved_etag()
        try:
            index, data, etag = fetch_index(self._store(), _REBUILD, etag)
        except NotModified:
            self.fallback = None
            return self._unchanged()
        except StoreUnreachable as exc:
            self.fallback = f"registry unreachable ({str(exc).split('; ')[0]})"
            return self._saved_instead()
        self.save_index(data, etag)
        self.fallback = None
        return index

    def _verified(self, signed: SignedIndex) -> Index:
        """The registry's current index, verified from the pinned root (module notes)."""
        try:
            signed.fetch(self._store(), self.index_path)
        except StoreUnreachable as exc:
            self.fallback = f"registry unreachable ({str(exc).split('; ')[0]})"
            signed.check_fresh()
            return self._saved_instead()
        self.fallback = None
        self._note_location()
        index = self.saved_index()
        if index is None:  # the signed index is of format 1: say so as a registry would
            return decode_index(self.index_path.read_bytes(), f"{self.location}/index.json")
        return index

    def _unchanged(self) -> Index:
        """The saved index, which the registry just said is current; read again without a
        condition when the saved copy cannot be used after all."""
        with contextlib.suppress(CorruptDocument):
            saved = self.saved_index()
            if saved is not None:
                return saved
        self.etag_path.unlink(missing_ok=True)
        return self._index()

    def _saved_instead(self) -> Index:
        index = self.saved_index()
        if index is None:
            raise OfflineMiss(
                f"{self.fallback}, and the cache {self.cache.root} holds no index of "
                f"{self.location}: fetch once while the registry is reachable"
            )
        saved = time.gmtime(self.index_path.stat().st_mtime)
        self.notice(
            f"{self.fallback}: resolving from the cached index of {self.location} "
            f"(saved {time.strftime('%Y-%m-%d %H:%M:%S UTC', saved)})"
        )
        return index

    def _shard(self, model: str, entry: ModelEntry) -> Shard:
        """The model's shard that ``entry`` names: from the cache, else from the registry (then
        cached); offline or unreachable, only from the cache."""
        cached = self._cached_shard(model, entry)
        if cached is not None:
            return cached
        if self.fallback:
            raise OfflineMiss(
                f"the shard of {model!r} that the cached index of {self.location} names is not "
                f"in the cache {self.cache.root} ({self.fallback}): resolve {model} once while "
                "the registry is reachable"
            )
        shard, data = read_shard(self._store(), model, entry.shard, _REBUILD)
        self.cache.save_shard(entry.shard.hash, data)
        return shard

    def _cached_shard(self, model: str, entry: ModelEntry) -> Shard | None:
        found = self.cache.shard(entry.shard.hash)
        if found is None:
            return None
        data, path = found
        with contextlib.suppress(IntegrityError, CorruptDocument):
            return check_shard(data, model, entry.shard, str(path), _RESAVE)
        self.cache.remove_shard(entry.shard.hash)  # damaged on disk: read it anew
        return None

    # -- the folder ------------------------------------------------------------------------

    def saved_index(self) -> Index | None:
        """The saved index, decoded once per change of the file; None when there is none (or
        only the format-1 copy an older version of this client saved)."""
        try:
            st = self.index_path.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        if self._decoded is None or self._decoded[0] != stamp:
            try:
                index = decode_index(self.index_path.read_bytes(), str(self.index_path), _RESAVE)
            except OlderIndexFormat:
                return None
            self._decoded = (stamp, index)
        return self._decoded[1]

    def _saved_etag(self) -> str | None:
        """The etag of the saved index, to ask with; None when either is missing."""
        if not self.index_path.is_file():
            return None
        with contextlib.suppress(FileNotFoundError, UnicodeDecodeError):
            return self.etag_path.read_text(encoding="utf-8").strip() or None
        return None

    def save_index(self, data: bytes, etag: str = "") -> None:
        """Keep the ``index.json`` just fetched with its etag (and, once, the location it came
        from). The etag goes first and comes back last, so a crash between leaves none: the
        next read then asks without a condition."""
        self._note_location()
        self.etag_path.unlink(missing_ok=True)
        write_atomic(self.index_path, data)
        if etag:
            write_atomic(self.etag_path, etag.encode() + b"\n")

    def _note_location(self) -> None:
        """Say once, in the folder, which registry it is of."""
        if not (self.folder / "location").exists():
            write_atomic(self.folder / "location", self.location.encode() + b"\n")


def _signed_index(trust: TrustRoot | None, folder: Path, location: str) -> SignedIndex | None:
    """The verified reader of ``index.json`` for a pinned root (python-tuf loaded only then)."""
    if trust is None:
        return None
    from runtime.trust.client import SignedIndex

    return SignedIndex(trust, folder / "tuf", location)
