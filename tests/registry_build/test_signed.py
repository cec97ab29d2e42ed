"""Signed registries from the build side, as a user runs them (``keys init``, ``build
--signing-key --root``, ``publish``, ``reindex``, ``resign``, ``keys rotate``, ``verify``), and
eight publishers racing into a signed registry, verified by a TUF client after."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from support.sources import QUIET, assert_consistent, bundles, fork, make_source, publish
from support.trust import Keys, make_keys

from registry_build.cli import main
from registry_build.commit import Options
from registry_build.maintenance import gc
from runtime.cli import main as runtime_main
from runtime.client.cache import Cache
from runtime.client.registry import Registry
from runtime.storage.local import LocalStore
from runtime.storage.s3 import S3Store
from runtime.storage.store import Store
from runtime.trust.client import check_signed
from runtime.trust.keys import load_root
from runtime.trust.repository import TIMESTAMP_KEY

EDITED = replace(QUIET, whole_models=0)  # every registry is "large": its documents are edited
TINY = {"model_id": "tiny", "version": "1.0", "description": "tiny",
        "targets": [{"platform": "universal", "model_file": "tiny.gguf", "model_type": "gguf",
                     "source_path": "tiny.gguf"}]}  # fmt: skip


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("trust") / "keys")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for name in ("BUNDLE_REGISTRY_SIGNING_KEY", "BUNDLE_REGISTRY_TRUST", "BUNDLE_REGISTRY"):
        monkeypatch.delenv(name, raising=False)


def _config(root: Path, version: str = "1.0") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "tiny.gguf").write_bytes(b"GGUF" + version.encode() * 100)
    path = root / "bundles.json"
    path.write_text(json.dumps({"bundles": {"tiny": {**TINY, "version": version}}}))
    return path


def test_keys_init_build_signed_then_a_device_fetches_with_trust(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys, site = tmp_path / "keys", tmp_path / "site"
    assert main(["keys", "init", str(keys)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[1:] == [
        f"wrote {keys}/root.key: keep it offline; it signs new roots only (`registry-build keys "
        "rotate`)",
        f"wrote {keys}/online.key: CI signs with it (the secret behind "
        "$BUNDLE_REGISTRY_SIGNING_KEY)",
    ]
    assert err[0].startswith(f"wrote {keys}/root.json: root version 1, expires ")
    assert main(["keys", "init", str(keys)]) == 1
    assert capsys.readouterr().err.startswith(f"Error: {keys}/root.key, {keys}/online.key, ")
    build = ["build", "--config", str(_config(tmp_path)), "--out", str(site), "--quiet"]
    signing = ["--signing-key", str(keys / "online.key"), "--root", str(keys / "root.json")]
    assert main([*build, *signing]) == 0
    assert (site / "metadata" / "1.root.json").read_bytes() == (keys / "root.json").read_bytes()
    fetch = ["fetch", "tiny@1.0", "--registry", str(site), "--trust", str(keys / "root.json")]
    assert runtime_main(fetch) == 0
    assert capsys.readouterr().out.strip().endswith(".xyb")
    again = ["build", "--config", str(_config(tmp_path, "1.1")), "--out", str(site), "--quiet"]
    assert main(again) == 1  # later builds need the key
    assert capsys.readouterr().err == (
        f"Error: {site} is a signed registry (metadata/ signs its index.json): pass --signing-key "
        "KEYS/online.key or set BUNDLE_REGISTRY_SIGNING_KEY to change it; nothing was written\n"
    )
    assert main([*again, "--signing-key", str(keys / "online.key")]) == 0
    assert runtime_main([*fetch[:1], "tiny@1.1", *fetch[2:]]) == 0


def test_a_build_to_s3_signs_the_bucket_not_its_local_mirror(
    keys: Keys, tmp_path: Path, moto_endpoint: str, s3_bucket: str
) -> None:
    out = f"s3://{s3_bucket}/reg"
    argv = ["build", "--config", str(_config(tmp_path)), "--out", out, "--quiet",
            "--endpoint-url", moto_endpoint, "--signing-key", str(keys.online_file),
            "--root", str(keys.root_file)]  # fmt: skip
    assert main(argv) == 0
    store = S3Store.from_url(out, endpoint_url=moto_endpoint)
    assert check_signed(store, load_root(keys.root_file)).version == 1
    mirrors = list((tmp_path / "xdg" / "bundle-registry" / "build").glob("*/site"))
    assert mirrors and not (mirrors[0] / "metadata").exists()


def test_publish_reindex_resign_and_verify_a_signed_registry(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "site"
    src = make_source(tmp_path / "src", bundles("tiny", range(2)))
    monkeypatch.setenv("BUNDLE_REGISTRY_SIGNING_KEY", str(keys.online_file))
    assert main(["publish", "--quiet", str(src), str(dest), "--root", str(keys.root_file)]) == 0
    assert main(["reindex", str(dest)]) == 0
    assert main(["resign", str(dest), "--timestamp-expiry", "12h"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"resigned {dest}: metadata version 3, timestamp expires ")
    assert main(["verify", str(dest)]) == 0
    assert capsys.readouterr().err == f"verified 2 blobs in {dest}: 0 problems\n"
    monkeypatch.delenv("BUNDLE_REGISTRY_SIGNING_KEY")
    assert main(["resign", str(dest)]) == 2
    assert capsys.readouterr().err == (
        "registry-build resign: error: resign needs the online key: pass --signing-key KEY or set "
        "BUNDLE_REGISTRY_SIGNING_KEY\n"
    )
    expired = ["resign", str(dest), "--signing-key", str(keys.online_file), "--timestamp-expiry",
               "0s"]  # fmt: skip
    assert main(expired) == 0
    capsys.readouterr()
    assert main(["verify", str(dest)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(
        f"signed metadata: metadata/ is refused: {dest}: the registry's timestamp expired at "
    )
    assert err[-1] == f"verified 2 blobs in {dest}: 1 problem"


def test_keys_rotate_then_publish_with_the_new_key(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    own = keys.copy(tmp_path / "keys")
    dest = tmp_path / "site"
    publish(make_source(tmp_path / "a", bundles("tiny", range(1))), LocalStore(dest),
            replace(QUIET, signing=own.signing))  # fmt: skip
    assert main(["keys", "rotate", str(own.directory), str(dest), "--keep-root-key"]) == 0
    assert capsys.readouterr().err == (
        f"rotated {dest}: root version 1 -> 2 (new online key; the old ones are in "
        f"{own.directory}/retired); metadata signed anew as version 2; clients follow by "
        "themselves\n"
    )
    src = make_source(tmp_path / "b", bundles("tiny", range(1, 2)))
    argv = ["publish", "--quiet", str(src), str(dest), "--signing-key", str(own.online_file)]
    assert main(argv) == 0
    client = Registry(str(dest), cache=Cache(tmp_path / "c"), trust=keys.root_file)  # root 1
    assert client.resolve("tiny", "universal").version == "1.1"


def test_promote_from_the_command_line_needs_the_key(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "site"
    publish(make_source(tmp_path / "a", bundles("tiny", range(1))), LocalStore(dest),
            replace(QUIET, signing=keys.signing))  # fmt: skip
    before = sorted(p for p in dest.rglob("*") if p.is_file())
    argv = ["promote", "tiny", "prod", "1.0", "--registry", str(dest), "--actor", "ci"]
    assert runtime_main(argv) == 1
    assert capsys.readouterr().err == (
        f"Error: {dest} is a signed registry (metadata/ signs its index.json): pass --signing-key "
        "KEYS/online.key or set BUNDLE_REGISTRY_SIGNING_KEY to change it; nothing was written\n"
    )
    assert sorted(p for p in dest.rglob("*") if p.is_file()) == before
    assert runtime_main([*argv, "--signing-key", str(keys.online_file)]) == 0
    capsys.readouterr()
    verify = ["verify", "tiny@prod", "--registry", str(dest), "--trust", str(keys.root_file)]
    assert runtime_main(verify) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ok\tsigned metadata\tversion 2, root 1 (from the pinned root), ")
    fetch = ["fetch", "tiny@prod", "--registry", str(dest), "--trust", str(keys.root_file)]
    assert runtime_main(fetch) == 0


def test_a_device_refuses_a_tampered_registry_with_one_line(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "site"
    publish(make_source(tmp_path / "a", bundles("tiny", range(1))), LocalStore(dest),
            replace(QUIET, signing=keys.signing))  # fmt: skip
    stamp = json.loads((dest / TIMESTAMP_KEY).read_bytes())
    stamp["signed"]["version"] = 99  # no longer what the online key signed
    (dest / TIMESTAMP_KEY).write_text(json.dumps(stamp))
    argv = ["fetch", "tiny@1.0", "--registry", str(dest), "--trust", str(keys.root_file)]
    assert runtime_main(argv) == 1
    assert capsys.readouterr().err == (
        f"Error: {dest}: metadata/timestamp.json is not signed by the keys the trusted root names "
        "(forged, or signed with a replaced key); nothing was cached: check --trust, or ask the "
        "publisher which root to trust\n"
    )


# -- eight publishers at once ----------------------------------------------------------------


def _dest(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    if kind == "directory":
        return LocalStore(tmp_path / "published")
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Store.from_url(f"s3://{bucket}/reg", endpoint_url=endpoint)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["s3", "directory"])
@pytest.mark.parametrize("options", [QUIET, EDITED], ids=["whole", "edited"])
def test_eight_processes_publishing_to_a_signed_registry_lose_no_bundle(
    kind: str, options: Options, keys: Keys, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = _dest(kind, tmp_path, request)
    signed = replace(options, signing=keys.signing)
    publish(make_source(tmp_path / "first", bundles("first", range(1))), store, signed)
    expected = {("first", "1.0", "universal")}
    for round_ in range(2):
        sources = []
        for n in range(8):
            made = bundles(f"model{n}", range(round_ * 2, round_ * 2 + 2), size=500)
            sources.append(make_source(tmp_path / f"src{round_}-{n}", made))
            expected |= {(m, v, t) for m, v, t, _ in made}
        pids = [fork(lambda src=src: publish(src, store, signed)) for src in sources]
        assert [os.waitpid(pid, 0)[1] for pid in pids] == [0] * 8
    catalog = assert_consistent(store)
    assert {d.key for d in catalog.bundles} == expected
    report = check_signed(store, load_root(keys.root_file))  # as a device verifies it
    assert report.index_current and report.version >= 17  # one commit per publish
    client = Registry(
        store.location, cache=Cache(tmp_path / "c"), store=store, trust=keys.root_file
    )
    for model in {m for m, _, _ in expected}:
        newest = max(v for m, v, _ in expected if m == model)
        assert client.resolve(model, "universal").version == newest


def test_gc_removes_metadata_and_index_copies_older_than_the_signed_version(
    keys: Keys, tmp_path: Path
) -> None:
    dest = LocalStore(tmp_path / "site")
    signed = replace(QUIET, signing=keys.signing)
    for v in range(3):
        publish(make_source(tmp_path / f"s{v}", bundles("tiny", range(v, v + 1))), dest, signed)
    dest.put("metadata/9.targets.json", b"a commit in progress")
    doomed = {info.key for info in gc(dest, 3600, dry_run=False, now=time.time() + 7200)}
    assert {k for k in doomed if not k.startswith("shards/")} == {
        "metadata/1.targets.json", "metadata/1.snapshot.json", "metadata/2.targets.json",
        "metadata/2.snapshot.json", *(k for k in doomed if k.startswith("targets/")),
    }  # fmt: skip
    assert len([k for k in doomed if k.startswith("targets/")]) == 2
    left = sorted(info.key for info in dest.list("metadata/"))
    assert left == [
        "metadata/1.root.json", "metadata/3.snapshot.json", "metadata/3.targets.json",
        "metadata/9.targets.json", "metadata/timestamp.json",
    ]  # fmt: skip
    assert check_signed(dest, load_root(keys.root_file)).index_current
    client = Registry(str(dest.root), cache=Cache(tmp_path / "c"), trust=keys.root_file)
    assert client.resolve("tiny", "universal").version == "1.2"
