"""Publish a built registry to a directory or a bucket: upload what it lacks, commit, promote.

The source is a registry directory as ``registry-build build`` writes it (its output directory, or
the local mirror of an ``s3://`` output); the destination any
:class:`~runtime.storage.store.Store`::

    SRC/                                     DEST/ (after publish)
      blobs/<blake3>.xyb      -- uploaded -->  blobs/<blake3>.xyb        only those DEST lacks
      descriptors/<id>/<v>/<t>.json  ------->  descriptors/...           create-only
      (index.json, pages: ignored)             shards/<id>/<blake3>.json, index.json, index,
                                               v1/models, pages          merged with what DEST has
                                               aliases/<id>/<alias>...   with a :class:`Promote`

Order, so that a crash at any moment leaves DEST consistent (content before pointers):

1. read DEST's ``index.json`` and the shards of the models published (from SRC where SRC holds
   the very shard DEST names: re-publishing an unchanged build reads ``index.json`` alone), and
   refuse at once a bundle already published with another digest, or an index of a newer format
   (:func:`registry_build.commit.prepare`): no byte is sent;
2. for each bundle no shard holds, ask whether DEST has its blob (a HEAD: nothing is listed) and
   upload the missing ones create-only (verified against their digest first), in parallel;
3. commit descriptors, shards, derived documents and ``index.json`` (:mod:`registry_build.commit`);
4. with a :class:`Promote`, point the alias at each model's newest published version.

On a signed registry the commit (step 3) and each promotion sign with the online key of
``options.signing``; without it, step 1 refuses before a byte is sent.

Publishing one new version of one model of a large registry costs, with ``index`` off: GET
``index.json``, GET the model's shard, GET ``v1/models``, HEAD and PUT the blob, PUT its descriptor
and its model's new shard, GET the model's alias view (when it has aliases), PUT ``v1/models``,
its model page and the list page, and PUT ``index.json``: 12 requests (``index`` on: a GET and a
PUT more).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import msgspec

from registry_build.commit import DEFAULTS, Options, commit, prepare, record
from registry_build.destination import CountingStore, View
from runtime.aliases import default_actor, promote, resolve_alias
from runtime.errors import IntegrityError, PreconditionFailed, RegistryError, ResolveError
from runtime.names import check_name, version_key
from runtime.registry.index import INDEX_KEY, decode_published
from runtime.registry.wire import BundleDescriptor, Index, blob_key, decode_document
from runtime.storage.local import LocalStore
from runtime.storage.store import PutMode, Store

UPLOAD_WORKERS = 4
CHUNK = 1 << 20


class SourceRegistryError(RegistryError, ValueError):
    """Raised when the directory to publish is not a complete built registry, or when the
    destination lies inside it."""


@dataclass
class PublishReport:
    """What a publish did; ``requests`` counts the requests made to the destination before any
    promotion."""

    uploaded: list[str] = field(default_factory=list)
    uploaded_bytes: int = 0
    skipped: int = 0
    written: list[str] = field(default_factory=list)
    requests: int = 0
    promoted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The one line printed after every publish: ``uploaded 9 blobs (16 KiB), ...``."""
        from runtime.cli.output import human_size

        return (
            f"uploaded {len(self.uploaded)} blobs ({human_size(self.uploaded_bytes)}), "
            f"skipped {self.skipped}, {self.requests} requests"
        )


@dataclass(frozen=True)
class LocalBundle:
    """A bundle of the source registry: its descriptor, the descriptor's bytes, the blob file."""

    descriptor: BundleDescriptor
    descriptor_bytes: bytes
    blob: Path


@dataclass(frozen=True)
class Promote:
    """Point ``alias`` at each published model's newest version, recorded with ``actor`` (else
    ``$GITHUB_ACTOR``, else the user name) and a reason naming the command ``by``."""

    alias: str
    actor: str | None
    by: str

    def __post_init__(self) -> None:
        check_name("alias", self.alias)


