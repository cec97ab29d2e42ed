"""The mirror of one registry's index.json: its folder, what it answers offline, the conditional
read on every backend, and the shards it reads only when index.json names one it lacks."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import blake3
import pytest
from support.conditional import Log, serve
from support.registries import demo_registry, publish, shard_path, write_alias, write_index
from support.trust import Recording

from runtime.aliases import promote
from runtime.client.cache import Cache
from runtime.client.mirror import Mirror, OfflineMiss
from runtime.client.registry import Registry
from runtime.errors import IntegrityError
from runtime.names import parse_ref
from runtime.registry.wire import IndexV1, encode
from runtime.storage.local import LocalStore
from runtime.storage.location import open_store
from runtime.storage.store import Store


def unused() -> Store:
    raise AssertionError("no store is opened for this")


def test_one_folder_per_location_with_the_location_in_it(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    first = Mirror(cache, "https://a.example/reg", unused, notice=print)
    other = Mirror(cache, "https://b.example/reg", unused, notice=print)
    assert first.folder.parent == other.folder.parent == cache.root / "registries"
    assert first.folder != other.folder
    first.save_index(b"{}")
    assert (first.folder / "location").read_text() == "https://a.example/reg\n"


def test_offline_answers_from_the_saved_index_and_pointers_and_opens_no_store(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    demo_registry(site)
    cache = Cache(tmp_path / "cache")
    online = Mirror(cache, str(site), lambda: LocalStore(site), notice=print)
    assert online.resolve(parse_ref("tiny@stable"), ("universal",)).version == "1.2"
    notices: list[str] = []
    offline = Mirror(cache, str(site), unused, offline=True, notice=notices.append)
    assert offline.resolve(parse_ref("tiny@stable"), ("universal",)).version == "1.2"
    assert offline.fallback == "offline"
    assert len(notices) == 1
    assert notices[0].startswith(f"offline: resolving from the cached index of {site} (saved ")
    with pytest.raises(OfflineMiss) as caught:
        Mirror(Cache(tmp_path / "empty"), str(site), unused, offline=True, notice=print).resolve(
            parse_ref("tiny"), ("universal",)
        )
    assert str(caught.value) == (
        f"offline, and the cache {tmp_path / 'empty'} holds no index of {site}: "
        "fetch once while the registry is reachable"
    )


# -- conditional reads: a 304 is not an error, and reuses the cache --------------------------


def _upload(root: Path, bucket: str) -> None:
    import boto3

    client = boto3.client("s3")
    for path in sorted(root.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, path.relative_to(root).as_posix())


@pytest.fixture(params=["dir", "s3", "http"])
def served(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    http_server: Callable[[Path], str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Path, Callable[[], Store]]:
    """The demo registry in a directory, and how to open it as each backend sees it after the
    directory changed (S3 gets a fresh upload; http.server serves the directory itself)."""
    root = tmp_path / "site"
    demo_registry(root)
    if request.param == "dir":
        return root, lambda: LocalStore(root)
    if request.param == "http":
        for path in root.rglob("*"):
            os.utime(path, (1e9, 1e9))  # a Last-Modified older than a second is a validator
        url = http_server(root)
        return root, lambda: open_store(url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", request.getfixturevalue("moto_endpoint"))
    bucket = request.getfixturevalue("s3_bucket")

    def uploaded() -> Store:
        _upload(root, bucket)
        return open_store(f"s3://{bucket}")

    return root, uploaded


def test_a_304_is_not_an_error_and_reuses_the_cache(
    served: tuple[Path, Callable[[], Store]], tmp_path: Path
) -> None:
    root, opened = served
    cache = Cache(tmp_path / "cache")
    first = Recording(opened())
    registry = Registry(first.location, cache=cache, store=first)
    assert registry.resolve("tiny@stable", "universal").version == "1.2"
    assert first.reads == [("index.json", 200), (shard_path(root, "tiny"), 200)]
    saved = registry.mirror.index_path.stat().st_mtime_ns
    again = Recording(first.inner)
    warm = Registry(first.location, cache=cache, store=again)
    assert warm.resolve("tiny@stable", "universal").version == "1.2"
    assert again.reads == [("index.json", 304)]  # the cached shard, by the digest index.json names
    assert warm.mirror.index_path.stat().st_mtime_ns == saved  # nothing rewritten
    assert warm.mirror.fallback is None


def test_another_model_changed_costs_index_json_only(
    served: tuple[Path, Callable[[], Store]], tmp_path: Path
) -> None:
    root, opened = served
    cache = Cache(tmp_path / "cache")
    Registry(str(root), cache=cache, store=opened()).resolve("tiny@stable", "universal")
    published = [*demo_registry(tmp_path / "again").values()]
    write_index(root, [*published, publish(root, "mac-only", "2.1", "macos-arm64")])
    write_alias(root, "tiny", "stable", "1.2")
    later = Recording(opened())
    registry = Registry(later.location, cache=cache, store=later)
    assert registry.resolve("tiny@stable", "universal").version == "1.2"
    assert later.reads == [("index.json", 200)]


# -- shards: read only when index.json names one the cache lacks, and checked ----------------


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[tuple[Path, Log, str]]:
    """The demo registry served the way nginx serves it (ETags, 304), with the server's log."""
    root = tmp_path / "site"
    demo_registry(root)
    log = Log(root)
    yield from ((root, log, url) for url in serve(log))


