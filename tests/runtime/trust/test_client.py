"""A client with a pinned root: what it asks the registry for (cold, warm, changed), what it keeps,
and what it answers when the registry cannot be reached."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from support.sources import QUIET
from support.trust import Keys, Recording, Site, files_of
from urllib3.util import Retry

from runtime.client.registry import OfflineMiss, Registry
from runtime.storage.http import HttpStore
from runtime.storage.location import open_store
from runtime.trust.client import Frozen
from runtime.trust.keys import Expiry, RootFileError, load_signing
from runtime.trust.repository import TIMESTAMP_KEY, snapshot_key, targets_key


def _reader(site: Site) -> Recording:
    return Recording(site.reader or open_store(site.location))


def _age(site: Site, when: float = 1e9) -> None:
    """Files last modified at ``when`` (long ago): ``http.server`` then sends a Last-Modified
    that validates (a later ``when`` for files that changed since)."""
    root = Path(site.store.location)
    if site.location.startswith("http"):
        for path in root.rglob("*"):
            os.utime(path, (when, when))


def test_cold_then_warm_resolve_costs_what_it_should(
    site: Site, keys: Keys, tmp_path: Path
) -> None:
    site.publish(keys, 0, 1)
    _age(site)
    reader = _reader(site)
    client = site.client(tmp_path / "cache", keys, reader)
    assert client.resolve("tiny@1.1", "universal").version == "1.1"
    index = next(k for k, _ in reader.reads if k.startswith("targets/"))
    shard = next(k for k, _ in reader.reads if k.startswith("shards/"))
    assert reader.take() == [
        ("metadata/2.root.json", 404),
        (TIMESTAMP_KEY, 200),
        (snapshot_key(1), 200),
        (targets_key(1), 200),
        (index, 200),
        (shard, 200),
    ]
    again = site.client(tmp_path / "cache", keys, reader)
    assert again.resolve("tiny", "universal").version == "1.1"
    assert reader.take() == [(TIMESTAMP_KEY, 304)]  # one small request: nothing changed


def test_a_change_is_seen_and_the_root_probed_again(site: Site, keys: Keys, tmp_path: Path) -> None:
    site.publish(keys, 0)
    _age(site)
    reader = _reader(site)
    site.client(tmp_path / "cache", keys, reader).resolve("tiny", "universal")
    site.publish(keys, 1)
    _age(site, 2e9)
    reader.take()
    client = site.client(tmp_path / "cache", keys, reader)
    assert client.resolve("tiny", "universal").version == "1.1"
    keys_read = [k for k, _ in reader.take()]
    assert keys_read[:4] == [TIMESTAMP_KEY, "metadata/2.root.json", snapshot_key(2), targets_key(2)]


def test_the_client_keeps_python_tufs_state_beside_the_index(keys: Keys, tmp_path: Path) -> None:
    site = Site(open_store(str(tmp_path / "site")), str(tmp_path / "site"), sources=tmp_path / "s")
    site.publish(keys, 0)
    client = site.client(tmp_path / "cache", keys)
    client.resolve("tiny", "universal")
    kept = set(files_of(client.mirror.folder))
    assert {"index.json", "location", "tuf/timestamp.json", "tuf/snapshot.json"} <= kept
    assert {"tuf/targets.json", "tuf/timestamp.etag", "tuf/root.absent"} <= kept
    assert "tuf/root_history/1.root.json" in kept
    unsigned = Registry(site.location, cache=client.cache)
    assert unsigned.mirror.folder != client.mirror.folder  # a verified copy is kept apart


def test_an_unreachable_registry_answers_from_the_cache_until_the_timestamp_expires(
    keys: Keys, tmp_path: Path
) -> None:
    site = Site(open_store(str(tmp_path / "site")), str(tmp_path / "site"), sources=tmp_path / "s")
    site.publish(None, 0, options=replace(QUIET, signing=keys.signing))
    client = site.client(tmp_path / "cache", keys)
    client.resolve("tiny", "universal")
    gone = HttpStore("http://127.0.0.1:9", retries=Retry(0))  # nothing listens on port 9
    notices: list[str] = []
    away = site.client(tmp_path / "cache", keys, gone)
    away.mirror.notice = notices.append
    assert away.resolve("tiny", "universal").version == "1.0"
    assert notices and notices[0].startswith("registry unreachable")
    expired = Expiry(timestamp=timedelta(hours=-1))
    site.publish(None, 1, options=replace(QUIET, signing=load_signing(str(keys.online_file),
                                                                      expiry=expired)))  # fmt: skip
    with pytest.raises(Frozen):
        client.resolve("tiny", "universal")  # refused: the new one is expired, nothing kept
    (client.mirror.folder / "tuf" / "timestamp.json").write_bytes(
        site.store.get(TIMESTAMP_KEY)[0]  # as if the client had trusted it before it expired
    )
    with pytest.raises(Frozen) as caught:
        away.resolve("tiny", "universal")
    assert "the registry's timestamp expired at" in str(caught.value)


def test_offline_with_a_root_answers_from_the_verified_cache(keys: Keys, tmp_path: Path) -> None:
    site = Site(open_store(str(tmp_path / "site")), str(tmp_path / "site"), sources=tmp_path / "s")
    site.publish(keys, 0)
    cold = Registry(site.location, cache=site.client(tmp_path / "c", keys).cache, offline=True,
                    trust=keys.root_file)  # fmt: skip
    with pytest.raises(OfflineMiss):
        cold.resolve("tiny", "universal")
    site.client(tmp_path / "c", keys).resolve("tiny", "universal")
    assert cold.resolve("tiny", "universal").version == "1.0"


def test_a_root_file_that_is_not_a_root_is_named(keys: Keys, tmp_path: Path) -> None:
    bad = tmp_path / "root.json"
    bad.write_bytes(keys.online_file.read_bytes())
    with pytest.raises(RootFileError) as caught:
        Registry(str(tmp_path), trust=bad)
    assert str(caught.value).startswith(f"{bad} is not TUF metadata (")
    assert str(caught.value).endswith(
        "): pass the root.json that `registry-build keys init` (or `keys rotate`) wrote"
    )


def test_a_device_without_trust_never_loads_python_tuf() -> None:
    code = (
        "import sys, runtime.client.registry, runtime.cli.fetch, registry_build.commit, "
        "registry_build.publish, runtime.aliases; print(sorted({m.split('.')[0] for m in "
        "sys.modules} & {'tuf', 'securesystemslib', 'cryptography'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
