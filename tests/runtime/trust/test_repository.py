"""The writer's side: what a signed commit writes and in which order, versions found taken, the
install of a root, ``index.json`` lagging behind, resign, rotate, and every refusal before a
write."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.sources import QUIET, bundles, make_source, publish
from support.trust import Keys, Recording, Site, keys_of

from registry_build.commit import commit
from registry_build.maintenance import reindex, verify
from runtime.aliases import promote, resolve_alias
from runtime.client.cache import Cache
from runtime.client.registry import Registry
from runtime.registry.head import (
    IndexWriter,
    NotSignedRegistry,
    SigningKeyRequired,
    read_head,
)
from runtime.storage.local import LocalStore
from runtime.storage.store import PutMode, content_headers
from runtime.trust.client import check_signed
from runtime.trust.keys import (
    ROOT_JSON,
    Expiry,
    init_keys,
    load_root,
    load_signing,
    rotate_keys,
)
from runtime.trust.repository import (
    TIMESTAMP_KEY,
    SigningError,
    resign,
    root_key,
    rotate,
    snapshot_key,
    targets_key,
)

SIGNED_REFUSAL = (
    "{} is a signed registry (metadata/ signs its index.json): pass --signing-key "
    "KEYS/online.key or set BUNDLE_REGISTRY_SIGNING_KEY to change it; nothing was written"
)


def _local(tmp_path: Path) -> Site:
    return Site(LocalStore(tmp_path / "site"), str(tmp_path / "site"), sources=tmp_path / "src")


def test_a_signed_publish_writes_content_then_metadata_then_the_timestamp(
    keys: Keys, tmp_path: Path
) -> None:
    site = _local(tmp_path)
    report = site.publish(keys, 0)
    index = site.store.get("index.json")[0]
    target = f"targets/{hashlib.sha256(index).hexdigest()}.index.json"
    assert report.written[-6:] == [
        root_key(1), target, targets_key(1), snapshot_key(1), TIMESTAMP_KEY, "index.json",
    ]  # fmt: skip
    assert site.store.get(target)[0] == index
    assert json.loads(index)["signed"] is True
    assert site.store.get(root_key(1))[0] == keys.root_file.read_bytes()
    stamp = json.loads(site.store.get(TIMESTAMP_KEY)[0])["signed"]
    assert (stamp["version"], stamp["meta"]["snapshot.json"]["version"]) == (1, 1)
    in_a_day = datetime.now(UTC) + timedelta(days=1)
    expires = datetime.strptime(stamp["expires"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(expires - in_a_day) < timedelta(minutes=1)
    report = check_signed(site.store, load_root(keys.root_file))
    assert (report.version, report.root_version, report.index_current) == (1, 1, True)


def test_without_the_key_a_signed_registry_is_refused_before_anything_is_written(
    writable: Site, keys: Keys, tmp_path: Path
) -> None:
    writable.publish(keys, 0)
    before = keys_of(writable.store)
    src = make_source(tmp_path / "more", bundles("tiny", range(1, 2)))
    with pytest.raises(SigningKeyRequired) as caught:
        publish(src, writable.store)
    assert str(caught.value) == SIGNED_REFUSAL.format(writable.store.location)
    with pytest.raises(SigningKeyRequired):
        reindex(writable.store, options=QUIET)
    with pytest.raises(SigningKeyRequired):
        promote(writable.store, "tiny", "prod", "1.0", "ci", "")
    assert keys_of(writable.store) == before


def test_a_promotion_with_the_key_is_signed_and_a_client_sees_it(
    writable: Site, keys: Keys, tmp_path: Path
) -> None:
    writable.publish(keys, 0, 1)
    promote(writable.store, "tiny", "prod", "1.0", "ci", "", signing=keys.signing)
    client = writable.client(tmp_path / "cache", keys)
    assert client.resolve("tiny@prod", "universal").version == "1.0"
    assert resolve_alias(writable.store, "tiny", "prod").version == "1.0"  # repairs nothing


def test_a_key_for_an_unsigned_registry_needs_a_root_to_install(keys: Keys, tmp_path: Path) -> None:
    site = _local(tmp_path)
    site.publish(None, 0)
    before = keys_of(site.store)
    key_only = load_signing(str(keys.online_file))
    src = make_source(tmp_path / "more", bundles("tiny", range(1, 2)))
    with pytest.raises(NotSignedRegistry) as caught:
        publish(src, site.store, replace(QUIET, signing=key_only))
    assert str(caught.value) == (
        f"{site.store.location} has no signed metadata, so there is nothing to sign with the key "
        f"{keys.online_file}: pass --root KEYS/root.json once to install the trust root, or drop "
        "--signing-key / BUNDLE_REGISTRY_SIGNING_KEY"
    )
    assert keys_of(site.store) == before


def test_a_root_is_installed_once_on_a_registry_published_unsigned(
    keys: Keys, tmp_path: Path
) -> None:
    site = _local(tmp_path)
    site.publish(None, 0)
    written = commit(site.store, [], options=replace(QUIET, signing=keys.signing))
    assert written == [  # nothing new to publish, but from now on it is signed
        root_key(1), _target(site), targets_key(1), snapshot_key(1), TIMESTAMP_KEY, "index.json",
    ]  # fmt: skip
    assert commit(site.store, [], options=replace(QUIET, signing=keys.signing)) == []
    assert check_signed(site.store, load_root(keys.root_file)).version == 1


def _target(site: Site) -> str:
    return f"targets/{hashlib.sha256(site.store.get('index.json')[0]).hexdigest()}.index.json"


def test_a_root_to_install_must_be_the_one_a_signed_registry_has(
    keys: Keys, tmp_path: Path
) -> None:
    site = _local(tmp_path)
    site.publish(keys, 0)
    init_keys(tmp_path / "other")
    wrong = load_signing(str(keys.online_file), tmp_path / "other" / ROOT_JSON)
    before = keys_of(site.store)
    with pytest.raises(SigningError) as caught:
        site.publish(None, 1, options=replace(QUIET, signing=wrong))
    assert str(caught.value) == (
        f"{site.store.location}/{root_key(1)} holds another root than "
        f"{tmp_path}/other/{ROOT_JSON}: the registry is signed with other keys; use that "
        "registry's keys, or drop --root"
    )
    assert keys_of(site.store) == before
    site.publish(keys, 1)  # the root it has: accepted, and nothing more is installed


def test_a_root_is_not_installed_over_another(keys: Keys, tmp_path: Path) -> None:
    site = _local(tmp_path)
    site.publish(keys, 0)
    unmarked = json.loads(site.store.get("index.json")[0])
    del unmarked["signed"]
    site.store.put("index.json", json.dumps(unmarked).encode())  # an older tool rewrote it
    init_keys(tmp_path / "other")
    other = load_signing(str(tmp_path / "other" / "online.key"), tmp_path / "other" / ROOT_JSON)
    with pytest.raises(SigningError) as caught:
        commit(site.store, [], options=replace(QUIET, signing=other))
    assert str(caught.value) == (
        f"{site.store.location}/{root_key(1)} holds another root than "
        f"{tmp_path}/other/{ROOT_JSON}: the registry is signed with other keys; use that "
        "registry's keys, or drop --root"
    )


def test_a_version_another_writer_took_is_skipped(keys: Keys, tmp_path: Path) -> None:
    site = _local(tmp_path)
    site.publish(keys, 0)
    head = read_head(site.store)
    assert head.data is not None
    first, second = IndexWriter(site.store, keys.signing), IndexWriter(site.store, keys.signing)
    assert second.write(head, head.data) is not None  # version 2
    assert first.write(head, head.data) is None  # lost: version 2 is taken, the head moved
    assert first.write(read_head(site.store), head.data) is not None  # version 3
    site.store.put(targets_key(4), b"left by a writer that died", PutMode.CREATE)
    assert first.write(read_head(site.store), head.data) is None  # 4 is taken ...
    assert first.write(read_head(site.store), head.data) is not None  # ... so it signs 5
    stamp = json.loads(site.store.get(TIMESTAMP_KEY)[0])["signed"]
    assert stamp["version"] == 5
    assert check_signed(site.store, load_root(keys.root_file)).version == 5


def test_an_index_json_that_lags_behind_is_read_from_its_signed_copy_and_caught_up(
    keys: Keys, tmp_path: Path
) -> None:
    site = _local(tmp_path)
    site.publish(keys, 0)
    lagging = site.store.get("index.json")[0]
    site.publish(keys, 1)
    site.store.put("index.json", lagging)  # as if the writer died before bringing it in line
    reader = Recording(site.store)
    head = read_head(reader)
    assert head.signed is not None and not head.signed.plain_current
    assert [k for k, _ in reader.take()][-1].startswith("targets/")  # the signed copy
    assert check_signed(site.store, load_root(keys.root_file)).index_current is False
    assert [str(p) for p in verify(site.store)[1]] == [
        "signed metadata: index.json is not the index the metadata signs (the next commit "
        "brings it in line)"
    ]
    site.publish(keys, 2)
    assert check_signed(site.store, load_root(keys.root_file)).index_current is True


def test_resign_signs_the_same_index_again_with_fresh_expiry(keys: Keys, tmp_path: Path) -> None:
    site = _local(tmp_path)
    site.publish(keys, 0)
    index = site.store.get("index.json")[0]
    after = resign(
        site.store, load_signing(str(keys.online_file), expiry=Expiry(timedelta(days=2)))
    )
    assert after.version == 2 and site.store.get("index.json")[0] == index
    assert after.expires is not None
    assert abs(after.expires - (datetime.now(UTC) + timedelta(days=2))) < timedelta(minutes=1)
    unsigned = _local(tmp_path / "other")
    unsigned.publish(None, 0)
    with pytest.raises(SigningError) as caught:
        resign(unsigned.store, keys.signing)
    assert str(caught.value) == (
        f"{unsigned.store.location} is not a signed registry (its index.json is not signed): "
        "install a root with `registry-build build --root` or `publish --root` first"
    )


def test_a_rotation_cut_short_is_finished_by_running_it_again(keys: Keys, tmp_path: Path) -> None:
    own = keys.copy(tmp_path / "keys")
    site = _local(tmp_path)
    site.publish(own, 0)
    client = site.client(tmp_path / "cache", own)
    client.resolve("tiny", "universal")
    rotate_keys(own.directory, load_root(own.root_file), True, Expiry())  # then the run died
    assert (own.directory / "retired" / "1.root.key").is_file()
    assert site.store.get(root_key(1))[0] != own.root_file.read_bytes()
    done = rotate(site.store, own.directory)
    assert (done.before, done.after) == (1, 2)
    assert site.store.get(root_key(2))[0] == own.root_file.read_bytes()
    site.publish(own, 1)
    assert client.resolve("tiny", "universal").version == "1.1"


def test_a_root_of_another_registry_is_not_installed_by_rotate(keys: Keys, tmp_path: Path) -> None:
    site = _local(tmp_path)
    site.publish(keys, 0)
    other = keys.copy(tmp_path / "other")
    (other.directory / ROOT_JSON).unlink()
    for name in ("root.key", "online.key"):
        (other.directory / name).unlink()
    init_keys(other.directory)
    with pytest.raises(SigningError) as caught:
        rotate(site.store, other.directory)
    assert str(caught.value) == (
        f"{other.root_file} (root version 1) is not the registry's newest root, "
        f"{site.store.location}/{root_key(1)}: rotate with the keys directory that root came from"
    )


def test_a_client_of_a_signed_registry_needs_no_signature_to_read_it_unsigned(
    keys: Keys, tmp_path: Path
) -> None:
    site = _local(tmp_path)
    site.publish(keys, 0)
    assert Registry(site.location, cache=Cache(tmp_path / "c")).resolve("tiny").version == "1.0"


@pytest.mark.parametrize(
    ("key", "cache"),
    [
        ("metadata/timestamp.json", "no-cache"),
        ("metadata/7.snapshot.json", "public, max-age=31536000, immutable"),
        ("metadata/2.root.json", "public, max-age=31536000, immutable"),
        (f"targets/{'a' * 64}.index.json", "public, max-age=31536000, immutable"),
    ],
)
def test_metadata_is_served_with_the_cache_control_of_its_class(key: str, cache: str) -> None:
    assert content_headers(key) == ("application/json", cache)