def test_warm_with_nothing_changed_is_one_request_answered_304(
    logged: tuple[Path, Log, str], tmp_path: Path
) -> None:
    root, log, url = logged
    cache = Cache(tmp_path / "cache")
    assert Registry(url, cache=cache).resolve("tiny@stable", "universal").version == "1.2"
    assert [(p, s) for p, s, _ in log.take()] == [
        ("index.json", 200),
        (shard_path(root, "tiny"), 200),
    ]
    assert Registry(url, cache=cache).resolve("tiny@stable", "universal").version == "1.2"
    assert log.take() == [("index.json", 304, 0)]


def test_a_stale_cached_shard_is_never_used(logged: tuple[Path, Log, str], tmp_path: Path) -> None:
    root, log, url = logged
    cache = Cache(tmp_path / "cache")
    assert Registry(url, cache=cache).resolve("tiny", "universal").version == "1.10"
    old = shard_path(root, "tiny")
    newer = publish(root, "tiny", "1.11", "universal")
    write_index(root, [*demo_registry(tmp_path / "again").values(), newer])
    log.take()
    assert Registry(url, cache=cache).resolve("tiny", "universal").hash == newer.hash
    assert [p for p, _, _ in log.take()] == ["index.json", shard_path(root, "tiny")]
    assert (cache.root / old.replace("shards/tiny/", "shards/")).is_file()  # kept, unused


def test_a_tampered_shard_is_refused_and_nothing_cached(
    logged: tuple[Path, Log, str], tmp_path: Path
) -> None:
    root, _, url = logged
    key = shard_path(root, "tiny")
    good = (root / key).read_bytes()
    (root / key).write_bytes(good.replace(b'"1.10"', b'"1.11"'))
    cache = Cache(tmp_path / "cache")
    with pytest.raises(IntegrityError) as caught:
        Registry(url, cache=cache).resolve("tiny", "universal")
    actual = blake3.blake3((root / key).read_bytes()).hexdigest()
    assert str(caught.value) == (
        f"{url}/{key} has BLAKE3 {actual}, index.json names {blake3.blake3(good).hexdigest()}; "
        "the shard is corrupt or index.json is stale: retry, or ask the publisher to rebuild the "
        "registry's index.json"
    )
    assert not (cache.root / "shards").exists()


def test_a_damaged_cached_shard_is_read_anew(logged: tuple[Path, Log, str], tmp_path: Path) -> None:
    root, log, url = logged
    cache = Cache(tmp_path / "cache")
    Registry(url, cache=cache).resolve("tiny", "universal")
    [cached] = (cache.root / "shards").iterdir()
    cached.write_bytes(cached.read_bytes()[:-1] + b" ")
    log.take()
    assert Registry(url, cache=cache).resolve("tiny", "universal").version == "1.10"
    assert [(p, s) for p, s, _ in log.take()] == [
        ("index.json", 304),
        (shard_path(root, "tiny"), 200),
    ]


def test_promote_then_resolve_sees_it_without_a_pointer_read(
    logged: tuple[Path, Log, str], tmp_path: Path
) -> None:
    root, log, url = logged
    cache = Cache(tmp_path / "cache")
    registry = Registry(url, cache=cache)
    assert registry.resolve("tiny@stable", "universal").version == "1.2"
    promote(LocalStore(root), "tiny", "prod", "1.0", "ci", "ship")
    assert registry.resolve("tiny@prod", "universal").version == "1.0"
    promote(LocalStore(root), "tiny", "prod", "1.10", "ci", "ship")
    assert registry.resolve("tiny@prod", "universal").version == "1.10"
    assert not [p for p, _, _ in log.take() if p.startswith("aliases/")]


def test_a_format_1_index_an_older_client_saved_is_no_index(tmp_path: Path) -> None:
    site = tmp_path / "site"
    demo_registry(site)
    cache = Cache(tmp_path / "cache")
    offline = Mirror(cache, str(site), unused, offline=True, notice=print)
    offline.save_index(encode(IndexV1()), '"etag"')
    with pytest.raises(OfflineMiss, match=r"^offline, and the cache .* holds no index of "):
        offline.resolve(parse_ref("tiny"), ("universal",))
    online = Registry(str(site), cache=cache)
    assert online.resolve("tiny@1.2", "universal").version == "1.2"  # read again, unconditionally