def publish_registry(
    src_dir: Path,
    dest: Store,
    *,
    promote: Promote | None = None,
    progress: bool = False,
    options: Options = DEFAULTS,
    only: Collection[tuple[str, str, str]] | None = None,
) -> PublishReport:
    """Publish the built registry at ``src_dir`` to ``dest`` (module doc) and, with ``promote``,
    point its alias at each model's newest version; with ``only``, just the bundles of those
    (id, version, target) keys.

    Raises ImmutableConflict (naming both digests) before sending anything when a bundle is
    already published with other content, and IndexConflict when the index keeps changing.
    """
    _refuse_inside(src_dir, dest)
    bundles = read_source(src_dir, only)
    report = upload_and_commit(bundles, dest, progress, options, Path(src_dir))
    if promote is not None:
        descriptors = [b.descriptor for b in bundles]
        report.promoted = promote_newest(dest, descriptors, promote, options)
    return report


def source_default(src_dir: Path) -> str | msgspec.UnsetType:
    """The default model the built registry at ``src_dir`` names in its ``index.json``; UNSET
    when it names none (or has no readable index): the destination then keeps its own."""
    try:
        index = decode_published((Path(src_dir) / INDEX_KEY).read_bytes(), str(src_dir))
    except (OSError, RegistryError):
        return msgspec.UNSET
    return index.default if isinstance(index, Index) else msgspec.UNSET


def _refuse_inside(src_dir: Path, dest: Store) -> None:
    if isinstance(dest, LocalStore):
        src, root = Path(src_dir).resolve(), dest.root.resolve()
        if root == src or src in root.parents:
            raise SourceRegistryError(
                f"{dest.location} is inside {src_dir}: publish to another place"
            )


def read_source(
    src_dir: Path, only: Collection[tuple[str, str, str]] | None = None
) -> list[LocalBundle]:
    """Every bundle of a built registry directory (those of ``only``, when given), checked to
    have its blob."""
    root = Path(src_dir)
    if not (root / "descriptors").is_dir():
        raise SourceRegistryError(
            f"{root} has no descriptors/ directory: it is not a built registry; "
            f"build one with `registry-build build --out {root}`"
        )
    paths = sorted(root.glob("descriptors/*/*/*.json"))
    if not paths:
        raise SourceRegistryError(f"{root}/descriptors/ is empty: there is nothing to publish")
    bundles = [_read_bundle(root, path) for path in paths]
    return bundles if only is None else [b for b in bundles if b.descriptor.key in only]


def _read_bundle(root: Path, path: Path) -> LocalBundle:
    data = path.read_bytes()
    descriptor = decode_document(data, BundleDescriptor, str(path), "rebuild the registry")
    blob = root / blob_key(descriptor.hash)
    size = blob.stat().st_size if blob.is_file() else None
    if size != descriptor.size_bytes:
        found = "is missing" if size is None else f"has {size} bytes"
        raise SourceRegistryError(
            f"{blob} {found}; {path} names {descriptor.size_bytes} bytes: rebuild the registry"
        )
    return LocalBundle(descriptor, data, blob)


def upload_and_commit(
    bundles: Sequence[LocalBundle],
    dest: Store,
    progress: bool,
    options: Options = DEFAULTS,
    src_dir: Path | None = None,
) -> PublishReport:
    """Steps 1 to 3 of the module doc: the blobs ``dest`` lacks, then the commit. The shards of
    ``src_dir`` (a built registry) stand in for the destination's where their digests agree."""
    store = CountingStore(dest)
    files = {b.descriptor.key: b.descriptor_bytes for b in bundles}
    source = LocalStore(src_dir) if src_dir is not None else None
    pending = prepare(store, [b.descriptor for b in bundles], files, source, options.signing)
    fresh = {d.key for d, _ in pending.new}
    new = [b for b in bundles if b.descriptor.key in fresh]
    view = View(store, listed=False)
    report = PublishReport()
    upload_blobs(store, view, new, report, progress)
    report.written = record(store, pending, view, options=options)
    report.skipped = len({b.descriptor.hash for b in bundles}) - len(report.uploaded)
    report.requests = store.requests
    return report


