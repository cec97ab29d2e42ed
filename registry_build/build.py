"""The build: bundles.json -> .xyb bundles -> descriptors -> index -> pages, in that order.

:func:`build` reads as the pipeline. It validates the whole config first, packs every bundle
(content only: ``blobs/``), and only when every bundle succeeded commits (descriptors, then the
shards, the documents and pages, and ``index.json``: :mod:`registry_build.commit`), so a failed
build leaves the registry as it was (at most unreferenced blobs). An output that is not a
directory (``s3://``) is built into a local mirror kept with the build state, and the bundles of
this build are then published from it
(:func:`registry_build.publish.publish_registry`, the same function ``registry-build publish``
calls); with an alias, publishing ends by promoting it. With a signing key (and, the first time, a
root to install) the commits into the output are signed (:mod:`runtime.trust`); the local mirror
of an ``s3://`` output is not: the bucket's commit is.

Incremental: a stat fingerprint of each target's inputs is kept in the build state; a target whose
fingerprint, descriptor and blob are unchanged is not repacked and no source byte is read.
Build state lives outside the served tree::

    $XDG_CACHE_HOME/bundle-registry/build/<sha1 of the output dir>/
      state.json     {"(id, version, target)": {"fingerprint", "hash"}}
      digests.json   per-file digests keyed by stat (registry_build.bundle.DigestCache)
      staging/       bundles being packed: <random>.xyb (and pack's own .<name>.tmp-* beside it)
      staging.lock   every build of the output holds it shared while it packs
      site/          the local mirror of an output that is not a directory

A bundle is packed in ``staging/`` and moved into ``blobs/`` when complete: renamed to a hidden
temporary beside its key and then over the key (copied to that temporary instead when the cache is
on another filesystem), so the site never holds a partial bundle or a staging directory, whether a
build succeeds, fails or is killed. A build that finds no other build of the output running (it
gets the lock exclusively) first removes what killed builds left: everything in ``staging/``, the
``.staging/`` of older versions in the site, and temporaries in ``blobs/`` untouched for an hour.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from registry_build.bundle import DigestCache, SourceFile, pack
from registry_build.commit import Options, commit
from registry_build.config import METADATA_NAME, BundleSpec, Config, TargetSpec, load_config
from registry_build.publish import Promote, PublishReport, promote_newest, publish_registry
from runtime.errors import RegistryError
from runtime.registry.head import marked_signed
from runtime.registry.index import decode_published
from runtime.registry.wire import (
    INDEX_FORMAT,
    BundleDescriptor,
    Index,
    blob_key,
    decode_document,
    descriptor_key,
)
from runtime.registry.wire import Location as BlobLocation
from runtime.storage.atomic import is_temp_name, sweep_temp_files, temp_path_for, write_atomic
from runtime.storage.local import LocalStore
from runtime.storage.location import Location, open_store, parse_location
from runtime.storage.store import PutMode

if TYPE_CHECKING:
    from runtime.trust.keys import Signing

BUILD_FORMAT = 1  # bump when packing changes so old fingerprints stop matching
STALE_TEMP_SECONDS = 3600  # a temporary in blobs/ untouched this long belongs to a dead writer


@dataclass(frozen=True)
class BuildOptions:
    """What to build and how."""

    only: tuple[str, ...] = ()
    jobs: int = 1
    strict: bool = False
    level: int = 3
    alias: str | None = None  # point this alias at each built model's version
    actor: str | None = None
    endpoint_url: str | None = None  # for s3:// outputs
    progress: bool = False  # upload progress bars (s3:// outputs)
    xybrid_index: bool = True  # keep `index` (Xybrid's GET /index) current
    model_list: bool = True  # keep `v1/models` and the model list pages current
    signing: Signing | None = None  # the online key (and a root to install): sign the output
    default_model: str | None = None  # bundles.json's default_model (build() sets it)

    def commit_options(self, rewrite: bool = False, signed: bool = True) -> Options:
        """How the commits of this build write (registry_build.commit); ``signed`` False for
        the local mirror of an output that is not a directory."""
        signing = self.signing if signed else None
        return Options(
            xybrid_index=self.xybrid_index, model_list=self.model_list, rewrite=rewrite,
            signing=signing, default=self.default_model,
        )  # fmt: skip

    def promotion(self) -> Promote | None:
        """The promotion ``alias`` asks for (its name checked), or None."""
        if self.alias is None:
            return None
        return Promote(self.alias, self.actor, "registry-build build")


@dataclass(frozen=True)
class Job:
    """One target of one bundle to pack."""

    bundle: BundleSpec
    target: TargetSpec

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.bundle.model_id, self.bundle.version, self.target.platform)

    @property
    def label(self) -> str:
        return f"{self.bundle.model_id}@{self.bundle.version} {self.target.platform}"

    @property
    def input_bytes(self) -> int:
        """The size of the source files (and model_metadata.json) it packs; 0 for a missing
        source."""
        paths = [] if self.target.missing else [path for _, path in self.target.files]
        if self.bundle.model_metadata is not None:
            paths.append(self.bundle.model_metadata)
        return sum(_size_of(path) for path in paths)


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # gone since validation: the pack says so


@dataclass(frozen=True)
class BundleResult:
    """The outcome for one target: ``built`` or ``unchanged``."""

    descriptor: BundleDescriptor
    status: str
    seconds: float
    placeholder: bool = False


@dataclass
class BuildReport:
    """What a build did: ``committed`` into the output directory (or the local mirror),
    ``published`` from the mirror to an output that is not a directory, ``promoted``."""

    out: str
    results: list[BundleResult] = field(default_factory=list)
    committed: list[str] = field(default_factory=list)
    warnings: tuple[str, ...] = ()
    published: PublishReport | None = None
    promoted: list[str] = field(default_factory=list)

    @property
    def written(self) -> list[str]:
        """The keys written to the output."""
        if self.published is None:
            return self.committed
        return [*self.published.uploaded, *self.published.written]


Reporter = Callable[[Job, BundleResult], None]


def build(
    config_path: Path,
    out: str,
    options: BuildOptions = BuildOptions(),
    *,
    on_bundle: Reporter | None = None,
    on_start: Callable[[list[Job]], None] | None = None,
) -> BuildReport:
    """Build the registry that ``config_path`` defines into ``out`` (a directory or s3://), then
    publish it from the local mirror when ``out`` is not a directory, and promote (module doc).
    ``on_start`` hears every job planned before the first is packed; ``on_bundle`` each one
    done."""
    config = load_config(config_path, strict=options.strict)
    options = replace(options, default_model=config.default_model)
    jobs = plan(config, options.only)
    if on_start is not None:
        on_start(jobs)
    promotion = options.promotion()
    location = parse_location(out)
    state = BuildState(state_dir(location, options.endpoint_url))
    site = LocalStore(location.directory or state.directory / "site")
    results = pack_site(jobs, site, state, options, on_bundle)
    committed = commit_site(site, state, results, options, signed=location.directory is not None)
    report = BuildReport(out, results, committed, config.warnings)
    publish_site(report, site, location, promotion, options)
    return report


def pack_site(
    jobs: list[Job],
    site: LocalStore,
    state: BuildState,
    options: BuildOptions,
    on_bundle: Reporter | None,
) -> list[BundleResult]:
    """Pack every job into ``site``'s ``blobs/`` by way of the staging area (module doc)."""
    with staging_area(state.directory, site.root) as staging:
        return pack_all(jobs, site, state, staging, options, on_bundle)


def commit_site(
    site: LocalStore,
    state: BuildState,
    results: list[BundleResult],
    options: BuildOptions,
    signed: bool = True,
) -> list[str]:
    """Commit ``results`` into ``site`` (signed, unless ``signed`` is False) and save the build
    state; returns the keys written, none when nothing was built and the index and pages are as
    the last commit left them (when only they changed since, they are made whole again), and the
    site is signed if a key is given."""
    written: list[str] = []
    unchanged = all(r.status == "unchanged" for r in results)
    installs = signed and options.signing is not None and not _signed_site(site.root)
    current = state.committed == site_signature(site.root)
    renamed = _site_default(site.root) != options.default_model  # bundles.json's changed
    if installs or renamed or not (unchanged and current):
        commits = options.commit_options(rewrite=unchanged, signed=signed)
        written = commit(site, [r.descriptor for r in results], options=commits)
        state.committed = site_signature(site.root)
    state.save()
    return written


def _site_default(root: Path) -> str | None:
    """The default model the site's ``index.json`` names (None: none, or no index yet)."""
    try:
        index = decode_published((root / "index.json").read_bytes(), str(root / "index.json"))
    except (OSError, RegistryError):
        return None
    return index.default if isinstance(index, Index) and isinstance(index.default, str) else None


def _signed_site(root: Path) -> bool:
    try:
        return marked_signed((root / "index.json").read_bytes())
    except FileNotFoundError:
        return False


def publish_site(
    report: BuildReport,
    site: LocalStore,
    out: Location,
    promotion: Promote | None,
    options: BuildOptions,
) -> None:
    """Publish this build's bundles from ``site`` to ``out`` and promote them, recording both in
    ``report``; a directory output is its own site, so there only the promotion is left to do."""
    built = [r.descriptor for r in report.results]
    if out.directory is None:
        dest = open_store(out, endpoint_url=options.endpoint_url)
        # Only this build's bundles: the mirror may hold others that the bucket lost on purpose.
        only = {d.key for d in built}
        report.published = publish_registry(
            site.root, dest, promote=promotion, progress=options.progress,
            options=options.commit_options(), only=only,
        )  # fmt: skip
        report.promoted = report.published.promoted
    elif promotion is not None:
        report.promoted = promote_newest(site, built, promotion, options.commit_options())


def plan(config: Config, only: Sequence[str]) -> list[Job]:
    """Every (bundle, target) to build, restricted to the model ids in ``only`` when given."""
    known = {b.model_id for b in config.bundles}
    unknown = [m for m in only if m not in known]
    if unknown:
        raise RegistryError(
            f"--only names {', '.join(map(repr, unknown))}, not defined in {config.path.name} "
            f"(defined: {', '.join(sorted(known))})"
        )
    return [
        Job(bundle, target)
        for bundle in config.bundles
        if not only or bundle.model_id in only
        for target in bundle.targets
    ]


def pack_all(
    jobs: list[Job],
    store: LocalStore,
    state: BuildState,
    staging: Path,
    options: BuildOptions,
    on_bundle: Reporter | None,
) -> list[BundleResult]:
    """Pack every job whose inputs changed (``jobs`` at a time) in ``staging``; reuse the rest."""

    def one(job: Job) -> BundleResult:
        result = pack_job(job, store, state, staging, options.level)
        if on_bundle is not None:
            on_bundle(job, result)
        return result

    if options.jobs <= 1:
        return [one(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=options.jobs) as pool:
        return list(pool.map(one, jobs))


def pack_job(
    job: Job, store: LocalStore, state: BuildState, staging: Path, level: int
) -> BundleResult:
    """Pack one target in ``staging``, move it into ``blobs/`` (or reuse the previous result)
    and describe it."""
    started = time.perf_counter()
    files = job_files(job)
    fingerprint = state.fingerprint(job, files, level)
    previous = state.reusable(job, fingerprint, store)
    if previous is not None:
        return BundleResult(
            previous, "unchanged", time.perf_counter() - started, job.target.missing
        )
    packed = staging / f"{secrets.token_hex(8)}.xyb"
    try:
        result = pack(*job.key, files, packed, level=level, digests=state.digests)
        move_in(store, blob_key(result.blake3), packed)
    finally:
        packed.unlink(missing_ok=True)
    descriptor = describe(job, result.blake3, result.sha256, result.size, result.files)
    state.record(job, fingerprint, descriptor.hash)
    return BundleResult(descriptor, "built", time.perf_counter() - started, job.target.missing)


def move_in(store: LocalStore, key: str, packed: Path) -> None:
    """Put the complete file ``packed`` (outside the site) under ``key``: renamed to a hidden
    temporary beside the key, or copied to one when the two are on different filesystems, then
    renamed over the key (a file already there is replaced: same bytes, or a damaged copy)."""
    beside = temp_path_for(store.root / key)
    beside.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(packed, beside)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        store.put_file(key, packed, PutMode.OVERWRITE)
        return
    store.adopt(key, beside, PutMode.OVERWRITE)


@contextlib.contextmanager
def staging_area(state: Path, site: Path) -> Iterator[Path]:
    """The directory a build packs in, outside the served tree, held under a shared lock; when
    no other build of the output holds it, what killed builds left is removed first (module doc)."""
    directory = state / "staging"
    directory.mkdir(parents=True, exist_ok=True)
    with open(state / "staging.lock", "ab") as lock:
        if _lock_alone(lock.fileno()):
            _sweep(directory, site)
        fcntl.flock(lock.fileno(), fcntl.LOCK_SH)
        yield directory


def _lock_alone(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _sweep(staging: Path, site: Path) -> None:
    """Remove leftovers of killed builds (call only while no other build is running)."""
    for entry in staging.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    shutil.rmtree(site / ".staging", ignore_errors=True)  # where earlier versions packed
    sweep_temp_files(site / "blobs", older_than=STALE_TEMP_SECONDS, now=time.time())


def job_files(job: Job) -> list[SourceFile]:
    """The files that go into a target's bundle, in archive order."""
    target, bundle = job.target, job.bundle
    if target.missing:
        files = [SourceFile(target.model_file, data=placeholder_bytes(job))]
    else:
        files = [
            SourceFile(name, path=path, beneath=target.beneath)
            for name, path in target.files
            if name != METADATA_NAME or bundle.model_metadata is None
        ]
    if bundle.model_metadata is not None:
        files.append(SourceFile(METADATA_NAME, path=bundle.model_metadata))
    return sorted(files, key=lambda f: f.arcname)


def placeholder_bytes(job: Job) -> bytes:
    """The small stand-in for a missing source under ``fallback: placeholder``."""
    return (
        f"placeholder for {job.label}: the source {job.target.source} was missing at build time.\n"
        "Replace it and rebuild with a new version.\n"
    ).encode()


def describe(
    job: Job, digest: str, sha256: str, size: int, files: tuple[object, ...]
) -> BundleDescriptor:
    """The descriptor of a freshly packed bundle."""
    metadata = dict(job.bundle.metadata)
    if job.target.missing:
        metadata["placeholder"] = True
    return BundleDescriptor(
        id=job.bundle.model_id,
        version=job.bundle.version,
        target=job.target.platform,
        hash=digest,
        size_bytes=size,
        location=BlobLocation("remote", blob_key(digest)),
        sha256=sha256,
        model_type=job.target.model_type,
        files=tuple(files),  # type: ignore[arg-type]
        description=job.bundle.description,
        metadata=metadata,
        created_at=created_at(),
        placeholder=job.target.missing,
    )


def created_at() -> str:
    """Now in UTC (RFC 3339), or SOURCE_DATE_EPOCH when set, for reproducible descriptors."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def state_dir(out: Location, endpoint_url: str | None = None) -> Path:
    """Where the build state of an output lives, outside the site: per directory, or per
    location and endpoint (the same bucket name on two endpoints is two registries)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    if out.directory is not None:
        name = str(out.directory)
    else:
        endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or "aws"
        name = f"{out} at {endpoint}"
    key = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:16]
    return base / "bundle-registry" / "build" / key


def site_signature(root: Path) -> str:
    """A digest of the stat() of the documents a commit writes and of the alias views pages
    show: equal after an unchanged build means the index and pages are already current."""
    parts: list[object] = [BUILD_FORMAT, INDEX_FORMAT]  # a new index format: commit again
    paths = [root / k for k in ("index.json", "index", "v1/models", "index.html")]
    for path in [*paths, *sorted(root.glob("aliases/*/index.json"))]:
        try:
            st = path.stat()
            parts.append((str(path), st.st_size, st.st_mtime_ns, st.st_ino))
        except FileNotFoundError:
            parts.append((str(path), None))
    return hashlib.sha256(repr(parts).encode()).hexdigest()


class _Entry(msgspec.Struct, frozen=True):
    fingerprint: str
    hash: str


class BuildState:
    """Fingerprints of what was built last time, and the per-file digest cache."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "state.json"
        self.committed_path = directory / "committed"
        self.digests = DigestCache(directory / "digests.json")
        try:  # the site_signature() after the last commit into the output
            self.committed: str | None = self.committed_path.read_text()
        except OSError:
            self.committed = None
        self._committed_before = self.committed
        self.entries: dict[str, _Entry] = {}
        self.changed = False
        if self.path.is_file():
            try:
                self.entries = msgspec.json.decode(self.path.read_bytes(), type=dict[str, _Entry])
            except msgspec.DecodeError:
                self.entries = {}  # a damaged cache only costs a rebuild

    @staticmethod
    def _name(job: Job) -> str:
        return "/".join(job.key)

    def fingerprint(self, job: Job, files: list[SourceFile], level: int) -> str:
        """A digest of everything that determines the bundle, from stat() alone."""
        parts = [
            BUILD_FORMAT, level, job.key, job.target.model_type, self.digests.fingerprint(files),
            job.bundle.description, sorted(job.bundle.metadata.items()),
        ]  # fmt: skip
        return hashlib.sha256(msgspec.json.encode(parts)).hexdigest()

    def reusable(self, job: Job, fingerprint: str, store: LocalStore) -> BundleDescriptor | None:
        """The previous descriptor if the inputs, the descriptor and the blob (its size: reading
        it would cost what the no-op rebuild saves) are all unchanged."""
        entry = self.entries.get(self._name(job))
        if entry is None or entry.fingerprint != fingerprint:
            return None
        try:
            key = descriptor_key(*job.key)
            data = store.get(key)[0]
            descriptor = decode_document(data, BundleDescriptor, key, "it is rebuilt")
            size = (store.root / blob_key(entry.hash)).stat().st_size
        except (RegistryError, OSError):
            return None
        return (
            descriptor if (descriptor.hash, descriptor.size_bytes) == (entry.hash, size) else None
        )

    def record(self, job: Job, fingerprint: str, digest: str) -> None:
        """Remember what ``job`` produced from these inputs."""
        self.entries[self._name(job)] = _Entry(fingerprint, digest)
        self.changed = True

    def save(self) -> None:
        """Persist the state (only when something changed)."""
        if self.changed:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, msgspec.json.encode(dict(sorted(self.entries.items()))))
        if self.committed is not None and self.committed != self._committed_before:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_atomic(self.committed_path, self.committed.encode())
        self.digests.save()


def clean(location: str) -> bool:
    """Remove a built registry directory and its build state; False if there was nothing."""
    where = parse_location(location)
    if where.directory is None:
        raise RegistryError(
            "clean removes a local registry directory; for a bucket, delete the prefix with your "
            "S3 tools, or remove unreferenced blobs with `registry-build gc`"
        )
    out = where.directory
    if not out.exists():
        shutil.rmtree(state_dir(where), ignore_errors=True)
        return False
    if not (out / "index.json").exists() and any(out.iterdir()):
        raise RegistryError(
            f"{out} does not look like a registry (no index.json) and is not empty: "
            "refusing to delete it; remove it yourself if you mean to"
        )
    for entry in out.iterdir():  # what a build writes; a file of the user's stays
        if entry.name in _REGISTRY_ENTRIES or _PAGE.match(entry.name) or is_temp_name(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    with contextlib.suppress(OSError):
        out.rmdir()  # only when nothing else was in it
    shutil.rmtree(state_dir(where), ignore_errors=True)
    return True


_REGISTRY_ENTRIES = {
    "blobs",
    "descriptors",
    "aliases",
    "models",
    "v1",
    "index",
    "index.json",
    "shards",
    ".staging",
}
_PAGE = re.compile(r"^index(-\d+)?\.html$")
