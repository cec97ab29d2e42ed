"""Sixteen processes promoting into a signed registry (a directory, moto's S3): every promotion
lands once, the alias map of the signed index ends at the pointer, and a TUF client agrees."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from support.sources import QUIET, bundles, make_source, publish
from support.trust import Keys, make_keys

from runtime import aliases as al
from runtime.client.cache import Cache
from runtime.client.registry import Registry
from runtime.registry.head import head_index, read_head
from runtime.storage.local import LocalStore
from runtime.storage.location import open_store
from runtime.storage.store import Store
from runtime.trust.client import check_signed
from runtime.trust.keys import load_root

WORKER = """
import json, sys
from runtime.aliases import AliasConflict, promote_detailed
from runtime.storage.location import open_store
from runtime.trust import signing_from

location, endpoint, key, tag, count = sys.argv[1:6]
store = open_store(location, endpoint_url=endpoint or None)
signing = signing_from(key)
versions = ["1.0", "1.1", "1.2"]
print("ready", flush=True)
sys.stdin.readline()
for i in range(int(count)):
    reason = f"{tag}-{i}"
    try:
        done = promote_detailed(store, "tiny", "production", versions[i % 3], tag, reason,
                                signing=signing)
        print(json.dumps({"reason": reason, "seq": done.record.seq, "warnings": done.warnings}))
    except AliasConflict as exc:
        print(json.dumps({"reason": reason, "conflict": str(exc)}))
"""


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("trust") / "keys")


def _race(location: str, endpoint: str, keys: Keys, count: int) -> list[dict[str, object]]:
    argv = [sys.executable, "-c", WORKER, location, endpoint, str(keys.online_file)]
    procs = [
        subprocess.Popen(
            [*argv, f"p{n}", str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for n in range(16)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0
        reports += [json.loads(line) for line in out.splitlines()]
    return reports


def _check(store: Store, keys: Keys, reports: list[dict[str, object]], tmp_path: Path) -> None:
    succeeded = {r["reason"]: r["seq"] for r in reports if "seq" in r}
    assert not [r for r in reports if r.get("warnings")]
    records = al.history(store, "tiny", "production")
    assert {r.reason: r.seq for r in records} == succeeded
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert len(records) >= len(reports) * 0.9
    pointer = al.resolve_alias(store, "tiny", "production", repair=False)
    assert pointer.seq == records[-1].seq
    signed = head_index(store, read_head(store))  # the index the metadata signs
    assert signed.models["tiny"].aliases == {"production": pointer.version}
    assert check_signed(store, load_root(keys.root_file)).index_current
    client = Registry(store.location, cache=Cache(tmp_path / "c"), store=store,
                      trust=keys.root_file)  # fmt: skip
    assert client.resolve("tiny@production", "universal").version == pointer.version


def _signed_demo(store: Store, keys: Keys, tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", bundles("tiny", range(3)))
    publish(src, store, replace(QUIET, signing=keys.signing))


@pytest.mark.slow
def test_sixteen_processes_promote_into_a_signed_directory(keys: Keys, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "site")
    _signed_demo(store, keys, tmp_path)
    _check(store, keys, _race(store.location, "", keys, 10), tmp_path)


@pytest.mark.slow
def test_sixteen_processes_promote_into_a_signed_bucket(
    keys: Keys, tmp_path: Path, moto_endpoint: str, s3_bucket: str
) -> None:
    location = f"s3://{s3_bucket}/registry"
    store = open_store(location, endpoint_url=moto_endpoint)
    _signed_demo(store, keys, tmp_path)
    _check(store, keys, _race(location, moto_endpoint, keys, 5), tmp_path)  # moto: 200 req/s