def upload_blobs(
    store: Store, view: View, new: Sequence[LocalBundle], report: PublishReport, progress: bool
) -> None:
    """Upload, create-only and in parallel, the blobs of ``new`` that the destination lacks."""
    unique = {b.descriptor.hash: b for b in new}
    missing = [b for b in unique.values() if not _present(view, b)]
    bar = _progress_bar(sum(b.descriptor.size_bytes for b in missing), progress)
    try:
        with ThreadPoolExecutor(UPLOAD_WORKERS) as pool:
            for key in pool.map(lambda b: _upload(store, b, bar), missing):
                if key:
                    report.uploaded.append(key)
    finally:
        if bar is not None:
            bar.close()
    report.uploaded_bytes = sum(unique[_digest(k)].descriptor.size_bytes for k in report.uploaded)


def _digest(key: str) -> str:
    return key.removeprefix("blobs/").removesuffix(".xyb")


def _present(view: View, bundle: LocalBundle) -> bool:
    info = view.info(blob_key(bundle.descriptor.hash))
    return info is not None and info.size == bundle.descriptor.size_bytes


def _upload(store: Store, bundle: LocalBundle, bar: Any) -> str | None:
    check_blob(bundle)
    key = blob_key(bundle.descriptor.hash)
    try:
        store.put_file(key, bundle.blob, PutMode.CREATE)
    except PreconditionFailed:
        return None  # another publisher uploaded the same content meanwhile
    finally:
        if bar is not None:
            bar.update(bundle.descriptor.size_bytes)
    return key


def check_blob(bundle: LocalBundle) -> None:
    """Refuse to publish a blob whose bytes do not hash to the name it is published under."""
    hasher = blake3.blake3()
    with open(bundle.blob, "rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
    if hasher.hexdigest() != bundle.descriptor.hash:
        raise IntegrityError(
            f"{bundle.blob} hashes to {hasher.hexdigest()}, not the {bundle.descriptor.hash} its "
            "descriptor names: the build output is corrupt; delete that file and run "
            "`registry-build build` again, which rebuilds it"
        )


def _progress_bar(total: int, progress: bool) -> Any:
    if not progress or total == 0 or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc="upload", file=sys.stderr)


def promote_newest(
    store: Store,
    descriptors: Iterable[BundleDescriptor],
    promotion: Promote,
    options: Options = DEFAULTS,
) -> list[str]:
    """Point the alias at the highest of ``descriptors``' versions of each model, then refresh
    the pages; one line per model. The reason names the command and the commit (``$GITHUB_SHA``)
    when there is one.

    Placeholders are not promoted, and an alias already at the version gets no new record, so
    a CI job that builds with ``--alias`` on every push does not grow the history."""
    sha = os.environ.get("GITHUB_SHA", "")
    reason = promotion.by + (f" at commit {sha}" if sha else "")
    actor = default_actor(promotion.actor)
    newest = sorted(newest_versions(descriptors).items())
    lines = [
        _promote_one(store, model, version, promotion.alias, actor, reason, options)
        for model, version in newest
    ]
    commit(store, [], refresh=[model for model, _ in newest], options=options)  # pages show them
    return lines


def newest_versions(descriptors: Iterable[BundleDescriptor]) -> dict[str, str]:
    """Each model's highest version among ``descriptors``, placeholders left out."""
    newest: dict[str, str] = {}
    for d in descriptors:
        if d.placeholder or d.metadata.get("placeholder") is True:
            continue
        if d.id not in newest or version_key(d.version) > version_key(newest[d.id]):
            newest[d.id] = d.version
    return newest


def _promote_one(
    store: Store, model: str, version: str, alias: str, actor: str, why: str, options: Options
) -> str:
    with contextlib.suppress(ResolveError):
        if resolve_alias(store, model, alias).version == version:
            return f"{model}@{alias} -> {version} (already)"
    made = promote(store, model, alias, version, actor, why, signing=options.signing)
    return f"{model}@{alias} -> {version} (seq {made.seq})"
