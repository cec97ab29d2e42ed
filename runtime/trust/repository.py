"""The writer's side of signed metadata (layout: :mod:`runtime.trust`): read the signed head,
commit a new ``index.json`` by signing it, install a root, resign, rotate keys.

A commit at head version ``V`` (what ``timestamp.json`` names; etag ``E``), with ``W`` = V+1, or
past a version this writer already found taken::

    targets/<sha256>.index.json   1. create-only (named by its content: already there is fine)
    metadata/W.targets.json       2. create-only: taken means another writer is committing, or
                                     died after this step; either way the round is lost
    metadata/W.snapshot.json      3. create-only
    metadata/timestamp.json       4. replaced only if its etag is still E: THE commit
    index.json                    5. the committed bytes, by compare-and-swap on the etag read
                                     first (then re-read and repeated until it holds the signed
                                     index, a few times at most)

A lost round (2, 3 or 4) returns False: the caller re-reads, re-merges and signs again. Files of
a lost or crashed round are never named by a timestamp and never reused. A crash after 4 leaves
``index.json`` one commit behind until the next commit: a client that verifies never reads it,
and one that does not sees the registry of a moment before.

Installing a root (``--root``, once): ``metadata/N.root.json`` create-only (the same bytes there
already are fine), then ``index.json`` marked ``"signed": true`` by compare-and-swap, so that from
then on a writer without the key refuses; then the first commit (``timestamp.json`` created
only if absent). Everything read here is the writer's own store, parsed but not verified (a
client verifies; ``registry-build verify`` checks the whole chain).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from securesystemslib.signer import Signer
from tuf.api.exceptions import LengthOrHashMismatchError, RepositoryError, UnsignedMetadataError
from tuf.api.metadata import Metadata, MetaFile, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization import DeserializationError

from runtime.errors import CorruptDocument, KeyNotFound, PreconditionFailed, RegistryError
from runtime.registry.head import Head, SignedHead, read_head
from runtime.registry.index import INDEX_KEY
from runtime.storage.store import PutMode, Store
from runtime.trust.keys import (
    ONLINE_KEY,
    ROOT_JSON,
    ROOT_KEY,
    Expiry,
    Signing,
    TrustRoot,
    load_key_file,
    load_root,
    parse_root,
)

TIMESTAMP_KEY = "metadata/timestamp.json"
INDEX_TARGET = "index.json"
HASHES = ["sha256"]
PLAIN_ATTEMPTS = 8  # rounds to bring index.json in line after a commit
MAX_ROOTS = 10_000  # root versions probed at most
RESIGN_ATTEMPTS = 64
REPAIR = "run `registry-build verify` on it; `registry-build resign` signs it anew"
P = TypeVar("P", Timestamp, Snapshot, Targets)
Clock = Callable[[], datetime]


class SigningError(RegistryError):
    """Raised when the signing key does not sign for this registry (not its online key, or a
    signer that fails), or when a root cannot be installed or rotated; nothing was committed."""


def root_key(version: int) -> str:
    """Store key of root ``version``."""
    return f"metadata/{version}.root.json"


def targets_key(version: int) -> str:
    """Store key of targets ``version``."""
    return f"metadata/{version}.targets.json"


def snapshot_key(version: int) -> str:
    """Store key of snapshot ``version``."""
    return f"metadata/{version}.snapshot.json"


def target_key(info: TargetFile) -> str:
    """Store key of a target under its hash-prefixed, immutable name."""
    return f"targets/{info.hashes['sha256']}.{info.path}"


def utc_now() -> datetime:
    """The current time in UTC (the default clock)."""
    return datetime.now(UTC)


# -- reading -----------------------------------------------------------------------------------


def parse(store: Store, key: str, data: bytes, kind: type[P]) -> tuple[P, frozenset[str]]:
    """The payload of ``data`` (``key`` of ``store``), metadata of ``kind``, and the keyids of
    its signatures; CorruptDocument when it is not such metadata."""
    try:
        found: Metadata[Any] = Metadata.from_bytes(data)
    except DeserializationError as exc:
        raise CorruptDocument(
            f"{store.location}/{key} is not TUF metadata ({str(exc)[:200]}): {REPAIR}"
        ) from None
    if not isinstance(found.signed, kind):
        raise CorruptDocument(
            f"{store.location}/{key} is {found.signed.type} metadata, not {kind.type}: {REPAIR}"
        )
    return found.signed, frozenset(found.signatures)


def _get(store: Store, key: str, named_by: str) -> bytes:
    try:
        return store.get(key)[0]
    except KeyNotFound:
        raise KeyNotFound(
            f"{key} is missing from {store.location}, though {named_by} names it: {REPAIR}"
        ) from None


def read_signed(store: Store, plain: bytes, etag: str) -> Head:
    """The head of a signed registry whose ``index.json`` (``plain``, ``etag``) was just read:
    ``timestamp.json``, the targets it names, and the index those sign (``plain`` itself when it
    is that index, else its immutable copy)."""
    try:
        stamp_data, stamp_etag = store.get(TIMESTAMP_KEY)
    except KeyNotFound:  # a root is installed, the first commit is not made yet
        return Head(plain, etag, SignedHead(0, None, frozenset()))
    stamp, keyids = parse(store, TIMESTAMP_KEY, stamp_data, Timestamp)
    version = stamp.snapshot_meta.version  # targets, snapshot, timestamp: one version
    key = targets_key(version)
    info = _index_target(store, key, _get(store, key, TIMESTAMP_KEY))
    current = _holds(info, plain)
    data = plain if current else _signed_index(store, info, key)
    return Head(data, etag, SignedHead(stamp.version, stamp_etag, keyids, stamp.expires, current))


def _index_target(store: Store, key: str, data: bytes) -> TargetFile:
    info = parse(store, key, data, Targets)[0].targets.get(INDEX_TARGET)
    if info is None or "sha256" not in info.hashes:
        raise CorruptDocument(f"{store.location}/{key} names no index.json by SHA-256: {REPAIR}")
    return info


def _holds(info: TargetFile, data: bytes) -> bool:
    try:
        info.verify_length_and_hashes(data)
    except LengthOrHashMismatchError:
        return False
    return True


def _signed_index(store: Store, info: TargetFile, named_by: str) -> bytes:
    key = target_key(info)
    data = _get(store, key, named_by)
    if not _holds(info, data):
        raise CorruptDocument(
            f"{store.location}/{key} does not match the hash {named_by} signs for it: {REPAIR}"
        )
    return data


def newest_root(store: Store) -> TrustRoot:
    """The store's newest root (probed from version 1 on: roots change seldom)."""
    newest: TrustRoot | None = None
    for version in range(1, MAX_ROOTS):
        try:
            data = store.get(root_key(version))[0]
        except KeyNotFound:
            break
        newest = parse_root(data, f"{store.location}/{root_key(version)}")
    if newest is None:
        raise KeyNotFound(
            f"{store.location} has no {root_key(1)}: it is not signed; install a root with "
            "`registry-build build --root KEYS/root.json` (or publish --root)"
        )
    return newest


