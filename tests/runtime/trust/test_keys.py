"""Keys and roots: what ``keys init`` writes, and every key or root a user can get wrong."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.trust import Keys

from runtime.documents import quoted
from runtime.trust import signing_from, trust_from
from runtime.trust.keys import (
    Expiry,
    KeyFileError,
    KeysExist,
    RootFileError,
    init_keys,
    load_root,
    load_signing,
)


def test_keys_init_writes_a_root_and_two_private_keys_only_the_owner_reads(tmp_path: Path) -> None:
    root = init_keys(tmp_path / "keys")
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "keys").iterdir()}
    assert files == {"root.json": 0o644, "root.key": 0o600, "online.key": 0o600}
    assert load_root(tmp_path / "keys" / "root.json").data == root.data
    signed = json.loads(root.data)["signed"]
    assert (signed["version"], signed["consistent_snapshot"]) == (1, True)
    online = load_signing(str(tmp_path / "keys" / "online.key")).signer
    assert online is not None and list(root.online) == [online.public_key.keyid]
    assert {r: len(v["keyids"]) for r, v in signed["roles"].items()} == {
        "root": 1, "targets": 1, "snapshot": 1, "timestamp": 1,
    }  # fmt: skip
    in_a_year = datetime.now(UTC) + timedelta(days=365)
    assert abs(root.metadata.signed.expires - in_a_year) < timedelta(minutes=1)


def test_keys_init_never_overwrites(keys: Keys, tmp_path: Path) -> None:
    own = keys.copy(tmp_path / "keys")
    before = {p.name: p.read_bytes() for p in own.directory.iterdir()}
    with pytest.raises(KeysExist) as caught:
        init_keys(own.directory)
    assert str(caught.value) == (
        f"{own.directory}/root.key, {own.directory}/online.key, {own.directory}/root.json already "
        "exist: keys init never overwrites keys; pick another directory, or use `registry-build "
        "keys rotate`"
    )
    assert {p.name: p.read_bytes() for p in own.directory.iterdir()} == before


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"not json", "is not TUF metadata ("),
        (b'{"signed": {"_type": "timestamp"}}', "is not TUF metadata ("),
    ],
    ids=["not-json", "not-a-root"],
)
def test_a_root_that_is_not_one_is_refused(content: bytes, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "root.json"
    path.write_bytes(content)
    with pytest.raises(RootFileError) as caught:
        load_root(path)
    assert str(caught.value).startswith(f"{path} {expected}")


def test_an_edited_root_is_refused(keys: Keys, tmp_path: Path) -> None:
    edited = json.loads(keys.root_file.read_bytes())
    edited["signed"]["expires"] = "2099-01-01T00:00:00Z"
    path = tmp_path / "root.json"
    path.write_text(json.dumps(edited))
    with pytest.raises(RootFileError) as caught:
        load_root(path)
    assert str(caught.value) == (
        f"{path} is not signed by the root keys it names (edited, or not a root): pass the "
        "root.json that `registry-build keys init` (or `keys rotate`) wrote"
    )


def test_a_missing_root_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RootFileError) as caught:
        trust_from(tmp_path / "nowhere.json")
    assert str(caught.value) == (
        f"cannot read the trusted root {tmp_path}/nowhere.json: No such file or directory: pass "
        "the root.json that `registry-build keys init` wrote"
    )


def test_the_trust_root_comes_from_the_flag_else_the_environment(
    keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BUNDLE_REGISTRY_TRUST", raising=False)
    assert trust_from(None) is None
    monkeypatch.setenv("BUNDLE_REGISTRY_TRUST", str(keys.root_file))
    found = trust_from(None)
    assert found is not None and found.version == 1


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "missing.key",
         "cannot read the key file {d}/missing.key: No such file or directory: pass the "
         "online.key that `registry-build keys init` wrote, or a signer URI"),
        (lambda d: d / "root.json",
         "{d}/root.json is not an unencrypted PEM private key ("),
    ],
    ids=["missing", "not-a-key"],
)  # fmt: skip
def test_a_signing_key_that_is_not_one_is_named(
    keys: Keys, make: Callable[[Path], Path], expected: str, tmp_path: Path
) -> None:
    path = make(keys.directory)
    with pytest.raises(KeyFileError) as caught:
        load_signing(str(path))
    assert str(caught.value).startswith(expected.format(d=keys.directory))


def test_a_signing_key_comes_from_the_flag_else_the_environment(
    keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BUNDLE_REGISTRY_SIGNING_KEY", raising=False)
    assert signing_from(None) is None
    with pytest.raises(KeyFileError) as caught:
        signing_from(None, keys.root_file)
    assert str(caught.value) == (
        f"--root {keys.root_file} installs a trust root, which needs the online key to sign "
        "with: pass --signing-key KEYS/online.key or set BUNDLE_REGISTRY_SIGNING_KEY"
    )
    monkeypatch.setenv("BUNDLE_REGISTRY_SIGNING_KEY", str(keys.online_file))
    found = signing_from(None, None, Expiry(timestamp=timedelta(hours=6)))
    assert found is not None and found.signer is not None and found.root is None
    assert found.expiry == Expiry(timestamp=timedelta(hours=6))


def test_a_signer_uri_is_made_with_the_registrys_online_key(keys: Keys) -> None:
    signing = load_signing(f"file2:{keys.online_file}")
    assert signing.signer is None  # a URI: made once the public key is known
    root = load_root(keys.root_file)
    signer = signing.signer_for(root.online)
    assert signer.public_key.keyid == next(iter(root.online))
    with pytest.raises(KeyFileError) as caught:
        signing.signer_for({})
    assert str(caught.value) == (
        f"the signer URI {quoted(f'file2:{keys.online_file}', 60)} needs the registry's one "
        "online key, but its root names 0: give the key as a file instead"
    )
