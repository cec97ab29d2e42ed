"""The client: resolve ``model@selector`` for this platform, download, verify, cache, extract.

``Registry(location)`` reads a registry through the store its location names
(:func:`runtime.storage.location.open_store`): a directory, ``file://DIR``, ``http(s)://`` or
``s3://BUCKET/PREFIX`` (boto3 is imported only then), and keeps what it learns in a
:class:`~runtime.client.cache.Cache`:

- the registry's ``index.json`` in its own folder, read conditionally, through a
  :class:`~runtime.client.mirror.Mirror`, which also resolves refs against it (when offline or
  unreachable, from what it saved, with a notice);
- shards, blobs, their descriptors and extracted trees, content-addressed, shared by every
  registry.

With ``trust`` (a root file, as ``--trust ROOT.json`` or ``$BUNDLE_REGISTRY_TRUST`` give it, or a
checked :class:`~runtime.trust.keys.TrustRoot`) ``index.json`` is verified through the registry's
signed metadata from that root (python-tuf's ``Updater``, over the same store: a directory, S3
and HTTP alike), and the shards and blobs by the digests the verified index names; a registry
whose metadata fails is refused with the attack it looks like (:mod:`runtime.trust.client`).
Without it, a registry is read as it is, signed or not.

Resolution follows :func:`runtime.registry.resolver.resolve`: a selector is an alias when the
model's alias map in ``index.json`` names it, else an exact version; no selector means the highest
version; the target is the one asked for, else this machine's, else ``universal``; no ref at all
means the registry's default model (``index.json``'s ``default``).

``offline`` defaults to ``$BUNDLE_REGISTRY_OFFLINE`` (``1`` for offline, like ``HF_HUB_OFFLINE``),
the cache directory to ``$BUNDLE_REGISTRY_CACHE`` (:func:`runtime.client.cache.default_root`).
A bundle that is a placeholder (its index entry says ``"placeholder": true``: built from a
missing source) is fetched like any other, with a notice on stderr, once per bundle.
:meth:`Registry.extract_into` places a bundle's files in a directory of the caller's
(:mod:`runtime.client.placement`).

What a registry sends is decoded by :func:`runtime.registry.wire.decode_document` into checked
values (``index.json`` and shards by :mod:`runtime.registry.index`, which refuses another format
and checks a shard's digest), so no digest, name or path from a registry reaches a cache path
unchecked. Every shard and blob is verified before it enters the cache
(:func:`runtime.client.download.download_blob`). Extraction is bounded
(:class:`runtime.registry.xyb.Limits`); a bundle refused as malformed or unsafe is removed from the
cache so that the next fetch downloads it again.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.client.cache import Cache
from runtime.client.download import download_blob
from runtime.client.mirror import Mirror, Notice, OfflineMiss
from runtime.client.placement import Placement, place
from runtime.documents import quoted
from runtime.errors import BundleFormatError, IntegrityError, KeyNotFound, UsageError
from runtime.names import Ref, parse_ref
from runtime.registry.resolver import target_order
from runtime.registry.wire import BundleDescriptor, decode_document, descriptor_key
from runtime.registry.xyb import ExtractLimitExceeded, Limits, safe_extract
from runtime.storage.location import Location, open_store, parse_location
from runtime.storage.store import MAX_DOCUMENT, Store

if TYPE_CHECKING:
    from runtime.trust.keys import TrustRoot

__all__ = ["OfflineMiss", "OfflineSettingError", "Registry", "offline_from_env", "stderr_notice"]
OFFLINE_ENV = "BUNDLE_REGISTRY_OFFLINE"
_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"", "0", "false", "no", "off"})
_REPUBLISH = "ask the publisher to rebuild the registry's descriptors and index.json"
_REFETCHED = (
    "it was removed from the cache, so the next fetch downloads it again; if that copy is "
    "refused too, ask the publisher to rebuild the bundle"
)


def stderr_notice(message: str) -> None:
    """Print a client notice on stderr."""
    print(f"registry-runtime: {message}", file=sys.stderr)


class OfflineSettingError(UsageError):
    """Raised when ``$BUNDLE_REGISTRY_OFFLINE`` holds neither a yes nor a no."""


def offline_from_env() -> bool:
    """``$BUNDLE_REGISTRY_OFFLINE``: ``1``/``true``/``yes``/``on`` offline, ``0``/``false``/
    ``no``/``off`` or unset online (case ignored); anything else an :class:`OfflineSettingError`."""
    raw = os.environ.get(OFFLINE_ENV, "")
    if raw.strip().lower() in _ON | _OFF:
        return raw.strip().lower() in _ON
    raise OfflineSettingError(
        f"${OFFLINE_ENV} is {quoted(raw)}: set it to 1 (offline) or 0 (online), or unset it"
    )


class Registry:
    """A registry location plus the local cache: ``resolve``, ``fetch``, ``extract``."""

    def __init__(
        self,
        location: str | Location,
        *,
        cache: Cache | None = None,
        offline: bool | None = None,
        store: Store | None = None,
        progress: bool | None = None,
        notice: Notice = stderr_notice,
        max_extract_bytes: int | None = None,
        trust: TrustRoot | Path | None = None,
    ) -> None:
        # Credentials in a URL (https://user:token@host) stay in the location's address, for the
        # store to send; ``location`` and the cache's files never hold them.
        self.where = parse_location(location) if isinstance(location, str) else location
        self.location = self.where.shown
        self.cache = cache or Cache()
        self.progress = progress
        self.limits = Limits(max_extract_bytes, _REFETCHED)
        self._store = store
        self.trust = _trust_root(trust)
        self.notice = notice
        self._warned: set[str] = set()  # placeholders this client has warned of
        offline = offline_from_env() if offline is None else offline
        self.mirror = Mirror(
            self.cache, self.location, lambda: self.store, offline=offline, notice=notice,
            trust=self.trust,
        )  # fmt: skip

    @property
    def store(self) -> Store:
        """How this registry is read; opened on first use (boto3 only for ``s3://``)."""
        if self._store is None:
            self._store = open_store(self.where)
        return self._store

    def resolve(self, ref: str | Ref | None = None, target: str | None = None) -> BundleDescriptor:
        """The index entry of the bundle ``ref`` names for ``target``; no ref: the registry's
        default model (see the module notes)."""
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        return self.mirror.resolve(parsed, target_order(target))

    def fetch(self, ref: str | Ref | None = None, target: str | None = None) -> Path:
        """The verified ``.xyb`` of ``ref`` in the cache, downloading it if needed."""
        return self.fetch_bundle(self.resolve(ref, target))

    def fetch_bundle(self, entry: BundleDescriptor) -> Path:
        """The verified blob of a resolved index entry, from the cache or downloaded (with a
        notice, once, when it is a placeholder)."""
        if entry.placeholder and entry.hash not in self._warned:
            self._warned.add(entry.hash)
            self.notice(
                f"{entry.id}@{entry.version} ({entry.target}) is a placeholder: its source was "
                "missing when the registry was built, so it holds a stand-in, not the model; ask "
                "the publisher to add the source and rebuild"
            )
        cached = self.cache.blob(entry.hash, entry.size_bytes)
        if cached is not None:
            return cached
        if self.mirror.fallback:
            raise OfflineMiss(
                f"{entry.id}@{entry.version} ({entry.target}) is not in the cache "
                f"{self.cache.root} ({self.mirror.fallback}): "
                "fetch it once while the registry is reachable"
            )
        descriptor = self.descriptor(entry)
        return download_blob(self.store, descriptor, self.cache.blobs, progress=self.progress)

    def descriptor(self, entry: BundleDescriptor) -> BundleDescriptor:
        """The full descriptor (with ``files``) of an index entry, from the cache or registry."""
        cached = self.cache.descriptor(entry.hash)
        if cached is not None:
            return cached
        key = descriptor_key(entry.id, entry.version, entry.target)
        try:
            data = self.store.get(key, limit=MAX_DOCUMENT)[0]
        except KeyNotFound:
            return entry  # an older registry without descriptor files: the index entry will do
        full = decode_document(data, BundleDescriptor, f"{self.location}/{key}", _REPUBLISH)
        if (full.hash, full.size_bytes) != (entry.hash, entry.size_bytes):
            raise IntegrityError(
                f"{self.location}/{key} names blob {full.hash} ({full.size_bytes} bytes) but "
                f"index.json names {entry.hash} ({entry.size_bytes} bytes) for "
                f"{entry.id}@{entry.version} {entry.target}: ask the publisher to rebuild the index"
            )
        self.cache.save_descriptor(full)
        return full

    def extract(self, ref: str | Ref | None = None, target: str | None = None) -> Path:
        """A directory with the model files of ``ref``, extracted safely from the verified blob
        (:meth:`extract_bundle`)."""
        return self.extract_bundle(self.resolve(ref, target))

    def extract_into(
        self, entry: BundleDescriptor, directory: Path, *, force: bool = False
    ) -> Placement:
        """The files of a resolved index entry placed in ``directory``: hard links to the
        cache's extracted tree on the same file system, else copies; a file there that differs
        is replaced only with ``force`` (:func:`runtime.client.placement.place`)."""
        tree = self.extract_bundle(entry)
        descriptor = self.cache.descriptor(entry.hash) or entry
        return place(tree, descriptor.files, directory, force=force)

    def extract_bundle(self, entry: BundleDescriptor) -> Path:
        """The extracted tree of a resolved index entry in the cache.

        A bundle refused as malformed or unsafe is removed from the cache (blob, tree and
        descriptor), so the next fetch downloads it again; one refused only for exceeding the
        ``max_extract_bytes`` ceiling stays, since raising the ceiling is the fix.
        """
        blob = self.fetch_bundle(entry)
        tree = self.cache.tree(entry.hash)
        descriptor = self.cache.descriptor(entry.hash) or entry
        if self.cache.tree_intact(entry.hash, descriptor.files):
            return tree
        tree.parent.mkdir(parents=True, exist_ok=True)
        try:
            safe_extract(blob, tree, descriptor.files, self.limits)
        except ExtractLimitExceeded:
            raise
        except (BundleFormatError, IntegrityError):
            self.cache.remove(entry.hash)
            raise
        except OSError:
            if tree.is_dir():  # another process finished the same extraction first
                return tree
            raise
        return tree


def _trust_root(trust: TrustRoot | Path | None) -> TrustRoot | None:
    """``trust`` checked: a root file is read and verified now (python-tuf loaded only then)."""
    if trust is None or not isinstance(trust, Path):
        return trust
    from runtime.trust import require_trust

    require_trust("--trust (a pinned root)")
    from runtime.trust.keys import load_root

    return load_root(trust)
