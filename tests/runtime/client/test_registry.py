"""The client against real registries: python -m http.server, a directory, file://, moto's S3."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import blake3
import msgspec
import pytest
import zstandard
from support.faults import Faults, serve
from support.registries import (
    DEMO_TARGETS,
    bundle_members,
    demo_registry,
    member,
    publish,
    rename_shard,
    shard_path,
    tar_bytes,
    write_alias,
    write_index,
)

from runtime.client.cache import Cache
from runtime.client.mirror import NoDefaultModel
from runtime.client.registry import (
    OfflineMiss,
    OfflineSettingError,
    Registry,
    offline_from_env,
)
from runtime.errors import (
    BundleFormatError,
    IntegrityError,
    InvalidNameError,
    RegistryError,
    ResolveError,
)
from runtime.names import detect_target
from runtime.registry.wire import (
    BundleDescriptor,
    Index,
    descriptor_key,
    encode,
    encode_pretty,
    index_entry,
)
from runtime.storage.http import HttpStore, default_retries

Key = tuple[str, str, str]


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, dict[Key, BundleDescriptor]]:
    root = tmp_path / "site"
    return root, demo_registry(root)


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    return Cache(tmp_path / "cache")


@pytest.fixture
def faults(site: tuple[Path, dict[Key, BundleDescriptor]]) -> Faults:
    return Faults(site[0])


@pytest.fixture
def counting_url(faults: Faults) -> Iterator[str]:
    yield from serve(faults)


class Notices(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)


def upload(root: Path, bucket: str) -> None:
    import boto3

    client = boto3.client("s3")
    for path in sorted(root.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, path.relative_to(root).as_posix())


@pytest.fixture(params=["http", "dir", "file", "s3"])
def location(
    request: pytest.FixtureRequest,
    site: tuple[Path, dict[Key, BundleDescriptor]],
    http_server: Callable[[Path], str],
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    root = site[0]
    if request.param == "http":
        return http_server(root)
    if request.param == "dir":
        return str(root)
    if request.param == "file":
        return f"file://{root}"
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    upload(root, bucket)
    return f"s3://{bucket}"


def test_fetch_and_resolve_every_location_kind(
    location: str, site: tuple[Path, dict[Key, BundleDescriptor]], cache: Cache
) -> None:
    _, published = site
    registry = Registry(location, cache=cache, progress=False)
    want = published[("tiny", "1.2", "universal")]
    assert registry.resolve("tiny@1.2", "linux-arm64").hash == want.hash
    path = registry.fetch("tiny@stable", "linux-arm64")
    assert path == cache.root / "blobs" / f"{want.hash}.xyb"
    assert blake3.blake3(path.read_bytes()).hexdigest() == want.hash
    assert cache.descriptor(want.hash) == want
    assert registry.fetch("tiny", "linux-x86_64").name == (
        f"{published[('tiny', '1.10', 'universal')].hash}.xyb"
    )


@pytest.mark.parametrize(
    ("ref", "target", "expected"),
    [
        ("tiny@1.2", "linux-x86_64", ("tiny", "1.2", "linux-x86_64")),
        ("tiny@1.2", "linux-arm64", ("tiny", "1.2", "universal")),  # falls back
        ("tiny@1.2", "macos-aarch64", ("tiny", "1.2", "macos-arm64")),  # a synonym
        ("tiny@stable", "macos-arm64", ("tiny", "1.2", "macos-arm64")),  # an alias
        ("tiny", "linux-x86_64", ("tiny", "1.10", "universal")),  # 1.10 > 1.2 > 1.0
        ("tiny@1.0", "windows-x86_64", ("tiny", "1.0", "universal")),
        ("tiny@1.10", "universal", ("tiny", "1.10", "universal")),
    ],
)
def test_resolution_table(
    site: tuple[Path, dict[Key, BundleDescriptor]],
    cache: Cache,
    ref: str,
    target: str,
    expected: Key,
) -> None:
    root, published = site
    assert Registry(str(root), cache=cache).resolve(ref, target) == _entry(published[expected])


def test_no_target_means_this_machine_then_universal(
    site: tuple[Path, dict[Key, BundleDescriptor]], cache: Cache
) -> None:
    root, _published = site
    mine = detect_target()
    expected = mine if mine in DEMO_TARGETS else "universal"
    assert Registry(str(root), cache=cache).resolve("tiny@1.2").target == expected


def _entry(descriptor: BundleDescriptor) -> BundleDescriptor:
    from runtime.registry.wire import index_entry

    return index_entry(descriptor)


def test_unknown_model_lists_models(
    site: tuple[Path, dict[Key, BundleDescriptor]], cache: Cache
) -> None:
    root, _ = site
    with pytest.raises(ResolveError) as caught:
        Registry(str(root), cache=cache).resolve("tinny@1.0", "universal")
    assert str(caught.value) == (
        f"model 'tinny' is not in the index of {root} (models: mac-only, tiny)"
    )


def test_unknown_version_lists_versions_and_aliases(
    site: tuple[Path, dict[Key, BundleDescriptor]], cache: Cache
) -> None:
    root, _ = site
    with pytest.raises(ResolveError) as caught:
        Registry(str(root), cache=cache).resolve("tiny@1.3", "universal")
    assert str(caught.value) == (
        f"model 'tiny' has no version or alias '1.3' in {root} "
        "(versions: 1.0, 1.2, 1.10; aliases: stable)"  # index.json's alias map
    )


def test_missing_target_lists_targets(
    site: tuple[Path, dict[Key, BundleDescriptor]], cache: Cache
) -> None:
    root, _ = site
    with pytest.raises(ResolveError) as caught:
        Registry(str(root), cache=cache).resolve("mac-only@2.0", "linux-x86_64")
    assert str(caught.value) == (
        f"mac-only@2.0 has no bundle for target 'linux-x86_64' or 'universal' in {root} "
        "(targets of 2.0: macos-arm64): pass one of those with --target, or pick another version"
    )


def test_alias_to_unpublished_version(
    site: tuple[Path, dict[Key, BundleDescriptor]], cache: Cache
) -> None:
    root, _ = site
    write_alias(root, "tiny", "next", "9.9")
    with pytest.raises(ResolveError) as caught:
        Registry(str(root), cache=cache).resolve("tiny@next", "universal")
    assert str(caught.value) == (
        f"tiny@next points at version '9.9', which the index of {root} no longer holds "
        "(versions: 1.0, 1.2, 1.10): promote the alias to one of those"
    )


def test_unknown_target(site: tuple[Path, dict[Key, BundleDescriptor]], cache: Cache) -> None:
    with pytest.raises(InvalidNameError) as caught:
        Registry(str(site[0]), cache=cache).resolve("tiny", "ios-x64")
    assert str(caught.value).startswith(
        "target 'ios-x64' is not a known target (known: macos-arm64,"
    )


def test_not_a_registry(tmp_path: Path, cache: Cache) -> None:
    with pytest.raises(ResolveError) as caught:
        Registry(str(tmp_path), cache=cache).resolve("tiny")
    assert str(caught.value) == (
        f"{tmp_path} has no index.json: is it a registry? Build one with `registry-build build`, "
        "or check --registry / BUNDLE_REGISTRY"
    )


def test_corrupted_blob_is_refused_and_nothing_cached(
    site: tuple[Path, dict[Key, BundleDescriptor]], cache: Cache, http_server: Callable[[Path], str]
) -> None:
    root, published = site
    want = published[("tiny", "1.10", "universal")]
    blob = root / want.location.url
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0x01
    blob.write_bytes(bytes(data))
    url = http_server(root)
    with pytest.raises(IntegrityError) as caught:
        Registry(url, cache=cache, progress=False).fetch("tiny@1.10", "universal")
    actual = blake3.blake3(bytes(data)).hexdigest()
    assert str(caught.value) == (
        f"{want.location.url} from {url} (tiny@1.10 universal) has BLAKE3 {actual}, "
        f"expected {want.hash}; the blob is corrupt or the index is stale: retry, "
        "or ask the publisher to rebuild"
    )
    assert list((cache.root / "blobs").iterdir()) == []


def test_descriptor_disagreeing_with_index(
    site: tuple[Path, dict[Key, BundleDescriptor]], cache: Cache
) -> None:
    root, published = site
    other = publish(root, "tiny", "1.10", "universal", {"model.bin": b"something else"})
    write_index(root, [published[("tiny", "1.10", "universal")]])
    with pytest.raises(IntegrityError) as caught:
        Registry(str(root), cache=cache).fetch("tiny@1.10", "universal")
    assert str(caught.value).startswith(
        f"{root}/descriptors/tiny/1.10/universal.json names blob {other.hash}"
    )
    assert cache.entries() == []


def test_cache_hit_makes_no_request(
    site: tuple[Path, dict[Key, BundleDescriptor]],
    cache: Cache,
    faults: Faults,
    counting_url: str,
) -> None:
    first = Registry(counting_url, cache=cache, progress=False).fetch("tiny@1.2", "linux-x86_64")
    assert faults.paths()  # index, pointer probe, descriptor, blob
    faults.requests.clear()
    again = Registry(counting_url, cache=cache, progress=False)
    assert again.fetch("tiny@1.2", "linux-x86_64") == first
    assert again.resolve("tiny@1.2", "linux-x86_64").version == "1.2"
    assert faults.paths() == []


def test_a_damaged_cache_heals_itself(
    site: tuple[Path, dict[Key, BundleDescriptor]],
    cache: Cache,
    faults: Faults,
    counting_url: str,
) -> None:
    registry = Registry(counting_url, cache=cache, progress=False)
    blob = registry.fetch("tiny@1.2", "linux-x86_64")
    tree = registry.extract("tiny@1.2", "linux-x86_64")
    name = next(p for p in tree.rglob("*") if p.is_file())
    name.write_bytes(b"x")
    assert registry.extract("tiny@1.2", "linux-x86_64") == tree  # extracted again
    assert name.read_bytes() != b"x"
    good = blob.read_bytes()
    blob.write_bytes(good[:100])  # truncated after it was verified
    faults.requests.clear()
    assert registry.fetch("tiny@1.2", "linux-x86_64") == blob
    assert blob.read_bytes() == good
    assert any(p.endswith(".xyb") for p in faults.paths())  # downloaded again


def test_alias_is_looked_up_online_each_time_in_index_json(
    site: tuple[Path, dict[Key, BundleDescriptor]],
    cache: Cache,
    faults: Faults,
    counting_url: str,
) -> None:
    root, _published = site
    registry = Registry(counting_url, cache=cache, progress=False)
    assert registry.resolve("tiny@stable", "universal").version == "1.2"
    write_alias(root, "tiny", "stable", "1.0", seq=2)
    assert registry.resolve("tiny@stable", "universal").version == "1.0"
    assert faults.paths() == ["index.json", shard_path(root, "tiny"), "index.json"]


def test_offline_resolves_from_the_cached_index(
    site: tuple[Path, dict[Key, BundleDescriptor]], cache: Cache, http_server: Callable[[Path], str]
) -> None:
    root, _published = site
    url = http_server(root)
    online = Registry(url, cache=cache, progress=False)
    path = online.fetch("tiny@stable", "macos-arm64")
    notices = Notices()
    offline = Registry(url, cache=cache, offline=True, notice=notices)
    assert offline.fetch("tiny@stable", "macos-arm64") == path
    assert len(notices) == 1
    assert notices[0].startswith(f"offline: resolving from the cached index of {url} (saved ")
    with pytest.raises(OfflineMiss) as caught:
        offline.fetch("tiny@1.0", "universal")
    assert str(caught.value) == (
        f"tiny@1.0 (universal) is not in the cache {cache.root} (offline): "
        "fetch it once while the registry is reachable"
    )


def test_offline_without_a_cached_index(cache: Cache) -> None:
    with pytest.raises(OfflineMiss) as caught:
        Registry("http://127.0.0.1:9", cache=cache, offline=True).resolve("tiny")
    assert str(caught.value) == (
        f"offline, and the cache {cache.root} holds no index of http://127.0.0.1:9: "
        "fetch once while the registry is reachable"
    )


def test_unreachable_registry_falls_back_to_the_cache(
    site: tuple[Path, dict[Key, BundleDescriptor]], cache: Cache, faults: Faults
) -> None:
    serving = serve(faults)
    url = next(serving)
    Registry(url, cache=cache, progress=False).fetch("tiny", "universal")
    serving.close()  # the server is gone now
    notices = Notices()
    store = HttpStore(url, retries=default_retries(total=1, backoff=0.01))
    down = Registry(url, cache=cache, store=store, notice=notices)
    path = down.fetch("tiny", "universal")
    assert path.name == f"{site[1][('tiny', '1.10', 'universal')].hash}.xyb"
    assert len(notices) == 1
    assert notices[0].startswith(
        f"registry unreachable (cannot reach the registry {url} for index.json: "
    )
    assert f"resolving from the cached index of {url} (saved " in notices[0]


def test_two_processes_fetch_the_same_bundle(tmp_path: Path, cache: Cache) -> None:
    root = tmp_path / "big"
    big = publish(root, "big", "1.0", "universal", {"weights.bin": os.urandom(8 << 20)})
    write_index(root, [big])
    faults = Faults(root, gate=threading.Barrier(2, timeout=60))  # both download at once
    serving = serve(faults)
    url = next(serving)
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from runtime.client.cache import Cache
        from runtime.client.registry import Registry
        registry = Registry({url!r}, cache=Cache(Path({str(cache.root)!r})), progress=False)
        print(registry.fetch("big@1.0", "universal"))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    serving.close()
    assert faults.paths().count(big.location.url) == 2
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == [str(cache.root / "blobs" / f"{big.hash}.xyb")] * 2
    assert blake3.blake3(Path(outputs[0]).read_bytes()).hexdigest() == big.hash
    assert sorted(p.name for p in (cache.root / "blobs").iterdir()) == [f"{big.hash}.xyb"]


BLOCKER = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("jinja2", "boto3", "botocore"):
            raise ImportError(f"{name} is blocked: a device must not need it")
        return None
sys.meta_path.insert(0, Blocker())
"""


