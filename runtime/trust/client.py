"""The reader's side of signed metadata: python-tuf's ``Updater`` over the registry's
:class:`~runtime.storage.store.Store` (a directory, ``file://``, ``http(s)://`` and ``s3://``
alike), and the attacks it refuses, named in a user's words.

A client with a pinned root keeps python-tuf's state beside the registry's other documents::

    <cache>/registries/<key>/tuf/       <key> names the location and the pinned root together
      root_history/, root.json          python-tuf's: every root it followed (a rotation)
      timestamp.json, snapshot.json,    python-tuf's: the metadata it trusts now
      targets.json
      timestamp.etag                    the etag of the timestamp.json trusted now
      root.absent                       "N ETAG": root N was not there while timestamp.json had
                                        that etag
      .lock                             one Updater at a time per registry (python-tuf's rule)

A warm resolve with nothing changed is one request: the fetcher reads ``timestamp.json`` with the
etag of the one trusted now, and on :class:`~runtime.storage.store.NotModified` hands python-tuf
the bytes it trusts already (so it sees the same version, and loads snapshot and targets from its
folder, and ``index.json`` through ``find_cached_target``). The probe for the next root version
that every refresh makes is answered "not there" without a request when ``timestamp.json`` is
unchanged since that root was last found missing: a repository that rotates its root signs a new
timestamp with it (``keys rotate`` does), and a server could hide a new root anyway, which is
what root expiry bounds. ``timestamp.json`` is read whole only up to python-tuf's limit for it
(16 kB; a longer one is refused before it is read); every other file is streamed, and refused at
python-tuf's length limit (the exact length the signed metadata names, or the ``UpdaterConfig``
maximum). Only what
python-tuf verified is kept: its own metadata, ``index.json``, and the etag and probe result of a
refresh that succeeded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from tuf.api import exceptions
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from runtime.errors import IntegrityError, KeyNotFound, RegistryError
from runtime.registry.index import INDEX_KEY
from runtime.storage.atomic import replace, temp_path_for, write_atomic
from runtime.storage.store import MAX_DOCUMENT, NotModified, ObjectTooLarge, Store
from runtime.trust.keys import TrustRoot
from runtime.trust.repository import INDEX_TARGET, TIMESTAMP_KEY, root_key

BASE = "store:/"  # what the Updater is told the registry's address is; the fetcher maps it back
CHUNK = 64 << 10
CONFIG = UpdaterConfig()  # python-tuf's limits: root 512 kB, timestamp 16 kB, ...
_ROOT = re.compile(r"metadata/(\d{1,9})\.root\.json")
_ROLE = re.compile(r"(?:\d+\.)?(root|timestamp|snapshot|targets)\.json$")
NOTHING_CACHED = "nothing was cached"


class TrustError(RegistryError):
    """Raised when a signed registry's metadata or ``index.json`` fails verification from the
    trusted root; nothing of that response is cached. The subclasses name the attack."""


class Tampered(TrustError, IntegrityError):
    """Raised when ``index.json`` or a metadata file is not the one the metadata above it signs
    (tampered, or half-written)."""


class Rollback(TrustError):
    """Raised when the registry offers metadata older than the client has already seen."""


class Frozen(TrustError):
    """Raised when the registry's metadata has expired: stale, or frozen by whoever serves it."""


class UntrustedSignature(TrustError):
    """Raised when metadata is not signed by the keys the trusted root names (forged, or signed
    with a key the root replaced)."""


class EndlessData(TrustError):
    """Raised when the registry sends more bytes for a file than the metadata allows."""


class NotSigned(TrustError, FileNotFoundError):
    """Raised when a client with a trusted root reads a registry without signed metadata."""


class MixedMetadata(TrustError):
    """Raised when metadata files do not agree on their versions (mixed from two moments, or a
    publish half-done), or are malformed."""


