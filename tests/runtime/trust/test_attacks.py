"""Every attack of TUF's threat list that the issue names, against a directory, moto's S3 server
and an HTTP server: each is refused with its message, and nothing of the bad response is cached.
"""

from __future__ import annotations

import hashlib
import json
import time
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from support.sources import QUIET, bundles, make_source, publish
from support.trust import Keys, Site, files_of, keys_of

from registry_build.commit import Options
from runtime.client.registry import Registry
from runtime.errors import IntegrityError
from runtime.registry.head import read_head
from runtime.registry.wire import shard_key
from runtime.storage.local import LocalStore
from runtime.storage.store import PutMode, Store
from runtime.trust.client import (
    EndlessData,
    Frozen,
    NotSigned,
    Rollback,
    Tampered,
    UntrustedSignature,
)
from runtime.trust.keys import Expiry, load_key_file, load_signing
from runtime.trust.repository import (
    TIMESTAMP_KEY,
    SigningError,
    resign,
    rotate,
    sign_version,
    snapshot_key,
    targets_key,
)

NOTHING = "nothing was cached"
TAMPERED = (
    "{}: index.json does not match its signed hash (tampered or half-written); nothing was "
    "cached: retry, and if it persists ask the publisher to check the registry with "
    "`registry-build verify`"
)
UNTRUSTED = (
    "{}: metadata/timestamp.json is not signed by the keys the trusted root names (forged, or "
    "signed with a replaced key); nothing was cached: check --trust, or ask the publisher which "
    "root to trust"
)


def _trusted(client: Registry) -> dict[str, bytes]:
    """What a client keeps of a registry (its index and python-tuf's state)."""
    return files_of(client.mirror.folder)


def _index_target(store: Store) -> str:
    return next(k for k in keys_of(store, "targets/") if k.endswith(".index.json"))


def _expires(store: Store, key: str) -> str:
    return str(json.loads(store.get(key)[0])["signed"]["expires"])


def test_arbitrary_software_unsigned_blob_and_index_are_refused(
    site: Site, keys: Keys, tmp_path: Path
) -> None:
    site.publish(keys, 0)
    # The attacker ships its own bundle as tiny 1.0: blob, shard and index, all consistent,
    # and unsigned (it has no key): index.json and the signed copy's name both hold its index.
    evil = LocalStore(tmp_path / "evil")
    publish(make_source(tmp_path / "evil-src", bundles("tiny", range(1))), evil)
    for key in [*keys_of(evil, "blobs/"), *keys_of(evil, "shards/"), "index.json"]:
        site.store.put(key, evil.get(key)[0])
    site.store.put(_index_target(site.store), evil.get("index.json")[0])
    client = site.client(tmp_path / "cache", keys)
    with pytest.raises(Tampered) as caught:
        client.fetch("tiny@1.0", "universal")
    assert str(caught.value) == TAMPERED.format(client.location)
    assert not (client.mirror.index_path.exists() or client.cache.blobs.exists())


def test_rollback_to_older_metadata_is_refused(site: Site, keys: Keys, tmp_path: Path) -> None:
    site.publish(keys, 0)
    old = site.store.get(TIMESTAMP_KEY)[0]  # version 1
    site.publish(keys, 1)
    site.publish(keys, 2)
    client = site.client(tmp_path / "cache", keys)
    assert client.resolve("tiny", "universal").version == "1.2"  # version 3 seen
    kept = _trusted(client)
    site.store.put(TIMESTAMP_KEY, old)
    with pytest.raises(Rollback) as caught:
        client.resolve("tiny", "universal")
    assert str(caught.value) == (
        f"{client.location}: the registry offers version 1 of its metadata, older than 3 already "
        f"seen (rollback); {NOTHING}: a stale mirror or an attacker serves it; use the registry "
        "itself, or ask the publisher"
    )
    assert _trusted(client) == kept


def test_an_expired_timestamp_is_refused(site: Site, keys: Keys, tmp_path: Path) -> None:
    site.publish(keys, 0)
    client = site.client(tmp_path / "cache", keys)
    client.resolve("tiny", "universal")
    kept = _trusted(client)
    expired = Expiry(timestamp=timedelta(hours=-1))
    resign(site.store, load_signing(str(keys.online_file), expiry=expired))
    with pytest.raises(Frozen) as caught:
        client.resolve("tiny", "universal")
    assert str(caught.value) == (
        f"{client.location}: the registry's timestamp expired at "
        f"{_expires(site.store, TIMESTAMP_KEY)} (stale or frozen); {NOTHING}: the publisher must "
        "run `registry-build resign` (a scheduled job does), or a mirror serves old metadata"
    )
    assert _trusted(client) == kept


