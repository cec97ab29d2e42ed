"""Signed metadata (TUF): a device verifies every byte it uses from a root it pinned.

Trust is a layer over the static registry, not a new layout. python-tuf makes and checks the
metadata (``tuf.api.metadata``, ``tuf.ngclient.Updater``); keys are securesystemslib signers (a
key file, or a URI such as a cloud KMS key). The one TUF target is ``index.json``; shards and
blobs are verified by the digests the signed index names, as without signatures::

    metadata/1.root.json ... N.root.json   root versions: create-only, each signed by the root
                                           keys of the version before and its own (keys init,
                                           keys rotate); the root key stays offline
    metadata/V.targets.json                names index.json: its length and SHA-256
    metadata/V.snapshot.json               names V.targets.json: version, length, SHA-256
    metadata/timestamp.json                names V.snapshot.json; version V too
    targets/<sha256>.index.json            the signed index.json under its hash-prefixed,
                                           immutable name (TUF's consistent-snapshot naming): a
                                           reader never races a writer
    index.json                             the same bytes, for readers without a root (marked
                                           ``"signed": true``)

Targets, snapshot and timestamp are signed by the online key (CI's), and always written together
with one version ``V`` (so a writer reads ``timestamp.json`` and ``V.targets.json`` and knows all
three). ``V.targets.json`` and ``V.snapshot.json`` are created only if absent, and the commit of a
signed registry is the compare-and-swap of ``timestamp.json`` on the etag read first: that write
is the one linearization point. Whoever loses it (or finds ``V.targets.json`` taken) re-reads,
re-merges and signs again, with a later version; nobody ever produces a second
``V.targets.json``. ``index.json`` is brought in line after the commit, by compare-and-swap
(:mod:`runtime.trust.repository`).

Modules: :mod:`~runtime.trust.keys` (pinned roots, key files, signers, expiry),
:mod:`~runtime.trust.repository` (the writer's side: read the signed head, sign a commit, install
a root, resign, rotate) and :mod:`~runtime.trust.client` (the reader's side: ``Updater`` over a
:class:`~runtime.storage.store.Store`, and the attacks it refuses, in a user's words). They need
the ``trust`` extra; nothing else in ``runtime`` imports them unless a registry is signed or a
root or key is given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.extras import require

if TYPE_CHECKING:
    from runtime.trust.keys import Expiry, Signing, TrustRoot

SIGNING_ENV = "BUNDLE_REGISTRY_SIGNING_KEY"
TRUST_ENV = "BUNDLE_REGISTRY_TRUST"


def require_trust(why: str) -> None:
    """Make sure python-tuf and securesystemslib (with ed25519) are installed, else
    :class:`~runtime.extras.MissingExtra` saying ``why`` they are needed and how to install
    them."""
    require("trust", why)


def signing_from(
    explicit: str | None, root: Path | None = None, expiry: Expiry | None = None
) -> Signing | None:
    """The signing a command line asks for: ``--signing-key``, else ``$BUNDLE_REGISTRY_SIGNING_KEY``
    (with ``--root`` to install); None when no key is given (python-tuf is then never loaded)."""
    if not (explicit or os.environ.get(SIGNING_ENV)) and root is None:
        return None
    require_trust("signing (--signing-key, $BUNDLE_REGISTRY_SIGNING_KEY)")
    from runtime.trust.keys import signing_from as load

    return load(explicit, root, expiry)


def trust_from(explicit: Path | None) -> TrustRoot | None:
    """The root a client verifies with: ``--trust``, else ``$BUNDLE_REGISTRY_TRUST``, else None
    (python-tuf is then never loaded)."""
    chosen = explicit or os.environ.get(TRUST_ENV)
    if not chosen:
        return None
    require_trust("verifying with a pinned root (--trust, $BUNDLE_REGISTRY_TRUST)")
    from runtime.trust.keys import load_root

    return load_root(Path(chosen))