# -- signing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedFiles:
    """The three files of one signed version: targets, snapshot and timestamp, as bytes."""

    version: int
    targets: bytes
    snapshot: bytes
    timestamp: bytes


def sign_version(
    data: bytes, version: int, signer: Signer, expiry: Expiry, now: datetime
) -> SignedFiles:
    """Targets naming the index ``data``, the snapshot naming those targets and the timestamp
    naming that snapshot, all of ``version``, each signed by ``signer``."""
    index = TargetFile.from_data(INDEX_TARGET, data, HASHES)
    targets = _signed(Targets(version, None, now + expiry.targets, {INDEX_TARGET: index}), signer)
    meta = {"targets.json": MetaFile.from_data(version, targets, HASHES)}
    snapshot = _signed(Snapshot(version, None, now + expiry.snapshot, meta), signer)
    stamp_meta = MetaFile.from_data(version, snapshot, HASHES)
    stamp = Timestamp(version, None, now + expiry.timestamp, stamp_meta)
    return SignedFiles(version, targets, snapshot, _signed(stamp, signer))


def _signed(payload: P, signer: Signer) -> bytes:
    metadata = Metadata(payload)
    try:
        metadata.sign(signer)
    except UnsignedMetadataError as exc:
        raise SigningError(
            f"could not sign {payload.type} metadata: {exc.__cause__ or exc}"
        ) from None
    return metadata.to_bytes()