class StoreFetcher(FetcherInterface):
    """python-tuf's downloads, answered by a store: ``store:/metadata/...`` and
    ``store:/targets/...`` are its keys (module notes: the conditional timestamp read and the
    root probe). ``fetched`` keeps the bytes handed out, for the error messages."""

    def __init__(self, store: Store, folder: Path) -> None:
        self.store, self.folder = store, folder
        self.fetched: dict[str, bytes] = {}
        self.last, self.limit = "", 0
        self.absent_root: int | None = None
        self._stamp: tuple[bytes, str] | None = None  # this refresh's timestamp.json and etag
        self._unchanged = False
        self._reading: Generator[bytes] | None = None  # the stream being read

    @contextlib.contextmanager
    def download_file(self, url: str, max_length: int) -> Iterator[IO[bytes]]:
        """python-tuf's download, with the limit kept for the message when it is exceeded, and
        the stream closed however it ends (python-tuf stops reading at the limit)."""
        self.limit = max_length
        try:
            with super().download_file(url, max_length) as file:
                yield file
        finally:
            if self._reading is not None:
                self._reading.close()
                self._reading = None

    def _fetch(self, url: str) -> Iterator[bytes]:
        key = url.removeprefix(BASE)
        self.last = key
        if key == TIMESTAMP_KEY:
            data = self._timestamp()
            self.fetched[key] = data
            return iter((data,))
        probe = _ROOT.fullmatch(key)
        if probe and self._known_absent(int(probe[1])):
            raise exceptions.DownloadHTTPError(f"{key} not found", 404)
        return self._stream(key, int(probe[1]) if probe else None)

    def _stream(self, key: str, root: int | None) -> Iterator[bytes]:
        stack = contextlib.ExitStack()
        try:
            reader = stack.enter_context(self.store.open(key))
        except KeyNotFound:
            stack.close()
            if root is not None:
                self.absent_root = root
            raise exceptions.DownloadHTTPError(f"{key} not found", 404) from None
        self._reading = self._chunks(stack, reader, key)
        return self._reading

    def _chunks(
        self, stack: contextlib.ExitStack[bool | None], reader: IO[bytes], key: str
    ) -> Generator[bytes]:
        kept = key.startswith("metadata/")  # small, and bounded by python-tuf: kept for messages
        pieces = []
        with stack:
            while chunk := reader.read(CHUNK):
                if kept:
                    pieces.append(chunk)
                yield chunk
        if kept:
            self.fetched[key] = b"".join(pieces)

    # -- timestamp.json, conditionally -------------------------------------------------------

    def _timestamp(self) -> bytes:
        if self._stamp is None:
            self._stamp = self._read_timestamp()
        return self._stamp[0]

    def _read_timestamp(self) -> tuple[bytes, str]:
        trusted = self.folder / "timestamp.json"
        etag = _read_text(self.folder / "timestamp.etag") if trusted.is_file() else None
        try:
            found = self.store.get(TIMESTAMP_KEY, etag, limit=CONFIG.timestamp_max_length)
        except ObjectTooLarge:  # refused at python-tuf's limit, before it is read whole
            self.last, self.limit = TIMESTAMP_KEY, CONFIG.timestamp_max_length
            raise exceptions.DownloadLengthMismatchError(f"{TIMESTAMP_KEY} too long") from None
        except NotModified:
            self._unchanged = True
            return trusted.read_bytes(), etag or ""
        except KeyNotFound:
            raise exceptions.DownloadHTTPError(f"{TIMESTAMP_KEY} not found", 404) from None
        return found

    def _known_absent(self, version: int) -> bool:
        """Whether root ``version`` was missing while timestamp.json had the etag it has now
        (asked now, conditionally: the request the refresh makes next anyway)."""
        memo = _read_text(self.folder / "root.absent")
        if memo is None or memo.split(" ", 1)[0] != str(version):
            return False
        self._timestamp()
        if self._unchanged and self._stamp is not None and memo == f"{version} {self._stamp[1]}":
            self.absent_root = version
            return True
        return False

    def save(self) -> None:
        """After a refresh that succeeded: keep the etag of the timestamp now trusted, and which
        root was not there with it."""
        if self._stamp is None or not self._stamp[1]:
            return
        etag = self._stamp[1]
        if not self._unchanged:
            write_atomic(self.folder / "timestamp.etag", etag.encode())
        self._memo(etag)

    def _memo(self, etag: str) -> None:
        path = self.folder / "root.absent"
        if self.absent_root is not None and _read_text(path) != f"{self.absent_root} {etag}":
            write_atomic(path, f"{self.absent_root} {etag}".encode())