def test_a_registry_frozen_on_one_timestamp_is_refused_once_it_expires(
    keys: Keys, tmp_path: Path
) -> None:
    """The server keeps answering "not modified" (nothing new is signed): the copy the client
    trusts expires, and from then on it is refused, though nothing new was fetched."""
    site = Site(LocalStore(tmp_path / "site"), str(tmp_path / "site"), sources=tmp_path / "s")
    soon = Expiry(timestamp=timedelta(seconds=2))
    site.publish(None, 0, options=_signing(keys, soon))
    client = site.client(tmp_path / "cache", keys)
    assert client.resolve("tiny", "universal").version == "1.0"
    time.sleep(2.2)
    with pytest.raises(Frozen) as caught:
        client.resolve("tiny", "universal")
    assert str(caught.value).startswith(
        f"{client.location}: the registry's timestamp expired at "
        f"{_expires(site.store, TIMESTAMP_KEY)} (stale or frozen); {NOTHING}"
    )


def _signing(keys: Keys, expiry: Expiry | None = None, key: Path | None = None) -> Options:
    """Publish options signing with the online key of ``keys`` (or ``key``), installing its
    root."""
    online = str(key or keys.online_file)
    return replace(QUIET, signing=load_signing(online, keys.root_file, expiry))


def test_mix_and_match_a_shard_of_another_snapshot_is_refused(
    site: Site, keys: Keys, tmp_path: Path
) -> None:
    site.publish(keys, 0)
    site.publish(keys, 1)
    entry = _entry(site.store)
    older = next(k for k in keys_of(site.store, "shards/") if not k.endswith(f"{entry}.json"))
    site.store.put(shard_key("tiny", entry), site.store.get(older)[0])
    client = site.client(tmp_path / "cache", keys)
    with pytest.raises(IntegrityError) as caught:
        client.resolve("tiny", "universal")
    sizes = (len(site.store.get(older)[0]), _entry(site.store, 1))
    assert str(caught.value) == (
        f"{client.location}/{shard_key('tiny', entry)} has {sizes[0]} bytes, index.json names "
        f"{sizes[1]}; the shard is corrupt or index.json is stale: retry, or ask the publisher "
        "to rebuild the registry's index.json"
    )
    assert not client.cache.root.joinpath("shards").exists()  # nothing cached


def test_mix_and_match_an_index_of_another_snapshot_is_refused(
    site: Site, keys: Keys, tmp_path: Path
) -> None:
    site.publish(keys, 0)
    first = read_head(site.store).data
    site.publish(keys, 1)
    assert first is not None
    site.store.put(_newest_index_target(site.store), first)  # the index of version 1, as 2's
    client = site.client(tmp_path / "cache", keys)
    with pytest.raises(Tampered) as caught:
        client.resolve("tiny", "universal")
    assert str(caught.value) == TAMPERED.format(client.location)
    assert not client.mirror.index_path.exists()


def _entry(store: Store, field: int = 0) -> str:
    """The shard digest (0) or size (1) that the signed index names for ``tiny``."""
    head = read_head(store)
    assert head.data is not None
    return str(json.loads(head.data)["models"]["tiny"]["shard"][field])


def _newest_index_target(store: Store) -> str:
    head = read_head(store)
    assert head.data is not None
    return f"targets/{hashlib.sha256(head.data).hexdigest()}.index.json"


def test_endless_data_is_refused_at_the_length_limit(
    site: Site, keys: Keys, tmp_path: Path
) -> None:
    site.publish(keys, 0)
    length = len(site.store.get(snapshot_key(1))[0])
    site.store.put(snapshot_key(1), b" " * (100 << 20))  # 100 MB where a few hundred bytes were
    client = site.client(tmp_path / "cache", keys)
    with pytest.raises(EndlessData) as caught:
        client.resolve("tiny", "universal")
    assert str(caught.value) == (
        f"{client.location}: {snapshot_key(1)} is longer than the {length} bytes allowed "
        f"(endless data); refused at the limit, {NOTHING}: the registry is corrupt or hostile"
    )
    assert not client.mirror.index_path.exists()


