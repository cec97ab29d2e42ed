"""The client: resolve ``model@selector`` for this platform, download, verify, cache, extract.

``Registry(location)`` reads a registry at an ``http(s)://`` URL, a directory, ``file://DIR`` or
``s3://BUCKET/PREFIX`` (boto3 is imported only then).

Resolution of ``model@selector`` against ``index.json``:

1. the selector is an alias when ``aliases/<model>/<selector>.json`` exists: its version;
2. else the selector is an exact version;
3. no selector: the highest version by natural order (:func:`runtime.names.version_key`).

Then the target: the one asked for, else this machine's (:func:`runtime.names.detect_target`),
else ``universal``. When nothing matches, the error lists the model's versions, aliases and
targets. A selector that is not a version and has no pointer file may still be an alias whose
pointer is missing (a crash during its first promotion, or a deleted pointer): its records are
probed (:func:`runtime.aliases.newest_pointer`) and the newest one answers.

What a registry sends is decoded by :func:`runtime.registry.wire.decode_document` into checked
values, so
no digest, name or path from a registry reaches a cache path unchecked. Extraction is bounded
(:class:`runtime.registry.xyb.Limits`); a bundle refused as malformed or unsafe is removed from the
cache so that the next fetch downloads it again.

Network use: a ref naming an exact version that the cached index already holds, whose blob is
cached, is served without any request (versions are immutable; a target published for that version
after the index was cached is seen once the index is next fetched). Aliases and bare refs are
mutable, so they are looked up in the registry, unless ``offline`` is set or the registry is
unreachable: then the cached index (and cached pointers) answer, and a notice says so on stderr.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runtime.aliases import newest_pointer
from runtime.client.cache import Cache
from runtime.client.download import (
    HttpTransport,
    RegistryUnreachable,
    StoreTransport,
    Transport,
    download_blob,
)
from runtime.errors import (
    BundleFormatError,
    CorruptDocument,
    IntegrityError,
    InvalidNameError,
    KeyNotFound,
    RegistryError,
    ResolveError,
    StoreError,
)
from runtime.names import (
    TARGETS,
    UNIVERSAL,
    Ref,
    canonical_target,
    detect_target,
    highest_version,
    parse_ref,
    version_key,
)
from runtime.names import (
    redact as redact,  # re-exported: runtime.service.agent imports it from here
)
from runtime.registry.wire import (
    INDEX_FORMAT,
    AliasIndex,
    AliasPointer,
    BundleDescriptor,
    Index,
    alias_index_key,
    alias_pointer_key,
    decode_document,
    descriptor_key,
    encode_pretty,
)
from runtime.registry.xyb import ExtractLimitExceeded, Limits, safe_extract

Notice = Callable[[str], None]
_REBUILD = "ask the publisher to rebuild the registry's index.json"
_REPUBLISH = "ask the publisher to rebuild the registry's descriptors and index.json"
_REPROMOTE = "ask the publisher to promote the alias again"
_REFETCHED = (
    "it was removed from the cache, so the next fetch downloads it again; if that copy is "
    "refused too, ask the publisher to rebuild the bundle"
)


class OfflineMiss(RegistryError, FileNotFoundError):
    """Raised when offline (or with the registry unreachable) and the cache lacks what is needed."""


class IndexFormatError(RegistryError, ValueError):
    """Raised when a registry's ``index.json`` has a format newer than this client reads."""


def stderr_notice(message: str) -> None:
    """Print a client notice on stderr."""
    print(f"registry-runtime: {message}", file=sys.stderr)


def normalize_location(location: str) -> str:
    """One spelling per registry: URLs without a trailing '/', directories absolute."""
    if location.startswith(("http://", "https://", "s3://")):
        if not location.split("://", 1)[1].strip("/"):
            raise NoRegistryError(
                f"{redact(location)!r} names no host or bucket: write https://HOST/PATH or "
                "s3://BUCKET/PREFIX"
            )
        return location.rstrip("/")
    return str(Path(location.removeprefix("file://")).expanduser().resolve())