def _read_text(path: Path) -> str | None:
    with contextlib.suppress(FileNotFoundError, UnicodeDecodeError):
        return path.read_text(encoding="utf-8").strip() or None
    return None


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One Updater at a time on ``folder`` (python-tuf's rule), across processes."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # no POSIX locks (Windows): one process at a time is the caller's part
        yield
        return
    with open(folder / ".lock", "ab") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        yield


class SignedIndex:
    """One registry's ``index.json``, verified by python-tuf from ``root``; python-tuf's state
    in ``folder`` (module notes)."""

    def __init__(self, root: TrustRoot, folder: Path, location: str) -> None:
        self.root, self.folder, self.location = root, folder, location

    def fetch(self, store: Store, path: Path) -> None:
        """Make ``path`` hold the registry's current ``index.json``, verified: read from the
        registry only when the copy there is not the one the metadata signs now."""
        with _locked(self.folder):
            fetcher = StoreFetcher(store, self.folder)
            with translated(self.location, fetcher):
                updater = Updater(
                    str(self.folder), BASE + "metadata/", None, BASE + "targets/", fetcher,
                    CONFIG, bootstrap=self.root.data,
                )  # fmt: skip
                updater.refresh()
                info = updater.get_targetinfo(INDEX_TARGET)
                if info is None:
                    raise MixedMetadata(
                        f"{self.location}: its signed targets name no index.json; {NOTHING_CACHED}"
                        ": ask the publisher to run `registry-build resign`"
                    )
                if updater.find_cached_target(info, str(path)) is None:
                    _download(updater, info, path)
            fetcher.save()

    def check_fresh(self) -> None:
        """Refuse (:class:`Frozen`) to answer from the cache once the timestamp trusted there
        has expired: an unreachable registry must not freeze a client for good."""
        trusted = self.folder / "timestamp.json"
        expires = _summary(trusted.read_bytes()).get("expires_at") if trusted.is_file() else None
        if expires is not None and expires <= datetime.now(UTC):
            raise _frozen(self.location, "timestamp", expires)


def _download(updater: Updater, info: Any, path: Path) -> None:
    """python-tuf's verified download into a temporary beside ``path``, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        updater.download_target(info, str(tmp))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# -- what went wrong, in a user's words --------------------------------------------------------


@contextlib.contextmanager
def translated(location: str, fetcher: StoreFetcher) -> Iterator[None]:
    """python-tuf's exceptions as the project's errors (one line each, naming the attack)."""
    try:
        yield
    except exceptions.DownloadLengthMismatchError:
        raise EndlessData(
            f"{location}: {_shown(fetcher.last)} is longer than the {fetcher.limit} bytes allowed "
            f"(endless data); refused at the limit, {NOTHING_CACHED}: the registry is corrupt or "
            "hostile"
        ) from None
    except exceptions.DownloadHTTPError as exc:
        raise _missing(location, fetcher.last, exc) from None
    except exceptions.DownloadError as exc:
        cause = exc.__cause__
        if isinstance(cause, RegistryError):  # the store's own error: unreachable, refused, ...
            raise cause from None
        raise MixedMetadata(f"{location}: reading {fetcher.last} failed: {exc}") from None
    except exceptions.RepositoryError as exc:
        raise _refused(location, fetcher, exc) from None


def _missing(location: str, key: str, exc: exceptions.DownloadHTTPError) -> TrustError:
    if key == TIMESTAMP_KEY and exc.status_code == 404:
        return NotSigned(
            f"{location} has no signed metadata ({TIMESTAMP_KEY}), but a trusted root was given: "
            "the registry is unsigned, or its signatures were removed; sign it (`registry-build "
            "build --root`), or drop --trust / BUNDLE_REGISTRY_TRUST"
        )
    return MixedMetadata(
        f"{location}: {_shown(key)} is missing (HTTP {exc.status_code}), though the signed "
        f"metadata names it (half-published, or removed); {NOTHING_CACHED}: retry, or ask the "
        "publisher to run `registry-build resign`"
    )


def _refused(location: str, fetcher: StoreFetcher, exc: exceptions.RepositoryError) -> TrustError:
    key = _shown(fetcher.last)
    if isinstance(exc, exceptions.LengthOrHashMismatchError):
        return Tampered(
            f"{location}: {key} does not match its signed hash (tampered or half-written); "
            f"{NOTHING_CACHED}: retry, and if it persists ask the publisher to check the "
            "registry with `registry-build verify`"
        )
    if isinstance(exc, exceptions.UnsignedMetadataError):
        return UntrustedSignature(
            f"{location}: {key} is not signed by the keys the trusted root names (forged, or "
            f"signed with a replaced key); {NOTHING_CACHED}: check --trust, or ask the publisher "
            "which root to trust"
        )
    if isinstance(exc, exceptions.ExpiredMetadataError):
        role = _expired_role(str(exc))
        return _frozen(location, role, _expiry(fetcher, role))
    if isinstance(exc, exceptions.BadVersionNumberError):
        older = _rollback(fetcher)
        if older is not None:
            return Rollback(
                f"{location}: the registry offers version {older[0]} of its metadata, older than "
                f"{older[1]} already seen (rollback); {NOTHING_CACHED}: a stale mirror or an "
                "attacker serves it; use the registry itself, or ask the publisher"
            )
    return MixedMetadata(
        f"{location}: {key} does not fit the metadata above it ({exc}) (mixed from two versions, "
        f"or half-published); {NOTHING_CACHED}: retry, or ask the publisher to run "
        "`registry-build resign`"
    )


def _shown(key: str) -> str:
    """A key as a message names it: the target by its name, metadata by its path."""
    return INDEX_KEY if key.startswith("targets/") else key


def _frozen(location: str, role: str, expires: datetime | None) -> Frozen:
    when = expires.strftime("%Y-%m-%dT%H:%M:%SZ") if expires else "an unknown time"
    fix = (
        "the publisher must sign a new root with `registry-build keys rotate`"
        if role == "root"
        else "the publisher must run `registry-build resign` (a scheduled job does), or a mirror "
        "serves old metadata"
    )
    return Frozen(
        f"{location}: the registry's {role} expired at {when} (stale or frozen); "
        f"{NOTHING_CACHED}: {fix}"
    )


def _expired_role(message: str) -> str:
    for role in ("timestamp", "snapshot", "targets", "root"):
        if role in message:
            return role
    return "metadata"


def _expiry(fetcher: StoreFetcher, role: str) -> datetime | None:
    """When ``role`` expires: in the copy just fetched, else in the one python-tuf keeps."""
    for key, data in reversed(fetcher.fetched.items()):
        match = _ROLE.search(key)
        if match and match[1] == role:
            return _summary(data).get("expires_at")
    local = fetcher.folder / f"{role}.json"
    return _summary(local.read_bytes()).get("expires_at") if local.is_file() else None


def _summary(data: bytes) -> dict[str, Any]:
    """The version, expiry and snapshot version of metadata bytes, as far as they can be read."""
    try:
        signed = json.loads(data)["signed"]
        found: dict[str, Any] = {"version": int(signed["version"])}
        found["expires_at"] = datetime.strptime(signed["expires"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=UTC
        )
        meta = signed.get("meta", {}).get("snapshot.json")
        if isinstance(meta, dict):
            found["snapshot"] = int(meta["version"])
        return found
    except (ValueError, KeyError, TypeError):
        return {}


def _rollback(fetcher: StoreFetcher) -> tuple[int, int] | None:
    """(offered, seen) when the timestamp just fetched, or the snapshot version it names, is
    older than the one python-tuf trusts."""
    offered = _summary(fetcher.fetched.get(TIMESTAMP_KEY, b""))
    pairs = [
        (offered.get("version"), _local(fetcher.folder, "timestamp").get("version")),
        (offered.get("snapshot"), _local(fetcher.folder, "snapshot").get("version")),
    ]
    for new, old in pairs:
        if isinstance(new, int) and isinstance(old, int) and new < old:
            return new, old
    return None


def _local(folder: Path, role: str) -> dict[str, Any]:
    path = folder / f"{role}.json"
    return _summary(path.read_bytes()) if path.is_file() else {}


# -- verify ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedReport:
    """What a check of a registry's signed metadata found: the root version it ended at and
    whether that root was pinned, the version and expiry of the timestamp, and whether
    ``index.json`` is the signed index."""

    root_version: int
    pinned: bool
    version: int
    expires: datetime | None
    index_current: bool


def check_signed(store: Store, root: TrustRoot | None) -> SignedReport:
    """Verify ``store``'s metadata as a client does, from ``root`` (else from the registry's own
    first root: the chain and expiry are checked, not who made it), with no cache: signatures,
    versions, expiry, and ``index.json`` against the hash they sign."""
    bootstrap = root.data if root is not None else _first_root(store)
    with tempfile.TemporaryDirectory(prefix="bundle-registry-verify-") as scratch:
        folder = Path(scratch)
        target = folder / "index.json"
        fetcher = StoreFetcher(store, folder)
        with translated(store.location, fetcher):
            updater = Updater(
                scratch, BASE + "metadata/", None, BASE + "targets/", fetcher, CONFIG,
                bootstrap=bootstrap,
            )  # fmt: skip
            updater.refresh()
            info = updater.get_targetinfo(INDEX_TARGET)
            if info is None:
                raise MixedMetadata(f"{store.location}: its signed targets name no index.json")
            _download(updater, info, target)
        plain = _plain(store)
        stamp = _local(folder, "timestamp")
        roots = sorted(int(p.name.split(".")[0]) for p in (folder / "root_history").iterdir())
        return SignedReport(
            roots[-1], root is not None, stamp.get("version", 0), stamp.get("expires_at"),
            plain == target.read_bytes(),
        )  # fmt: skip


def _first_root(store: Store) -> bytes:
    try:
        return store.get(root_key(1), limit=CONFIG.root_max_length)[0]
    except KeyNotFound:
        raise NotSigned(
            f"{store.location} has no {root_key(1)}: its signed metadata cannot be checked"
        ) from None


def _plain(store: Store) -> bytes | None:
    try:
        return store.get(INDEX_KEY, limit=MAX_DOCUMENT)[0]
    except KeyNotFound:
        return None
