"""The one reader of ``index.json`` and shards: every runtime reader refuses an index of another
format by its number, and a shard that is not the one index.json names.

(The publisher's side, that publish, commit and reindex never overwrite a newer index and upgrade
an older one, is tested in ``tests/registry_build``.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import blake3
import pytest
from support.registries import whisper_registry

from runtime import aliases as al
from runtime.cli import main
from runtime.client.cache import Cache
from runtime.client.registry import Registry
from runtime.errors import CorruptDocument, IntegrityError
from runtime.registry.index import (
    IndexFormatError,
    NoIndex,
    OlderIndexFormat,
    check_shard,
    decode_index,
    fetch_index,
    load_index,
    read_index,
    read_shard,
)
from runtime.registry.wire import Index, IndexV1, ShardRef, decode_document, encode, shard_key
from runtime.storage.local import LocalStore
from runtime.storage.memory import MemoryStore

NEWER = b'{"format": 3, "models": {"whisper": {"shards": [{"url": "shards/whisper/x.json"}]}}}'


def refusal(where: str) -> str:
    return (
        f"{where}/index.json has format 3, newer than the 2 this version of bundle-registry "
        "reads: upgrade bundle-registry (pip install -U bundle-registry)"
    )


@pytest.fixture
def newer(tmp_path: Path) -> LocalStore:
    """A registry whose index.json is of format 3."""
    store = whisper_registry(tmp_path / "site")
    store.put("index.json", NEWER)
    return store


def test_decode_refuses_a_newer_format_and_names_the_document() -> None:
    with pytest.raises(IndexFormatError) as caught:
        decode_index(NEWER, "s3://b/index.json")
    assert str(caught.value) == refusal("s3://b")
    with pytest.raises(CorruptDocument, match=r"^here: \$\.format: "):
        decode_index(b'{"format": "two"}', "here")


def test_the_store_readers() -> None:
    store = MemoryStore()
    assert read_index(store) == (Index(), None)
    with pytest.raises(NoIndex) as caught:
        load_index(store)
    assert str(caught.value) == (
        "memory:// has no index.json: is it a registry? Build one with `registry-build build`, "
        "or check --registry / BUNDLE_REGISTRY"
    )
    store.put("index.json", NEWER)
    for read in (read_index, load_index, fetch_index):
        with pytest.raises(IndexFormatError):
            read(store)


READERS: dict[str, Callable[[LocalStore, Path], object]] = {
    "client resolve": lambda s, cache: Registry(s.location, cache=Cache(cache)).resolve("whisper"),
    "client fetch": lambda s, cache: Registry(s.location, cache=Cache(cache)).fetch("whisper@1.0"),
    "aliases.resolve": lambda s, _: al.resolve(s, "whisper@1.0"),
    "aliases.aliases": lambda s, _: al.aliases(s, "whisper"),
    "aliases.verify": lambda s, _: al.verify(s, "whisper@1.0"),
    "aliases.promote": lambda s, _: al.promote(s, "whisper", "production", "1.0", "ci", ""),
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_refuses_a_newer_index_and_writes_nothing(
    newer: LocalStore, tmp_path: Path, reader: str
) -> None:
    before = sorted(p for p in Path(newer.location).rglob("*"))
    with pytest.raises(IndexFormatError) as caught:
        READERS[reader](newer, tmp_path / "cache")
    assert str(caught.value) == refusal(newer.location)
    assert sorted(p for p in Path(newer.location).rglob("*")) == before
    assert newer.get("index.json")[0] == NEWER


def test_over_http_too(
    newer: LocalStore, tmp_path: Path, http_server: Callable[[Path], str]
) -> None:
    url = http_server(Path(newer.location))
    with pytest.raises(IndexFormatError) as caught:
        Registry(url, cache=Cache(tmp_path / "cache")).resolve("whisper@1.0")
    assert str(caught.value) == refusal(url)


def test_a_cached_index_of_a_newer_format_is_refused_offline(
    newer: LocalStore, tmp_path: Path
) -> None:
    cache = Cache(tmp_path / "cache")
    offline = Registry(newer.location, cache=cache, offline=True)
    offline.mirror.save_index(NEWER)
    with pytest.raises(IndexFormatError) as caught:
        offline.resolve("whisper")
    assert str(caught.value).startswith(f"{cache.root}/registries/")


@pytest.mark.parametrize(
    "argv",
    [
        ["resolve", "whisper"],
        ["fetch", "whisper@1.0"],
        ["aliases", "whisper"],
        ["verify", "whisper@1.0"],
        ["promote", "whisper", "production", "1.0", "--actor", "ci"],
    ],
)
def test_every_command_says_to_upgrade(
    newer: LocalStore, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    cache = ["--cache-dir", str(tmp_path / "cache")] if argv[0] in ("resolve", "fetch") else []
    assert main([*argv, "--registry", newer.location, *cache]) == 1
    assert capsys.readouterr() == ("", f"Error: {refusal(newer.location)}\n")
    assert newer.get("index.json")[0] == NEWER


def test_a_format_1_reader_sees_format_2_as_newer_not_as_corrupt(tmp_path: Path) -> None:
    """Version 1 decoded index.json as IndexV1 and refused a format above 1: a format-2 index
    decodes as that type, so it meets the "newer format, upgrade" error, not "corrupt"."""
    store = whisper_registry(tmp_path / "site")
    old = decode_document(store.get("index.json")[0], IndexV1, "index.json", "")
    assert (old.format, old.bundles) == (2, ())


def test_a_format_1_index_says_to_upgrade_the_registry(tmp_path: Path) -> None:
    store = whisper_registry(tmp_path / "site")
    store.put("index.json", encode(IndexV1()))
    for read in (read_index, load_index):
        with pytest.raises(OlderIndexFormat) as caught:
            read(store)
        assert str(caught.value) == (
            f"{store.location}/index.json has format 1, older than the 2 this version of "
            "bundle-registry reads: upgrade the registry to format 2 with `registry-build "
            "reindex DEST` (a publish to it upgrades it too), or ask the publisher to"
        )


def test_a_hostile_entry_is_named_by_its_model() -> None:
    data = b'{"format": 2, "models": {"tiny": {"latest": "1.0", "shard": ["../../x", 1]}}}'
    with pytest.raises(CorruptDocument) as caught:
        decode_index(data, "https://host/index.json")
    assert str(caught.value) == (
        "https://host/index.json (model 'tiny'): $.shard[0]: '../../x' is not a 64-character "
        "lowercase hex digest; the registry is corrupt or hostile: rebuild it from descriptors/ "
        "with `registry-build reindex` (or ask the publisher to)"
    )


SHARD = b'{"model":"tiny","bundles":[]}'


def test_a_shard_longer_than_named_is_refused_before_it_is_read_whole(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "site")
    ref = ShardRef(blake3.blake3(SHARD).hexdigest(), len(SHARD))
    store.put(shard_key("tiny", ref.hash), SHARD + b" " * (8 << 20))
    with pytest.raises(IntegrityError) as caught:
        read_shard(store, "tiny", ref)
    assert str(caught.value) == (
        f"{store.location}/{shard_key('tiny', ref.hash)} has more than 29 bytes, index.json names "
        "29; the shard is corrupt or index.json is stale: retry, or rebuild it from descriptors/ "
        "with `registry-build reindex` (or ask the publisher to)"
    )


@pytest.mark.parametrize(
    ("data", "model", "error", "message"),
    [
        (SHARD + b" ", "tiny", IntegrityError, "here has 30 bytes, index.json names 29; "),
        (SHARD.replace(b"tiny", b"tinx"), "tiny", IntegrityError, "here has BLAKE3 "),
        (SHARD, "other", CorruptDocument, "here holds bundles of tiny, not of 'other' alone; "),
    ],
)
def test_a_shard_is_checked_by_size_digest_and_model(
    data: bytes, model: str, error: type[Exception], message: str
) -> None:
    ref = ShardRef(blake3.blake3(SHARD).hexdigest(), len(SHARD))
    assert check_shard(SHARD, "tiny", ref, "here").model == "tiny"
    with pytest.raises(error) as caught:
        check_shard(data, model, ref, "here")
    assert str(caught.value).startswith(message)