def target_order(target: str | None) -> tuple[str, ...]:
    """The targets to try, best first: the asked (or detected) target, then ``universal``."""
    if target is None:
        chosen = detect_target()
    else:
        known = canonical_target(target)
        if known is None:
            raise InvalidNameError(
                f"target {target!r} is not a known target (known: {', '.join(TARGETS)}); "
                "pass one of them with --target"
            )
        chosen = known
    return (chosen,) if chosen == UNIVERSAL else (chosen, UNIVERSAL)


@dataclass
class _Catalog:
    """An index with its bundles grouped by model."""

    index: Index
    by_model: dict[str, list[BundleDescriptor]] = field(default_factory=dict)

    @classmethod
    def of(cls, index: Index) -> _Catalog:
        catalog = cls(index)
        for bundle in index.bundles:
            catalog.by_model.setdefault(bundle.id, []).append(bundle)
        return catalog

    def find(self, model: str, version: str, targets: tuple[str, ...]) -> BundleDescriptor | None:
        """The bundle of ``model@version`` for the first of ``targets`` that has one."""
        bundles = {b.target: b for b in self.by_model.get(model, ()) if b.version == version}
        return next((bundles[t] for t in targets if t in bundles), None)


class Registry:
    """A registry location plus the local cache: ``resolve``, ``fetch``, ``extract``."""

    def __init__(
        self,
        location: str,
        *,
        cache: Cache | None = None,
        offline: bool = False,
        transport: Transport | None = None,
        progress: bool | None = None,
        notice: Notice = stderr_notice,
        max_extract_bytes: int | None = None,
    ) -> None:
        # Credentials in a URL (https://user:token@host) go in a header, never into the cache's
        # files or a message: ``location`` is the URL without them.
        self._url = normalize_location(location)
        self.location = redact(self._url)
        self.cache = cache or Cache()
        self.offline = offline
        self.progress = progress
        self.notice = notice
        self.limits = Limits(max_extract_bytes, _REFETCHED)
        self._transport = transport
        self._cached: tuple[tuple[int, int], _Catalog] | None = None
        self._fallback_reason: str | None = None

    @property
    def transport(self) -> Transport:
        """How this registry is read; made on first use (boto3 only for ``s3://``)."""
        if self._transport is None:
            if self.location.startswith(("http://", "https://")):
                self._transport = HttpTransport(self._url)
            else:
                from runtime.storage.store import open_store

                self._transport = StoreTransport(open_store(self.location))
        return self._transport

    # -- resolve ---------------------------------------------------------------------------

    def resolve(self, ref: str | Ref, target: str | None = None) -> BundleDescriptor:
        """The index entry of the bundle ``ref`` names for ``target`` (see the module notes)."""
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        targets = target_order(target)
        hit = self._immutable_hit(parsed, targets)
        if hit is not None:
            return hit
        catalog, online = self._catalog()
        return self._select(catalog, parsed, targets, online)

    def _immutable_hit(self, ref: Ref, targets: tuple[str, ...]) -> BundleDescriptor | None:
        """An exact version in the cached index whose blob is cached: no request needed."""
        if ref.selector is None or self.offline:
            return None
        try:
            catalog = self._cached_catalog()
        except CorruptDocument:
            return None  # a damaged cached index: the registry's own answers below
        if catalog is None or self.cache.pointer(self.location, ref.model, ref.selector):
            return None
        found = catalog.find(ref.model, ref.selector, targets)
        if found is None or not self.cache.blob_path(found.hash).exists():
            return None
        return found

    def _catalog(self) -> tuple[_Catalog, bool]:
        """The registry's current index (saved to the cache), or the cached one when offline
        or unreachable; the flag says whether it came from the registry."""
        if not self.offline:
            try:
                data = self.transport.get("index.json")
            except KeyNotFound:
                raise ResolveError(
                    f"{self.location} has no index.json: is it a registry? "
                    "Build one with `registry-build build`, or check --registry / BUNDLE_REGISTRY"
                ) from None
            except (RegistryUnreachable, StoreError) as exc:
                return self._fallback(str(exc).split("; ")[0]), False
            catalog = _Catalog.of(_decode_index(data, f"{self.location}/index.json", _REBUILD))
            self.cache.save_index(self.location, data)
            self._fallback_reason = None
            return catalog, True
        return self._fallback(None), False

    def _fallback(self, reason: str | None) -> _Catalog:
        catalog = self._cached_catalog()
        path = self.cache.index_path(self.location)
        why = "offline" if reason is None else f"registry unreachable ({reason})"
        if catalog is None:
            raise OfflineMiss(
                f"{why}, and the cache {self.cache.root} holds no index of {self.location}: "
                "fetch once while the registry is reachable"
            )
        seen = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(path.stat().st_mtime))
        self._fallback_reason = why
        self.notice(f"{why}: resolving from the cached index of {self.location} (saved {seen})")
        return catalog

    def _cached_catalog(self) -> _Catalog | None:
        """The cached index, decoded once per change of the file."""
        path = self.cache.index_path(self.location)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        if self._cached is None or self._cached[0] != stamp:
            fix = "delete it, and fetch once while the registry is reachable"
            self._cached = (stamp, _Catalog.of(_decode_index(path.read_bytes(), str(path), fix)))
        return self._cached[1]

    def _select(
        self, catalog: _Catalog, ref: Ref, targets: tuple[str, ...], online: bool
    ) -> BundleDescriptor:
        bundles = catalog.by_model.get(ref.model)
        if not bundles:
            models = ", ".join(sorted(catalog.by_model)) or "none"
            raise ResolveError(
                f"{ref}: no model {ref.model!r} in {self.location} (models: {models})"
            )
        version = self._version(ref, bundles, online)
        found = catalog.find(ref.model, version, targets)
        if found is None:
            raise ResolveError(self._no_match(ref, version, targets, bundles, online))
        return found

    def _version(self, ref: Ref, bundles: list[BundleDescriptor], online: bool) -> str:
        if ref.selector is None:
            return highest_version({b.version for b in bundles})
        versions = {b.version for b in bundles}
        pointer = self._pointer(ref.model, ref.selector, online, ref.selector not in versions)
        return pointer.version if pointer is not None else ref.selector

    def _pointer(self, model: str, alias: str, online: bool, probe: bool) -> AliasPointer | None:
        """The alias pointer, read from the registry when online (and cached), else the cache.

        With ``probe``, a missing pointer file is made from the alias's newest record, if any.
        """
        if not online:
            return self.cache.pointer(self.location, model, alias)
        key = alias_pointer_key(model, alias)
        try:
            data = self.transport.get(key)
        except KeyNotFound:
            pointer = self._from_records(model, alias) if probe else None
            made = None if pointer is None else encode_pretty(pointer)
            self.cache.save_pointer(self.location, model, alias, made)
            return pointer
        pointer = decode_document(data, AliasPointer, f"{self.location}/{key}", _REPROMOTE)
        self.cache.save_pointer(self.location, model, alias, data)
        return pointer

    def _from_records(self, model: str, alias: str) -> AliasPointer | None:
        pointer = newest_pointer(self.transport.get, self.location, model, alias)
        if pointer is not None:
            self.notice(
                f"{self.location}/{alias_pointer_key(model, alias)} is missing: using record "
                f"{pointer.seq} of {model}@{alias} (the next promote restores the pointer)"
            )
        return pointer

    def _aliases(self, model: str, online: bool) -> list[str]:
        """The model's aliases: the registry's alias view when online, else cached pointers."""
        if online:
            with contextlib.suppress(RegistryError):
                key = alias_index_key(model)
                view = decode_document(self.transport.get(key), AliasIndex, key, _REPROMOTE)
                return sorted(a.alias for a in view.aliases)
        return self.cache.aliases(self.location, model)

    def _no_match(
        self,
        ref: Ref,
        version: str,
        targets: tuple[str, ...],
        bundles: list[BundleDescriptor],
        online: bool,
    ) -> str:
        versions = sorted({b.version for b in bundles}, key=version_key, reverse=True)
        known = self._aliases(ref.model, online)
        listing = f"(versions: {', '.join(versions)}; aliases: {', '.join(known) or 'none'})"
        if version not in versions:
            what = f"no version or alias {ref.selector!r}"
            if ref.selector != version:
                what = f"alias {ref.selector!r} names version {version!r}, which is not published"
            elif ref.selector in known:
                return (
                    f"{ref}: {ref.model} has no version {version!r} in {self.location}, and its "
                    f"alias {version!r} has neither a pointer nor a first record there (only "
                    f"{alias_index_key(ref.model)} lists it): promote it again {listing}"
                )
            return f"{ref}: {ref.model} has {what} in {self.location} {listing}"
        have = sorted(b.target for b in bundles if b.version == version)
        return (
            f"{ref}: {ref.model}@{version} has no bundle for {' or '.join(targets)} in "
            f"{self.location} (targets of {version}: {', '.join(have)}); pass --target with one "
            f"of them, or pick another version {listing}"
        )

    # -- fetch and extract -----------------------------------------------------------------

    def fetch(self, ref: str | Ref, target: str | None = None) -> Path:
        """The verified ``.xyb`` of ``ref`` in the cache, downloading it if needed."""
        return self.fetch_bundle(self.resolve(ref, target))

    def fetch_bundle(self, entry: BundleDescriptor) -> Path:
        """The verified blob of a resolved index entry, from the cache or downloaded."""
        cached = self.cache.blob(entry.hash, entry.size_bytes)
        if cached is not None:
            return cached
        if self.offline or self._fallback_reason:
            raise OfflineMiss(
                f"{entry.id}@{entry.version} ({entry.target}) is not in the cache "
                f"{self.cache.root} ({self._fallback_reason or 'offline'}): "
                "fetch it once while the registry is reachable"
            )
        descriptor = self.descriptor(entry)
        return download_blob(self.transport, descriptor, self.cache.blobs, progress=self.progress)

    def descriptor(self, entry: BundleDescriptor) -> BundleDescriptor:
        """The full descriptor (with ``files``) of an index entry, from the cache or registry."""
        cached = self.cache.descriptor(entry.hash)
        if cached is not None:
            return cached
        key = descriptor_key(entry.id, entry.version, entry.target)
        try:
            data = self.transport.get(key)
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

    def extract(self, ref: str | Ref, target: str | None = None) -> Path:
        """A directory with the model files of ``ref``, extracted safely from the verified blob.

        A bundle refused as malformed or unsafe is removed from the cache (blob, tree and
        descriptor), so the next fetch downloads it again; one refused only for exceeding the
        ``max_extract_bytes`` ceiling stays, since raising the ceiling is the fix.
        """
        entry = self.resolve(ref, target)
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


def _decode_index(data: bytes, where: str, fix: str) -> Index:
    index = decode_document(data, Index, where, fix)
    if index.format > INDEX_FORMAT:
        raise IndexFormatError(
            f"{where} has format {index.format}, newer than the {INDEX_FORMAT} this client reads: "
            "upgrade bundle-registry"
        )
    return index


class NoRegistryError(RegistryError, ValueError):
    """Raised when a command needs a registry and none was given (flag, pipeline or env)."""


REGISTRY_ENV = "BUNDLE_REGISTRY"


def registry_location(explicit: str | None, from_file: str | None = None) -> str:
    """The registry to use: ``--registry``, else the pipeline's ``registry:``, else
    ``$BUNDLE_REGISTRY``."""
    chosen = explicit or from_file or os.environ.get(REGISTRY_ENV)
    if not chosen:
        raise NoRegistryError(
            f"no registry given: pass --registry URL|DIR|s3://BUCKET or set {REGISTRY_ENV}"
        )
    return chosen
