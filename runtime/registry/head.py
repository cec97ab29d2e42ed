"""The head of a registry: the ``index.json`` a writer merges into, and the one conditional write
that commits the next (the linearization point of every commit: publish, build, reindex,
promote, resign).

=================  ===========================================  =================================
registry           the index a writer reads                     the commit
=================  ===========================================  =================================
unsigned           ``index.json`` and its etag                  ``index.json`` replaced if its
                                                                etag is still the one read
signed             ``index.json`` (it says ``"signed": true``), ``metadata/timestamp.json``
                   then ``metadata/timestamp.json`` and         replaced if its etag is still the
                   ``V.targets.json``: the index they sign      one read; ``index.json`` follows
=================  ===========================================  =================================

Every writer goes through :class:`IndexWriter`: :meth:`~IndexWriter.check` refuses, before
anything is written, to commit to a signed registry without the signing key (or with another
key), and a key to a registry that is not signed unless a root to install comes with it;
:meth:`~IndexWriter.write` commits. Nothing here imports python-tuf: an unsigned registry never
loads it (the signed side is :mod:`runtime.trust.repository`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from runtime.errors import KeyNotFound, PreconditionFailed, RegistryError
from runtime.registry.index import INDEX_KEY, decode_index, no_index
from runtime.registry.wire import Index, encode
from runtime.storage.store import MAX_DOCUMENT, PutMode, Store

if TYPE_CHECKING:
    from runtime.trust.keys import Signing
    from runtime.trust.repository import SignedWriter

SIGNING_HELP = "pass --signing-key KEYS/online.key or set BUNDLE_REGISTRY_SIGNING_KEY"


class SigningKeyRequired(RegistryError, PermissionError):
    """Raised when a command would change a signed registry without the online key to sign
    with; nothing was written."""


class NotSignedRegistry(RegistryError, ValueError):
    """Raised when a signing key is given for a registry that has no signed metadata, and no
    root to install comes with it."""


@dataclass(frozen=True)
class SignedHead:
    """What a signed registry's metadata says now: the version of its timestamp, snapshot and
    targets (0: a root is installed, nothing signed yet), the etag of ``timestamp.json`` (the
    compare-and-swap token), the keys that signed it, when it expires, and whether
    ``index.json`` already holds the signed index."""

    version: int
    etag: str | None
    keyids: frozenset[str]
    expires: datetime | None = None
    plain_current: bool = True


@dataclass(frozen=True)
class Head:
    """The index a writer merges into: its bytes (None: no index yet), the etag of
    ``index.json`` as read, and what the signed metadata says (None: unsigned)."""

    data: bytes | None = None
    etag: str | None = None
    signed: SignedHead | None = None


class _Marker(msgspec.Struct):
    signed: bool = False


def marked_signed(data: bytes) -> bool:
    """Whether an ``index.json`` says ``"signed": true`` (a broken one says nothing)."""
    try:
        return msgspec.json.decode(data, type=_Marker).signed
    except (msgspec.MsgspecError, RecursionError):
        return False


def read_head(store: Store) -> Head:
    """The store's head (module notes): two more reads than ``index.json`` on a signed registry
    (``timestamp.json``, ``V.targets.json``), a third when ``index.json`` lags behind them."""
    try:
        data, etag = store.get(INDEX_KEY, limit=MAX_DOCUMENT)
    except KeyNotFound:
        return Head()
    if not marked_signed(data):
        return Head(data, etag)
    from runtime.trust import require_trust

    require_trust(f"{store.location} is signed: writing to it")
    from runtime.trust.repository import read_signed

    return read_signed(store, data, etag)


def head_index(store: Store, head: Head) -> Index:
    """The index ``head`` names (decoded: format 2 only); NoIndex when there is none."""
    if head.data is None:
        raise no_index(store)
    return decode_index(head.data, f"{store.location}/{INDEX_KEY}")


class IndexWriter:
    """Commits index.json at a head of ``store``, signing with ``signing`` where the registry is
    signed (or a root is to be installed)."""

    def __init__(self, store: Store, signing: Signing | None = None) -> None:
        self.store, self.signing = store, signing
        self._signed: SignedWriter | None = None  # made once: it remembers versions found taken

    def signs(self, head: Head) -> bool:
        """Whether a commit at ``head`` is signed (the registry is, or will be once installed)."""
        return head.signed is not None or self.signing is not None

    def installs(self, head: Head) -> bool:
        """Whether a commit at ``head`` first installs a root (the registry is not signed yet)."""
        return head.signed is None and self.signing is not None

    def check(self, head: Head) -> None:
        """Refuse, before anything is written, a commit that could not be signed (module notes)."""
        if head.signed is not None and self.signing is None:
            raise SigningKeyRequired(
                f"{self.store.location} is a signed registry (metadata/ signs its index.json): "
                f"{SIGNING_HELP} to change it; nothing was written"
            )
        if self.signing is None:
            return
        if head.signed is None and self.signing.root is None:
            raise NotSignedRegistry(
                f"{self.store.location} has no signed metadata, so there is nothing to sign with "
                f"the key {self.signing.key}: pass --root KEYS/root.json once to install the "
                "trust root, or drop --signing-key / BUNDLE_REGISTRY_SIGNING_KEY"
            )
        self._writer().check(head)

    def encode(self, head: Head, index: Index) -> bytes:
        """The bytes of ``index`` as committed at ``head``: marked signed where it is signed."""
        marked = msgspec.structs.replace(index, signed=True if self.signs(head) else msgspec.UNSET)
        return encode(marked)

    def write(self, head: Head, data: bytes) -> list[str] | None:
        """Commit ``data`` as the index after ``head``; the keys written, or None when another
        writer committed since ``head`` was read (read again, merge again, write again)."""
        if not self.signs(head):
            mode = PutMode.MATCH if head.etag is not None else PutMode.CREATE
            try:
                self.store.put(INDEX_KEY, data, mode, head.etag)
            except (PreconditionFailed, KeyNotFound):
                return None
            return [INDEX_KEY]
        self.check(head)
        return self._writer().commit(head, data)

    def _writer(self) -> SignedWriter:
        if self._signed is None:
            from runtime.trust.repository import SignedWriter

            if self.signing is None:  # check() refuses a signed commit without a key first
                raise SigningKeyRequired(f"{self.store.location}: {SIGNING_HELP}")
            self._signed = SignedWriter(self.store, self.signing)
        return self._signed