class SignedWriter:
    """Commits to a signed registry (module notes); remembers the versions it found taken."""

    def __init__(self, store: Store, signing: Signing, clock: Clock = utc_now) -> None:
        self.store, self.signing, self.clock = store, signing, clock
        self.taken = 0  # the highest version this writer found claimed by another
        self._signer: Signer | None = None
        self._root_seen = False

    def check(self, head: Head) -> None:
        """Refuse a key that is not the registry's online key, and a root to install that is not
        the one a signed registry has (before anything is written)."""
        self.signer(head)
        if head.signed is not None and self.signing.root is not None and not self._root_seen:
            _installed(self.store, self.signing.root)
            self._root_seen = True

    def signer(self, head: Head) -> Signer:
        """The signer, checked once against the keys the registry signs with."""
        if self._signer is None:
            expected, signer = self._online(head)
            keyid = signer.public_key.keyid
            if keyid not in expected:
                raise SigningError(
                    f"the signing key {self.signing.key} (key {keyid[:16]}) is not the online key "
                    f"of {self.store.location} ({', '.join(k[:16] for k in sorted(expected))}): "
                    "sign with the online.key of its last `registry-build keys init` or `keys "
                    "rotate`; nothing was written"
                )
            self._signer = signer
        return self._signer

    def _online(self, head: Head) -> tuple[set[str], Signer]:
        """The keyids that may sign, and the signer. A key file that signed ``timestamp.json``
        is the online key (no request); any other key, or a URI (which needs the public key),
        is checked against the newest root's online key (probed: after ``keys rotate`` the
        new key signs before any timestamp it signed exists)."""
        file_signer, signed = self.signing.signer, head.signed
        keyid = file_signer.public_key.keyid if file_signer else None
        if signed and signed.version and file_signer and keyid in signed.keyids:
            return set(signed.keyids), file_signer
        fresh = signed is None or signed.version == 0
        root = self.signing.root if fresh and self.signing.root else newest_root(self.store)
        return set(root.online), self.signing.signer_for(root.online)

    def install(self, head: Head) -> tuple[Head, list[str]] | None:
        """Install the signing's root and mark ``index.json`` signed: the head after and the keys
        written, or None when ``index.json`` changed since ``head`` was read (read again)."""
        root = self.signing.root
        if root is None:  # IndexWriter.check refuses this first
            raise SigningError(f"{self.store.location} has no signed metadata and no root is given")
        written = _install_root(self.store, root)
        marked = _marked(self.store, head.data)
        mode = PutMode.MATCH if head.etag is not None else PutMode.CREATE
        try:
            etag = self.store.put(INDEX_KEY, marked, mode, head.etag)
        except (PreconditionFailed, KeyNotFound):
            return None
        return Head(marked, etag, SignedHead(0, None, frozenset())), written

    def commit(self, head: Head, data: bytes) -> list[str] | None:
        """Sign ``data`` as the index after ``head`` and commit it (module notes): the keys
        written, or None when another writer committed first."""
        installed: list[str] = []
        if head.signed is None:
            done = self.install(head)
            if done is None:
                return None
            head, installed = done
        signed_head = head.signed
        if signed_head is None:  # install() always returns a signed head
            return None
        version = max(signed_head.version, self.taken) + 1
        files = sign_version(data, version, self.signer(head), self.signing.expiry, self.clock())
        claimed = self._claim(data, files)
        if claimed is None:
            return None
        mode = PutMode.MATCH if signed_head.etag is not None else PutMode.CREATE
        try:
            self.store.put(TIMESTAMP_KEY, files.timestamp, mode, signed_head.etag)
        except (PreconditionFailed, KeyNotFound):
            return None
        sync_plain(self.store, data, head.etag)
        return [*installed, *claimed, TIMESTAMP_KEY, INDEX_KEY]

    def _claim(self, data: bytes, files: SignedFiles) -> list[str] | None:
        """Steps 1 to 3: the index by its hash, then the targets and snapshot of the version;
        the keys written, or None when the version is taken."""
        info = TargetFile.from_data(INDEX_TARGET, data, HASHES)
        written = []
        with contextlib.suppress(PreconditionFailed):  # named by its content: it is these bytes
            self.store.put(target_key(info), data, PutMode.CREATE)
            written.append(target_key(info))
        for key, content in (
            (targets_key(files.version), files.targets),
            (snapshot_key(files.version), files.snapshot),
        ):
            try:
                self.store.put(key, content, PutMode.CREATE)
            except PreconditionFailed:
                self.taken = max(self.taken, files.version)
                return None
            written.append(key)
        return written


def _install_root(store: Store, root: TrustRoot) -> list[str]:
    """Write the root create-only (the same bytes there already are fine); the keys written."""
    try:
        store.put(root_key(root.version), root.data, PutMode.CREATE)
    except PreconditionFailed:
        _installed(store, root)
        return []
    return [root_key(root.version)]


def _installed(store: Store, root: TrustRoot) -> None:
    """Refuse ``root`` (given to install) unless the registry holds that very root version."""
    key = root_key(root.version)
    try:
        found = store.get(key)[0]
    except KeyNotFound:
        raise SigningError(
            f"{root.where} is root version {root.version}, which {store.location} does not hold "
            "(it is signed already): drop --root, or install that root with `registry-build keys "
            "rotate`"
        ) from None
    if found != root.data:
        raise SigningError(
            f"{store.location}/{key} holds another root than {root.where}: the registry is "
            "signed with other keys; use that registry's keys, or drop --root"
        )


