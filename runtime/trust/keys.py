"""Keys and roots: the root a client pins, the key files ``registry-build keys init`` writes, the
signer a writer signs with, and how long each kind of metadata stays valid.

::

    KEYS/
      root.json         the signed root (public): what clients pin (--trust, BUNDLE_REGISTRY_TRUST)
                        and what the first signed build installs (--root)
      root.key          the root's private key (PEM, PKCS#8): keep it offline; it signs new root
                        versions only (``keys rotate``)
      online.key        the online key: signs targets, snapshot and timestamp on every publish,
                        promote and resign (CI's secret, BUNDLE_REGISTRY_SIGNING_KEY)
      retired/          keys ``keys rotate`` replaced: <root version>.root.key, .online.key

A signing key is given as a key file's path or as a securesystemslib signer URI (``awskms:...``,
``gcpkms:...``, ``azurekms:...``, ``hv:...``, ``file2:PATH``); a URI's public key is the online
key that the registry's root names. Everything a user gives is checked here, once: a root must be
a root signed by its own keys, a key file a private key.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.exceptions import Error as SecureSystemsLibError
from securesystemslib.signer import SIGNER_FOR_URI_SCHEME, CryptoSigner, Key, Signer
from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import Metadata, Role, Root
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from runtime.documents import quoted
from runtime.errors import RegistryError
from runtime.storage.atomic import fsync_dir, temp_path_for
from runtime.trust import SIGNING_ENV

ONLINE_ROLES = ("targets", "snapshot", "timestamp")
ROOT_JSON, ROOT_KEY, ONLINE_KEY, RETIRED = "root.json", "root.key", "online.key", "retired"
MAX_ROOT_BYTES = 512_000  # python-tuf's own limit for a root


class RootFileError(RegistryError, ValueError):
    """Raised when a file given as a trusted root (``--trust``, ``--root``) is not a TUF root
    signed by its own keys."""


class KeyFileError(RegistryError, ValueError):
    """Raised when a signing key (``--signing-key``, ``BUNDLE_REGISTRY_SIGNING_KEY``, a file of
    ``KEYS/``) is neither a readable private key file nor a signer URI that can be used."""


class KeysExist(RegistryError, FileExistsError):
    """Raised when ``keys init`` would overwrite a key or root file."""


@dataclass(frozen=True)
class Expiry:
    """How long newly signed metadata stays valid (the issue's defaults)."""

    timestamp: timedelta = timedelta(days=1)
    snapshot: timedelta = timedelta(days=7)
    targets: timedelta = timedelta(days=7)
    root: timedelta = timedelta(days=365)


@dataclass(frozen=True)
class TrustRoot:
    """A root, checked: its bytes as given (what a client bootstraps from), and their meaning."""

    data: bytes
    metadata: Metadata[Root]
    where: str

    @property
    def version(self) -> int:
        """The root's version."""
        return self.metadata.signed.version

    @property
    def digest(self) -> str:
        """SHA-256 of the bytes: names a client's state for this root."""
        return hashlib.sha256(self.data).hexdigest()

    @property
    def online(self) -> dict[str, Key]:
        """The keys the root lets sign timestamp.json (the online key), by keyid."""
        return online_keys(self.metadata.signed)


def online_keys(root: Root) -> dict[str, Key]:
    """The keys ``root`` lets sign timestamp.json, by keyid."""
    return {keyid: root.keys[keyid] for keyid in root.roles["timestamp"].keyids}


def parse_root(data: bytes, where: str) -> TrustRoot:
    """``data`` as a root signed by a threshold of its own root keys, else RootFileError."""
    fix = "pass the root.json that `registry-build keys init` (or `keys rotate`) wrote"
    try:
        metadata = Metadata[Root].from_bytes(data)
    except DeserializationError as exc:
        raise RootFileError(f"{where} is not TUF metadata ({_first_line(exc)}): {fix}") from None
    if not isinstance(metadata.signed, Root):
        raise RootFileError(f"{where} is {metadata.signed.type} metadata, not a root: {fix}")
    try:
        metadata.signed.verify_delegate(Root.type, metadata.signed_bytes, metadata.signatures)
    except RepositoryError:
        raise RootFileError(
            f"{where} is not signed by the root keys it names (edited, or not a root): {fix}"
        ) from None
    return TrustRoot(data, metadata, where)


def load_root(path: Path) -> TrustRoot:
    """The root in the file ``path`` (see :func:`parse_root`)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_ROOT_BYTES + 1)
    except OSError as exc:
        raise RootFileError(
            f"cannot read the trusted root {path}: {exc.strerror or exc}: pass the root.json "
            "that `registry-build keys init` wrote"
        ) from None
    if len(data) > MAX_ROOT_BYTES:
        raise RootFileError(f"{path} is larger than a root may be ({MAX_ROOT_BYTES} bytes)")
    return parse_root(data, str(path))


@dataclass(frozen=True)
class Signing:
    """How a writer signs: the online key as given (``key``: a file's path or a signer URI), the
    signer already loaded from a key file (None for a URI, made once its public key is known),
    a root to install on a registry that has none yet, and the expiry of what it signs."""

    key: str
    signer: Signer | None = None
    root: TrustRoot | None = None
    expiry: Expiry = field(default_factory=Expiry)

    def signer_for(self, online: Mapping[str, Key]) -> Signer:
        """The signer: the key file's, or the URI's with the one online key ``online`` names."""
        if self.signer is not None:
            return self.signer
        if len(online) != 1:
            raise KeyFileError(
                f"the signer URI {quoted(self.key, 60)} needs the registry's one online key, but "
                f"its root names {len(online)}: give the key as a file instead"
            )
        try:
            return Signer.from_priv_key_uri(self.key, next(iter(online.values())))
        except (ValueError, OSError, SecureSystemsLibError) as exc:  # KMS libraries missing too
            raise KeyFileError(
                f"cannot use the signer URI {quoted(self.key, 60)}: {_first_line(exc)}"
            ) from None


def load_signing(key: str, root: Path | None = None, expiry: Expiry | None = None) -> Signing:
    """``key`` (a private key file or a signer URI) and ``root`` (a root file to install) as a
    :class:`Signing`, checked now."""
    scheme = key.partition(":")[0]
    installed = load_root(root) if root is not None else None
    expiry = expiry or Expiry()
    if scheme in SIGNER_FOR_URI_SCHEME and not Path(key).exists():
        return Signing(key, None, installed, expiry)
    return Signing(key, load_key_file(Path(key)), installed, expiry)


def signing_from(
    explicit: str | None, root: Path | None = None, expiry: Expiry | None = None
) -> Signing | None:
    """The signing the command line asks for: ``--signing-key``, else
    ``$BUNDLE_REGISTRY_SIGNING_KEY``; None when neither is given (``--root`` then is refused)."""
    chosen = explicit or os.environ.get(SIGNING_ENV)
    if not chosen:
        if root is not None:
            raise KeyFileError(
                f"--root {root} installs a trust root, which needs the online key to sign with: "
                f"pass --signing-key KEYS/{ONLINE_KEY} or set {SIGNING_ENV}"
            )
        return None
    return load_signing(chosen, root, expiry)


def load_key_file(path: Path) -> CryptoSigner:
    """The signer of the private key in the PEM file ``path``."""
    fix = f"pass the {ONLINE_KEY} that `registry-build keys init` wrote, or a signer URI"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(
            f"cannot read the key file {path}: {exc.strerror or exc}: {fix}"
        ) from None
    try:
        return CryptoSigner(load_pem_private_key(data, None))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(
            f"{path} is not an unencrypted PEM private key ({_first_line(exc)}): {fix}"
        ) from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


# -- making keys and roots ---------------------------------------------------------------------


def new_root(
    version: int,
    root_key: Key,
    online_key: Key,
    expires: datetime,
    signers: list[Signer],
) -> TrustRoot:
    """Root ``version``: ``root_key`` signs roots, ``online_key`` the other three roles (threshold
    1 each, consistent snapshots), signed by each of ``signers``."""
    roles = {"root": Role([root_key.keyid], 1)} | {
        r: Role([online_key.keyid], 1) for r in ONLINE_ROLES
    }
    keys = {root_key.keyid: root_key, online_key.keyid: online_key}
    root = Metadata(Root(version, None, expires, keys, roles, consistent_snapshot=True))
    for signer in signers:
        root.sign(signer, append=True)
    data = root.to_bytes(JSONSerializer(compact=False))
    return parse_root(data, f"root version {version}")


def init_keys(directory: Path, expiry: Expiry | None = None) -> TrustRoot:
    """Write a new root key, online key and root version 1 into ``directory`` (module notes);
    refuses (KeysExist) before writing anything if one of those files exists."""
    paths = [directory / name for name in (ROOT_KEY, ONLINE_KEY, ROOT_JSON)]
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise KeysExist(
            f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}: keys init "
            "never overwrites keys; pick another directory, or use `registry-build keys rotate`"
        )
    root_signer, online_signer = CryptoSigner.generate_ed25519(), CryptoSigner.generate_ed25519()
    expires = datetime.now(UTC) + (expiry or Expiry()).root
    root = new_root(1, root_signer.public_key, online_signer.public_key, expires, [root_signer])
    directory.mkdir(parents=True, exist_ok=True)
    write_key(directory / ROOT_KEY, root_signer.private_bytes)
    write_key(directory / ONLINE_KEY, online_signer.private_bytes)
    write_create(directory / ROOT_JSON, root.data, 0o644)
    return parse_root(root.data, str(directory / ROOT_JSON))


def write_key(path: Path, data: bytes) -> None:
    """Write a private key file readable by its owner alone, create-only."""
    write_create(path, data, 0o600)


def write_create(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a fresh temporary file (``mode``), fsync it and link it to ``path``,
    failing with KeysExist if ``path`` exists; nothing half-written is ever at ``path``."""
    try:
        _write_then(path, data, mode, os.link)
    except FileExistsError:
        raise KeysExist(f"{path} already exists: it is never overwritten") from None


def replace_file(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` (file ``mode``): a fresh temporary file, fsynced, renamed."""
    _write_then(path, data, mode, os.replace)


def _write_then(path: Path, data: bytes, mode: int, move: Callable[[Path, Path], None]) -> None:
    """Write ``data`` to a fresh temporary sibling of ``path`` readable as ``mode``, fsync it,
    ``move`` it to ``path``, and remove the temporary whatever happens."""
    tmp = temp_path_for(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        move(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)


def rotate_keys(keys: Path, current: TrustRoot, new_root_key: bool, expiry: Expiry) -> TrustRoot:
    """Root version N+1 of ``current`` (N) with a new online key (and root key, unless
    ``new_root_key`` is False), signed by N's root key and its own, and saved in ``keys``: the
    keys of N copied into ``retired/`` first, then the new keys, then ``root.json`` (last: it
    names them). A run cut short leaves ``root.json`` at N and N's keys in ``retired/``, so the
    next run starts over from there."""
    old = _retire(keys, current)
    root_signer = CryptoSigner.generate_ed25519() if new_root_key else old
    online = CryptoSigner.generate_ed25519()
    signers: list[Signer] = [old, root_signer] if new_root_key else [old]
    expires = datetime.now(UTC) + expiry.root
    root = new_root(
        current.version + 1, root_signer.public_key, online.public_key, expires, signers
    )
    if new_root_key:
        replace_file(keys / ROOT_KEY, root_signer.private_bytes, 0o600)
    replace_file(keys / ONLINE_KEY, online.private_bytes, 0o600)
    replace_file(keys / ROOT_JSON, root.data, 0o644)
    return parse_root(root.data, str(keys / ROOT_JSON))


def _retire(keys: Path, current: TrustRoot) -> CryptoSigner:
    """Copy the keys of root ``current`` into ``keys/retired/`` (kept if a cut-short run copied
    them already) and return its root key, checked to be the one that root names."""
    retired = keys / RETIRED
    retired.mkdir(exist_ok=True)
    for name in (ROOT_KEY, ONLINE_KEY):
        copy = retired / f"{current.version}.{name}"
        if not copy.exists():
            write_key(copy, load_key_file(keys / name).private_bytes)
    old = load_key_file(retired / f"{current.version}.{ROOT_KEY}")
    if old.public_key.keyid not in current.metadata.signed.roles["root"].keyids:
        raise KeyFileError(
            f"{keys / ROOT_KEY} is not the root key of {keys / ROOT_JSON} (version "
            f"{current.version}): rotate with the keys directory that `keys init` wrote"
        )
    return old