def test_an_endless_timestamp_is_refused_at_python_tufs_limit(keys: Keys, tmp_path: Path) -> None:
    site = Site(LocalStore(tmp_path / "site"), str(tmp_path / "site"), sources=tmp_path / "s")
    site.publish(keys, 0)
    client = site.client(tmp_path / "cache", keys)
    client.resolve("tiny", "universal")
    kept = _trusted(client)
    site.store.put(TIMESTAMP_KEY, b" " * (100 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(EndlessData) as caught:
            client.resolve("tiny", "universal")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(caught.value).startswith(
        f"{client.location}: {TIMESTAMP_KEY} is longer than the 16384 bytes allowed (endless data)"
    )
    assert peak < 4 << 20  # refused before it was read: the 100 MB were never in memory
    assert _trusted(client) == kept


def test_metadata_signed_by_a_key_the_root_does_not_name_is_refused(
    site: Site, keys: Keys, tmp_path: Path
) -> None:
    site.publish(keys, 0)
    client = site.client(tmp_path / "cache", keys)
    client.resolve("tiny", "universal")
    kept = _trusted(client)
    _forge(site.store, CryptoSigner.generate_ed25519())
    with pytest.raises(UntrustedSignature) as caught:
        client.resolve("tiny", "universal")
    assert str(caught.value) == UNTRUSTED.format(client.location)
    assert _trusted(client) == kept


def _forge(store: Store, signer: CryptoSigner) -> None:
    """Sign the next version with ``signer`` and put it in place, as an attacker would."""
    head = read_head(store)
    assert head.data is not None and head.signed is not None
    version = head.signed.version + 1
    files = sign_version(head.data, version, signer, Expiry(), datetime.now(UTC))
    store.put(targets_key(version), files.targets, PutMode.CREATE)
    store.put(snapshot_key(version), files.snapshot, PutMode.CREATE)
    store.put(TIMESTAMP_KEY, files.timestamp)


def test_after_a_key_rotation_clients_follow_and_the_old_online_key_no_longer_works(
    site: Site, keys: Keys, tmp_path: Path
) -> None:
    own = keys.copy(tmp_path / "keys")
    site.publish(own, 0)
    client = site.client(tmp_path / "cache", own)  # pins root version 1, for good
    assert client.resolve("tiny", "universal").version == "1.0"
    old_online = load_key_file(own.online_file)
    done = rotate(site.store, own.directory)
    assert (done.before, done.after, done.new_root_key) == (1, 2, True)
    site.publish(own, 1)  # with the new online key
    assert client.resolve("tiny", "universal").version == "1.1"  # followed root 2 by itself
    assert (client.mirror.folder / "tuf" / "root_history" / "2.root.json").is_file()
    retired = own.directory / "retired" / "1.online.key"
    with pytest.raises(SigningError) as caught:
        site.publish(None, 2, options=_signing(own, key=retired))
    assert str(caught.value) == (
        f"the signing key {retired} (key {old_online.public_key.keyid[:16]}) is not the online key "
        f"of {site.store.location} ({load_key_file(own.online_file).public_key.keyid[:16]}): "
        "sign with the online.key of its last `registry-build keys init` or `keys rotate`; "
        "nothing was written"
    )
    kept = _trusted(client)
    _forge(site.store, old_online)
    with pytest.raises(UntrustedSignature) as refused:
        client.resolve("tiny", "universal")
    assert str(refused.value) == UNTRUSTED.format(client.location)
    assert _trusted(client) == kept


def test_a_registry_without_signed_metadata_is_refused_with_a_root(
    site: Site, keys: Keys, tmp_path: Path
) -> None:
    site.publish(None, 0)
    client = site.client(tmp_path / "cache", keys)
    with pytest.raises(NotSigned) as caught:
        client.resolve("tiny", "universal")
    assert str(caught.value) == (
        f"{client.location} has no signed metadata (metadata/timestamp.json), but a trusted root "
        "was given: the registry is unsigned, or its signatures were removed; sign it "
        "(`registry-build build --root`), or drop --trust / BUNDLE_REGISTRY_TRUST"
    )
    assert not client.mirror.index_path.exists()