@pytest.mark.parametrize("kind", ["http", "dir"])
def test_client_needs_neither_jinja2_nor_boto3(
    kind: str,
    site: tuple[Path, dict[Key, BundleDescriptor]],
    cache: Cache,
    http_server: Callable[[Path], str],
) -> None:
    root, published = site
    location = http_server(root) if kind == "http" else str(root)
    script = BLOCKER + textwrap.dedent(
        f"""
        from pathlib import Path
        from runtime.client.cache import Cache
        from runtime.client.registry import Registry
        import runtime.cli.fetch, runtime.client.pipeline
        registry = Registry({location!r}, cache=Cache(Path({str(cache.root)!r})), progress=False)
        print(registry.fetch("tiny@stable", "universal"))
        print(registry.extract("tiny@stable", "universal"))
        assert not {{"jinja2", "boto3", "botocore"}} & set(sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stderr == ""
    want = published[("tiny", "1.2", "universal")]
    assert done.stdout.splitlines() == [
        str(cache.root / "blobs" / f"{want.hash}.xyb"),
        str(cache.tree(want.hash)),
    ]


def tree_files(tree: Path) -> dict[str, bytes]:
    return {p.relative_to(tree).as_posix(): p.read_bytes() for p in tree.rglob("*") if p.is_file()}


def test_extract_gives_the_model_files(
    site: tuple[Path, dict[Key, BundleDescriptor]], cache: Cache
) -> None:
    root, published = site
    want = published[("tiny", "1.2", "linux-x86_64")]
    registry = Registry(str(root), cache=cache, progress=False)
    tree = registry.extract("tiny@stable", "linux-x86_64")
    assert tree == cache.tree(want.hash)
    assert tree_files(tree) == {"model.bin": b"tiny 1.2 linux-x86_64"}
    assert registry.extract("tiny@1.2", "linux-x86_64") == tree
    assert [e.extracted for e in cache.entries()] == [True]


MODEL = {"model.bin": b"weights"}


def hostile(case: str, outside: Path) -> dict[str, object]:
    """publish() arguments for a bundle whose download verifies but must not be extracted."""
    good = bundle_members("evil", "1.0", "universal", MODEL)
    if case == "traversal":
        return {"members": [*good, member("../escape.txt", b"pwned")]}
    if case == "absolute":
        return {"members": [*good, member(str(outside / "escape.txt"), b"pwned")]}
    if case == "symlink":
        link = member("link", type=tarfile.SYMTYPE, linkname=str(outside))
        return {"members": [*good, link, member("link/escape.txt", b"pwned")]}
    if case == "hardlink":
        return {"members": [*good, member("hard", type=tarfile.LNKTYPE, linkname="/etc/passwd")]}
    if case == "device":
        return {"members": [*good, member("dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)]}
    if case == "lying-descriptor-size":
        return {"files": {"model.bin": b"weights and more"}, "members": good}
    # A header that claims more bytes than the archive holds.
    raw = tar_bytes(good)
    cut = raw[: raw.index(b"weights") + 3]
    return {"blob": zstandard.ZstdCompressor().compress(cut)}


@pytest.mark.parametrize(
    ("case", "error", "fragment"),
    [
        ("traversal", BundleFormatError, "entry '../escape.txt' climbs out of the bundle"),
        ("absolute", BundleFormatError, "/outside/escape.txt' is an absolute path"),
        ("symlink", BundleFormatError, "entry 'link' is a symbolic link"),
        ("hardlink", BundleFormatError, "entry 'hard' is a hard link"),
        ("device", BundleFormatError, "entry 'dev' is a character device"),
        ("lying-descriptor-size", IntegrityError, "'model.bin' is 7 bytes, the descriptor says 16"),
        ("lying-tar-size", BundleFormatError, "the archive ends early"),
    ],
)
def test_hostile_archives_are_refused(
    tmp_path: Path,
    cache: Cache,
    http_server: Callable[[Path], str],
    case: str,
    error: type,
    fragment: str,
) -> None:
    root = tmp_path / "site"
    outside = tmp_path / "outside"
    outside.mkdir()
    arguments = {"files": MODEL, **hostile(case, outside)}
    evil = publish(root, "evil", "1.0", "universal", **arguments)  # type: ignore[arg-type]
    write_index(root, [evil])
    registry = Registry(http_server(root), cache=cache, progress=False)
    with pytest.raises(error) as caught:
        registry.extract("evil@1.0", "universal")
    assert str(caught.value).startswith(f"{cache.root}/blobs/{evil.hash}.xyb: ")
    assert fragment in str(caught.value)
    assert str(caught.value).endswith(
        "; it was removed from the cache, so the next fetch downloads it again; if that copy is "
        "refused too, ask the publisher to rebuild the bundle"
    )
    assert list(outside.iterdir()) == []
    assert not cache.tree(evil.hash).exists()
    assert list((cache.root / "trees").iterdir()) == []
    assert not list(tmp_path.rglob("escape.txt"))
    assert cache.entries() == []  # the blob verified, but extracting it was refused: gone
    assert cache.descriptor(evil.hash) is None


def test_credentials_in_the_url_go_in_a_header_and_nowhere_else(
    site: tuple[Path, dict[Key, BundleDescriptor]], cache: Cache
) -> None:
    import base64
    import functools
    import http.server

    expected = "Basic " + base64.b64encode(b"ci:s3cret").decode()

    class Guarded(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != expected:
                self.send_error(401)
                return
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Guarded, directory=str(site[0]))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        registry = Registry(f"http://ci:s3cret@127.0.0.1:{port}", cache=cache, progress=False)
        assert registry.fetch("tiny@1.2", "linux-x86_64").is_file()
        assert registry.location == f"http://127.0.0.1:{port}"
        with pytest.raises(ResolveError) as caught:
            registry.resolve("nope")
        server.shutdown()
    assert "s3cret" not in str(caught.value)
    for path in cache.root.rglob("*"):
        assert not path.is_file() or b"s3cret" not in path.read_bytes()


def test_a_location_without_host_or_bucket_is_refused(cache: Cache) -> None:
    with pytest.raises(RegistryError) as caught:
        Registry("s3://", cache=cache)
    assert str(caught.value) == "'s3://' names no host or bucket: write s3://BUCKET/PREFIX"


def test_an_index_from_a_newer_format_says_to_upgrade(tmp_path: Path, cache: Cache) -> None:
    (tmp_path / "index.json").write_text('{"format": 99, "models": {}, "bundles": []}')
    with pytest.raises(RegistryError) as caught:
        Registry(str(tmp_path), cache=cache, progress=False).resolve("tiny")
    assert str(caught.value) == (
        f"{tmp_path}/index.json has format 99, newer than the 2 this version of bundle-registry "
        "reads: upgrade bundle-registry (pip install -U bundle-registry)"
    )


# --- a hostile registry touches nothing outside the cache ------------------------------------


def test_a_digest_that_is_a_path_never_reaches_the_disk(tmp_path: Path, cache: Cache) -> None:
    """issue 10: "hash": "../../victim" wrote victim.json beside the cache and deleted files."""
    import json

    root = tmp_path / "site"
    good = publish(root, "m", "1.0", "universal")
    write_index(root, [good])
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "victim.json").write_text("mine")
    hostile = "../../victim/victim"
    path = root / "descriptors/m/1.0/universal.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "hash": hostile}))
    shard = json.loads((root / shard_path(root, "m")).read_text())
    shard["bundles"][0]["hash"] = hostile
    key = rename_shard(root, "m", json.dumps(shard).encode())  # named by its digest: it verifies
    with pytest.raises(RegistryError) as caught:
        Registry(str(root), cache=cache, progress=False).extract("m@1.0", "universal")
    assert str(caught.value) == (
        f"{root}/{key}: $.bundles[0].hash: '{hostile}' is not a 64-character lowercase "
        "hex digest; the registry is corrupt or hostile: ask the publisher to rebuild the "
        "registry's index.json"
    )
    assert sorted(p.name for p in victim.iterdir()) == ["victim.json"]
    assert (victim / "victim.json").read_text() == "mine"
    assert cache.entries() == []


def promoted(root: Path, versions: tuple[str, ...]) -> None:
    """tiny@prod promoted through ``versions`` (real records), then its pointer file lost."""
    from runtime.aliases import promote
    from runtime.registry.wire import alias_pointer_key
    from runtime.storage.local import LocalStore

    store = LocalStore(root)
    for version in versions:
        promote(store, "tiny", "prod", version, "ci", "")
    (root / alias_pointer_key("tiny", "prod")).unlink()


def test_a_client_needs_no_pointer_file_but_the_alias_commands_roll_one_forward_over_http(
    site: tuple[Path, dict[Key, BundleDescriptor]],
    cache: Cache,
    faults: Faults,
    counting_url: str,
) -> None:
    """A crash during a first promotion (or a deleted pointer) leaves records and no pointer. A
    client resolves by index.json's alias map and reads no pointer; the alias commands, over
    HTTP, with no listing, probe the records 1, 3, 7, then bisect."""
    from runtime.aliases import resolve_alias

    root, _ = site
    promoted(root, ("1.0", "1.10", "1.2"))
    registry = Registry(counting_url, cache=cache, progress=False)
    assert registry.resolve("tiny@prod", "universal").version == "1.2"
    assert not [p for p in faults.paths() if p.startswith("aliases/")]
    assert resolve_alias(HttpStore(counting_url), "tiny", "prod", repair=False).version == "1.2"
    probes = [p for p in faults.paths() if p.startswith("aliases/tiny/prod/")]
    assert probes == [f"aliases/tiny/prod/{n}.json" for n in (1, 3, 7, 5, 4)]
    offline = Registry(counting_url, cache=cache, offline=True, notice=Notices())
    assert offline.resolve("tiny@prod", "universal").version == "1.2"


def test_a_version_ref_costs_the_index_and_the_shard(
    site: tuple[Path, dict[Key, BundleDescriptor]],
    cache: Cache,
    faults: Faults,
    counting_url: str,
) -> None:
    Registry(counting_url, cache=cache, progress=False).resolve("tiny@1.2", "universal")
    assert faults.paths() == ["index.json", shard_path(site[0], "tiny")]


def test_an_alias_listed_but_unreadable_does_not_contradict_itself(
    site: tuple[Path, dict[Key, BundleDescriptor]], cache: Cache
) -> None:
    """A client answers from index.json's alias map, where the alias commands, reading the
    damaged files, name the damage (and never say "no alias" and "aliases: prod" at once)."""
    from runtime.aliases import refresh_view, resolve
    from runtime.storage.local import LocalStore

    root, _ = site
    promoted(root, ("1.0", "1.2"))
    refresh_view(LocalStore(root), "tiny")
    (root / "aliases/tiny/prod/1.json").unlink()
    assert Registry(str(root), cache=cache).resolve("tiny@prod", "universal").version == "1.2"
    with pytest.raises(ResolveError) as caught:
        resolve(LocalStore(root), "tiny@prod", "universal")
    assert str(caught.value) == (
        f"alias 'prod' of model 'tiny' in {root} is damaged: neither its pointer "
        "aliases/tiny/prod.json nor its first record aliases/tiny/prod/1.json exists; restore "
        "the files, or promote the alias again"
    )


def test_a_bomb_over_the_ceiling_is_refused_and_kept(tmp_path: Path, cache: Cache) -> None:
    """The ceiling is the caller's: the blob is sound, raising the ceiling is the fix."""
    root = tmp_path / "site"
    files = {"a.bin": bytes(300_000)}
    bundle = publish(root, "big", "1.0", "universal", files)
    (root / "descriptors/big/1.0/universal.json").unlink()  # no descriptor: no files list
    write_index(root, [bundle])
    small = Registry(str(root), cache=cache, progress=False, max_extract_bytes=100_000)
    with pytest.raises(BundleFormatError) as caught:
        small.extract("big@1.0", "universal")
    assert str(caught.value) == (
        f"{cache.blob_path(bundle.hash)}: entry 'a.bin' declares 300000 bytes, bringing the "
        "bundle to 300000, over the extraction ceiling of 100000 bytes; if you trust this "
        "bundle, raise the ceiling (--max-extract or BUNDLE_MAX_EXTRACT)"
    )
    assert [e.digest for e in cache.entries()] == [bundle.hash]
    assert list((cache.root / "trees").iterdir()) == []
    tree = Registry(str(root), cache=cache, progress=False).extract("big@1.0", "universal")
    assert (tree / "a.bin").stat().st_size == 300_000


def test_a_refused_bundle_is_downloaded_again_on_the_next_fetch(
    site: tuple[Path, dict[Key, BundleDescriptor]],
    cache: Cache,
    faults: Faults,
    counting_url: str,
) -> None:
    """A cached blob damaged after it was verified (same size, so a cache hit) is refused by
    extraction, removed, and fetched anew: the message's promise holds."""
    want = site[1][("tiny", "1.2", "linux-x86_64")]
    registry = Registry(counting_url, cache=cache, progress=False)
    blob = registry.fetch("tiny@1.2", "linux-x86_64")
    damaged = bytearray(blob.read_bytes())
    damaged[-8] ^= 0xFF
    blob.write_bytes(bytes(damaged))
    with pytest.raises(RegistryError) as caught:
        registry.extract("tiny@1.2", "linux-x86_64")
    assert str(caught.value).startswith(f"{blob}: ")
    assert str(caught.value).endswith("; it was removed from the cache, so the next fetch "
                                      "downloads it again; if that copy is refused too, ask "
                                      "the publisher to rebuild the bundle")  # fmt: skip
    assert not blob.exists() and cache.descriptor(want.hash) is None
    faults.requests.clear()
    tree = registry.extract("tiny@1.2", "linux-x86_64")
    assert tree_files(tree) == {"model.bin": b"tiny 1.2 linux-x86_64"}
    assert want.blob_key in faults.paths()


def test_a_descriptor_without_url_is_read_from_its_digest(tmp_path: Path, cache: Cache) -> None:
    import msgspec

    from runtime.registry.wire import Location

    root = tmp_path / "site"
    bundle = msgspec.structs.replace(publish(root, "m", "1.0", "universal"), location=Location())
    (root / "descriptors/m/1.0/universal.json").unlink()
    write_index(root, [bundle])
    path = Registry(str(root), cache=cache, progress=False).fetch("m@1.0", "universal")
    assert path == cache.blob_path(bundle.hash)


def _stub_registry(root: Path, default: str | None) -> dict[Key, BundleDescriptor]:
    """``real`` 1.0 and ``stub`` 0.1 (a placeholder, in its descriptor and index entry)."""
    real = publish(root, "real", "1.0", "universal")
    stub = msgspec.structs.replace(publish(root, "stub", "0.1", "universal"), placeholder=True)
    (root / descriptor_key(*stub.key)).write_bytes(encode_pretty(stub))
    write_index(root, [real, stub])
    if default is not None:
        index = msgspec.json.decode((root / "index.json").read_bytes(), type=Index)
        (root / "index.json").write_bytes(encode(msgspec.structs.replace(index, default=default)))
    return {d.key: d for d in (real, stub)}


def test_a_placeholder_is_fetched_with_one_notice(tmp_path: Path, cache: Cache) -> None:
    _stub_registry(tmp_path / "stub", None)
    notices: list[str] = []
    registry = Registry(str(tmp_path / "stub"), cache=cache, notice=notices.append)
    assert registry.resolve("stub@0.1").placeholder is True
    assert notices == []  # resolving marks it; fetching warns
    registry.fetch("stub@0.1")
    registry.extract("stub@0.1")
    registry.fetch("real")
    assert notices == [
        "stub@0.1 (universal) is a placeholder: its source was missing when the registry was "
        "built, so it holds a stand-in, not the model; ask the publisher to add the source and "
        "rebuild"
    ]


def test_no_ref_resolves_the_default_model(tmp_path: Path, cache: Cache) -> None:
    published = _stub_registry(tmp_path / "stub", "real")
    registry = Registry(str(tmp_path / "stub"), cache=cache)
    assert registry.resolve() == index_entry(published[("real", "1.0", "universal")])
    assert registry.fetch().name == f"{published[('real', '1.0', 'universal')].hash}.xyb"


def test_no_ref_without_a_default_model(tmp_path: Path, cache: Cache) -> None:
    _stub_registry(tmp_path / "stub", None)
    with pytest.raises(NoDefaultModel) as refused:
        Registry(str(tmp_path / "stub"), cache=cache).resolve()
    assert str(refused.value) == (
        f"no model given, and {tmp_path / 'stub'}/index.json names no default model: name one "
        "(models: real, stub)"
    )


@pytest.mark.parametrize(
    ("value", "offline"),
    [(None, False), ("", False), ("0", False), ("off", False), ("No", False),
     ("1", True), ("true", True), (" YES ", True), ("on", True)],
)  # fmt: skip
def test_offline_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, offline: bool
) -> None:
    if value is None:
        monkeypatch.delenv("BUNDLE_REGISTRY_OFFLINE", raising=False)
    else:
        monkeypatch.setenv("BUNDLE_REGISTRY_OFFLINE", value)
    assert offline_from_env() is offline


def test_an_offline_setting_that_says_neither(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUNDLE_REGISTRY_OFFLINE", "2")
    with pytest.raises(OfflineSettingError) as refused:
        offline_from_env()
    assert str(refused.value) == (
        "$BUNDLE_REGISTRY_OFFLINE is '2': set it to 1 (offline) or 0 (online), or unset it"
    )