def _marked(store: Store, data: bytes | None) -> bytes:
    """``index.json``'s bytes with ``"signed": true`` (any format; an empty object when none)."""
    try:
        found: Any = msgspec.json.decode(data) if data is not None else {}
    except (msgspec.DecodeError, RecursionError):
        found = None
    if not isinstance(found, dict):
        raise CorruptDocument(
            f"{store.location}/{INDEX_KEY} is not a JSON object, so it cannot be signed: rebuild "
            "it with `registry-build reindex`, then install the root"
        )
    return msgspec.json.encode({**found, "signed": True}, order="deterministic")


def sync_plain(store: Store, data: bytes, etag: str | None) -> bool:
    """Make ``index.json`` hold the signed index (``data``, committed after ``index.json`` was
    read with ``etag``); re-read and repeated a few times when another writer moved it. True
    when it holds the signed index of the moment."""
    for _ in range(PLAIN_ATTEMPTS):
        mode = PutMode.MATCH if etag is not None else PutMode.CREATE
        try:
            store.put(INDEX_KEY, data, mode, etag)
            return True
        except (PreconditionFailed, KeyNotFound):
            head = read_head(store)
        if head.signed is None or head.signed.plain_current or head.data is None:
            return head.signed is not None
        data, etag = head.data, head.etag
    return False


# -- resign, rotate ----------------------------------------------------------------------------


def resign(store: Store, signing: Signing, attempts: int = RESIGN_ATTEMPTS) -> SignedHead:
    """Sign the current index again with fresh expiry (a new version of targets, snapshot and
    timestamp); returns what the metadata says after."""
    from runtime.aliases.pointer import backoff
    from runtime.registry.head import IndexWriter

    writer = IndexWriter(store, signing)
    for attempt in range(attempts):
        head = read_head(store)
        if head.signed is None or head.data is None:
            raise SigningError(
                f"{store.location} is not a signed registry (its index.json is not signed): "
                "install a root with `registry-build build --root` or `publish --root` first"
            )
        writer.check(head)
        if writer.write(head, head.data) is not None:
            after = read_head(store).signed
            if after is not None:
                return after
        backoff(attempt)
    raise SigningError(
        f"could not resign {store.location} in {attempts} attempts: other writers keep "
        "committing (each of their commits is signed anew anyway); run it again"
    )


@dataclass(frozen=True)
class Rotation:
    """What ``keys rotate`` did: the root versions before and after, the new online key."""

    before: int
    after: int
    online: str
    new_root_key: bool
    resigned: SignedHead


def rotate(
    store: Store, keys: Path, *, new_root_key: bool = True, expiry: Expiry | None = None
) -> Rotation:
    """Root rotation: root N+1 (signed by the keys of N and its own) with a new online key (and
    a new root key unless ``new_root_key`` is False), saved in ``keys`` (the old keys kept in
    ``keys/retired/``) before it is installed; then everything is signed anew with the new
    online key. A rotation cut short after saving the keys is finished by running it again."""
    from runtime.trust.keys import rotate_keys

    expiry = expiry or Expiry()
    current, newest = load_root(keys / ROOT_JSON), newest_root(store)
    if current.version != newest.version + 1:
        _same_root(current, newest)
        current = rotate_keys(keys, current, new_root_key, expiry)
    else:
        _follows(current, newest)
    _install_root(store, current)
    online = load_key_file(keys / ONLINE_KEY)
    after = resign(store, Signing(str(keys / ONLINE_KEY), online, None, expiry))
    renewed = _root_keys(current) != _root_keys(newest)
    return Rotation(newest.version, current.version, online.public_key.keyid, renewed, after)


def _root_keys(root: TrustRoot) -> set[str]:
    return set(root.metadata.signed.roles["root"].keyids)


def _same_root(current: TrustRoot, newest: TrustRoot) -> None:
    if current.data != newest.data:
        raise SigningError(
            f"{current.where} (root version {current.version}) is not the registry's newest "
            f"root, {newest.where}: rotate with the keys directory that root came from"
        )


def _follows(current: TrustRoot, newest: TrustRoot) -> None:
    """Refuse to install ``current`` (N+1) unless the root keys of ``newest`` (N) signed it."""
    try:
        newest.metadata.signed.verify_delegate(
            "root", current.metadata.signed_bytes, current.metadata.signatures
        )
    except RepositoryError:
        raise SigningError(
            f"{current.where} (root version {current.version}) is not signed by the root key of "
            f"the registry's root version {newest.version}: it was made for another registry; "
            f"use the keys directory whose {ROOT_KEY} signed that root"
        ) from None
