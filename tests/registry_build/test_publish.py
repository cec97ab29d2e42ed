"""Publishing to S3 (moto's server over HTTP) and to directories: incremental, concurrent, safe."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import BinaryIO

import blake3
import msgspec
import pytest
import urllib3
from support.sources import (
    QUIET,
    assert_consistent,
    bundles,
    catalog_of,
    fork,
    make_source,
    publish,
)

from registry_build.commit import Options
from registry_build.maintenance import reindex
from registry_build.publish import Promote, SourceRegistryError, publish_registry
from runtime.aliases import promote, resolve_alias
from runtime.errors import CorruptDocument, ImmutableConflict, IntegrityError, InvalidNameError
from runtime.registry.index import IndexFormatError, check_shard, decode_index
from runtime.registry.wire import (
    BundleDescriptor,
    blob_key,
    decode_descriptor,
    descriptor_key,
    encode_pretty,
    shard_key,
)
from runtime.storage.local import LocalStore
from runtime.storage.s3 import S3Store
from runtime.storage.store import ObjectInfo, PutMode, Store


def test_publish_writes_content_then_index_then_pages(dest: Store, tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", bundles("tiny", range(3)) + bundles("small", range(1)))
    report = publish(src, dest)
    assert len(report.uploaded) == 4
    assert report.uploaded_bytes == 8000
    assert report.summary() == f"uploaded 4 blobs (7.8 KiB), skipped 0, {report.requests} requests"
    catalog = assert_consistent(dest)
    assert sorted((d.id, d.version) for d in catalog.bundles) == [
        ("small", "1.0"), ("tiny", "1.0"), ("tiny", "1.1"), ("tiny", "1.2"),
    ]  # fmt: skip
    assert [i.key for i in dest.list("descriptors/")] == [
        "descriptors/small/1.0/universal.json",
        "descriptors/tiny/1.0/universal.json",
        "descriptors/tiny/1.1/universal.json",
        "descriptors/tiny/1.2/universal.json",
    ]


def test_republishing_unchanged_content_uploads_nothing_and_rewrites_nothing(
    dest: Store, tmp_path: Path
) -> None:
    src = make_source(tmp_path / "src", bundles("tiny", range(5)))
    publish(src, dest)
    before = {i.key: (i.size, i.modified) for i in dest.list()}
    index_before = dest.get("index.json")
    time.sleep(1.1)  # S3 timestamps have whole seconds: a rewrite would show
    report = publish(src, dest)
    assert (report.uploaded, report.written, report.skipped) == ([], [], 5)
    assert dest.get("index.json") == index_before
    assert {i.key: (i.size, i.modified) for i in dest.list()} == before
    if isinstance(dest, S3Store):
        assert report.requests == 2  # GET index.json, GET the model's shard


def test_republishing_a_whole_build_reads_the_shards_from_the_build(
    dest: Store, tmp_path: Path
) -> None:
    """A build's output holds the shards it committed: where the destination names the same
    digest, the shard is read there, so a CI job that publishes its whole build each time sends
    requests only for the models it changed."""
    made = [b for m in ("a", "b", "c") for b in bundles(m, range(3))]
    src = make_source(tmp_path / "src", made)
    reindex(LocalStore(src), options=QUIET)  # as a build leaves it: descriptors, shards, index.json
    publish(src, dest)
    counting = Recorder(dest)
    assert publish(src, counting).uploaded == []
    assert counting.seen == [("GET", "index.json")]
    more = make_source(tmp_path / "src", bundles("b", range(3, 4)))
    counting.seen.clear()
    publish(more, counting)
    assert [k for m, k in counting.seen if m == "GET" and k.startswith("shards/")] == []


def test_publishing_one_more_bundle_uploads_only_its_blob(dest: Store, tmp_path: Path) -> None:
    publish(make_source(tmp_path / "src", bundles("tiny", range(4))), dest)
    src = make_source(tmp_path / "src", bundles("tiny", range(4, 5)))
    report = publish(src, dest)
    assert len(report.uploaded) == 1
    assert report.skipped == 4
    shard = shard_key("tiny", catalog_of(dest)[0].models["tiny"].shard.hash)
    assert sorted(report.written) == [
        "descriptors/tiny/1.4/universal.json", "index", "index.html", "index.json",
        "models/tiny.html", shard, "v1/models",
    ]  # fmt: skip
    assert len(assert_consistent(dest).bundles) == 5


def test_a_published_version_cannot_change_and_nothing_is_sent(dest: Store, tmp_path: Path) -> None:
    publish(make_source(tmp_path / "one", [("tiny", "1.0", "universal", b"first")]), dest)
    changed = make_source(tmp_path / "two", [("tiny", "1.0", "universal", b"second")])
    before = sorted(i.key for i in dest.list())
    with pytest.raises(ImmutableConflict) as caught:
        publish(changed, dest)
    first, second = blake3.blake3(b"first").hexdigest(), blake3.blake3(b"second").hexdigest()
    assert str(caught.value) == (
        f"tiny@1.0 for universal is already published with digest {first}; this build produced "
        f"{second}. Published versions are immutable: give the changed model a new version"
        " (if no source changed, build with the --level that published it)"
    )
    assert sorted(i.key for i in dest.list()) == before


def test_a_descriptor_left_by_a_crashed_publish_with_another_digest_conflicts(
    dest: Store, tmp_path: Path
) -> None:
    # A descriptor that is not in the index yet (its publisher died before the index).
    orphan = make_source(tmp_path / "orphan", [("tiny", "2.0", "universal", b"orphan")])
    key = descriptor_key("tiny", "2.0", "universal")
    dest.put(key, (orphan / key).read_bytes())
    with pytest.raises(ImmutableConflict) as caught:
        publish(make_source(tmp_path / "src", [("tiny", "2.0", "universal", b"mine")]), dest)
    orphan_digest = blake3.blake3(b"orphan").hexdigest()
    assert str(caught.value).startswith(
        f"tiny@2.0 for universal is already published with digest {orphan_digest}"
    )


def test_a_corrupt_source_blob_is_refused(dest: Store, tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", [("tiny", "1.0", "universal", b"good bytes")])
    digest = blake3.blake3(b"good bytes").hexdigest()
    (src / blob_key(digest)).write_bytes(b"evil bytes")
    with pytest.raises(IntegrityError) as caught:
        publish(src, dest)
    assert str(caught.value) == (
        f"{src / blob_key(digest)} hashes to {blake3.blake3(b'evil bytes').hexdigest()}, not the "
        f"{digest} its descriptor names: the build output is corrupt; delete that file and run "
        "`registry-build build` again, which rebuilds it"
    )
    assert list(dest.list()) == []


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: root.mkdir(), "{root} has no descriptors/ directory: it is not a built "
         "registry; build one with `registry-build build --out {root}`"),
        (lambda root: (root / "descriptors").mkdir(parents=True),
         "{root}/descriptors/ is empty: there is nothing to publish"),
    ],
)  # fmt: skip
def test_a_source_that_is_not_a_registry_is_refused(
    tmp_path: Path, setup: Callable[[Path], None], message: str
) -> None:
    root = tmp_path / "src"
    setup(root)
    with pytest.raises(SourceRegistryError) as caught:
        publish(root, LocalStore(tmp_path / "dest"))
    assert str(caught.value) == message.format(root=root)


def test_a_missing_source_blob_is_named(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", [("tiny", "1.0", "universal", b"abc")])
    blob = src / blob_key(blake3.blake3(b"abc").hexdigest())
    blob.unlink()
    with pytest.raises(SourceRegistryError) as caught:
        publish(src, LocalStore(tmp_path / "dest"))
    assert str(caught.value) == (
        f"{blob} is missing; {src / descriptor_key('tiny', '1.0', 'universal')} names 3 bytes: "
        "rebuild the registry"
    )


@pytest.mark.parametrize(
    ("key", "content_type", "cache_control"),
    [
        ("blobs/{digest}.xyb", "application/zstd", "public, max-age=31536000, immutable"),
        ("descriptors/tiny/1.0/universal.json", "application/json",
         "public, max-age=31536000, immutable"),
        ("shards/tiny/{shard}.json", "application/json", "public, max-age=31536000, immutable"),
        ("index.json", "application/json", "no-cache"),
        ("index", "application/json", "no-cache"),
        ("v1/models", "application/json", "no-cache"),
        ("index.html", "text/html; charset=utf-8", "public, max-age=300"),
    ],
)  # fmt: skip
def test_objects_carry_type_and_cache_control_by_class(
    s3_bucket: str, moto_endpoint: str, tmp_path: Path, key: str, content_type: str,
    cache_control: str,
) -> None:  # fmt: skip
    payload = b"bundle"
    store = S3Store.from_url(f"s3://{s3_bucket}", endpoint_url=moto_endpoint)
    publish(make_source(tmp_path / "src", [("tiny", "1.0", "universal", payload)]), store)
    shard = catalog_of(store)[0].models["tiny"].shard.hash
    full = key.format(digest=blake3.blake3(payload).hexdigest(), shard=shard)
    head = store.client.head_object(Bucket=s3_bucket, Key=full)
    assert (head["ContentType"], head["CacheControl"]) == (content_type, cache_control)


def _fetch(url: str) -> bytes:
    response = urllib3.request("GET", url, timeout=10)
    assert response.status == 200, url
    return response.data


def test_a_client_reads_index_and_blob_straight_from_the_s3_endpoint(
    s3_bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    payload = os.urandom(5000)
    store = S3Store.from_url(f"s3://{s3_bucket}/reg", endpoint_url=moto_endpoint)
    publish(make_source(tmp_path / "src", [("tiny", "1.0", "universal", payload)]), store)
    # As a deployment does: the bucket (or a CDN in front of it) serves objects anonymously.
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
              "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{s3_bucket}/*"}]}  # fmt: skip
    store.client.put_bucket_policy(Bucket=s3_bucket, Policy=json.dumps(policy))
    base = f"{moto_endpoint}/{s3_bucket}/reg"
    entry = _first_bundle(base)
    blob = _fetch(f"{base}/{entry.location.url}")
    assert blake3.blake3(blob).hexdigest() == entry.hash
    assert blob == payload


def _first_bundle(base: str) -> BundleDescriptor:
    """What a plain HTTP client does: index.json, the shard it names, its first bundle."""
    index = decode_index(_fetch(f"{base}/index.json"), base)
    model, entry = next(iter(index.models.items()))
    key = shard_key(model, entry.shard.hash)
    return check_shard(_fetch(f"{base}/{key}"), model, entry.shard, key).bundles[0]


def test_a_client_reads_a_published_directory_over_http(
    tmp_path: Path, http_server: Callable[[Path], str]
) -> None:
    payload = os.urandom(5000)
    src = make_source(tmp_path / "src", [("tiny", "1.0", "universal", payload)])
    publish(src, LocalStore(tmp_path / "site"))
    base = http_server(tmp_path / "site")
    entry = _first_bundle(base)
    assert _fetch(f"{base}/{entry.location.url}") == payload


# -- concurrency and crashes -----------------------------------------------------------------


EDITED = replace(QUIET, whole_models=0)  # every registry is "large": its documents are edited


def _publish_in_child(
    src: Path, url: str, endpoint: str, options: Options = QUIET
) -> Callable[[], object]:
    return lambda: publish(src, S3Store.from_url(url, endpoint_url=endpoint), options)


@pytest.mark.slow
@pytest.mark.parametrize(
    "options", [QUIET, replace(QUIET, whole_models=0)], ids=["whole", "edited"]
)
def test_eight_processes_publishing_at_once_lose_no_bundle(
    s3_bucket: str, moto_endpoint: str, tmp_path: Path, options: Options
) -> None:
    url = f"s3://{s3_bucket}/reg"
    expected = set()
    for round_ in range(3):
        sources = []
        for n in range(8):
            made = bundles(f"model{n}", range(round_ * 2, round_ * 2 + 2), size=500)
            sources.append(make_source(tmp_path / f"src{round_}-{n}", made))
            expected |= {(m, v, t) for m, v, t, _ in made}
        pids = [fork(_publish_in_child(src, url, moto_endpoint, options)) for src in sources]
        assert [os.waitpid(pid, 0)[1] for pid in pids] == [0] * 8
        catalog = assert_consistent(S3Store.from_url(url, endpoint_url=moto_endpoint))
        assert {d.key for d in catalog.bundles} == expected


@pytest.mark.slow
@pytest.mark.parametrize("options", [QUIET, EDITED], ids=["whole", "edited"])
def test_killing_a_publisher_at_any_moment_leaves_a_consistent_registry(
    s3_bucket: str, moto_endpoint: str, tmp_path: Path, options: Options
) -> None:
    url = f"s3://{s3_bucket}/reg"
    store = S3Store.from_url(url, endpoint_url=moto_endpoint)
    rng = random.Random(1234)
    typical = _timed(
        partial(publish, make_source(tmp_path / "w", bundles("w", range(3))), store, options)
    )
    killed_early = trial = 0
    while killed_early < 10 and trial < 40:  # kills that landed mid-publish, on a busy machine too
        src = make_source(
            tmp_path / f"src{trial}", bundles("tiny", range(trial * 3, trial * 3 + 3))
        )
        pid = fork(_publish_in_child(src, url, moto_endpoint, options))
        time.sleep(rng.uniform(0, typical * 1.5))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        killed_early += os.WIFSIGNALED(status)
        if store_has_index(store):
            assert_shards_and_blobs_complete(store)
        typical = _timed(partial(publish, src, store, options))  # the next publish completes
        catalog = assert_consistent(store)
        assert {("tiny", f"1.{v}") for v in range(trial * 3 + 3)} <= {
            (d.id, d.version) for d in catalog.bundles
        }
        trial += 1
    assert killed_early == 10  # ten kills landed mid-publish, so the trials tested something


def _timed(work: Callable[[], object]) -> float:
    """Seconds ``work`` takes: the pace of a publish on this machine now."""
    started = time.monotonic()
    work()
    return time.monotonic() - started


def store_has_index(store: Store) -> bool:
    return any(i.key == "index.json" for i in store.list("index.json"))


def assert_shards_and_blobs_complete(store: Store) -> None:
    """What a client trusts: every shard index.json names is there and complete (catalog_of
    checks each against its size and digest), and so is every blob those shards name."""
    for entry in catalog_of(store)[1].bundles:
        blob, _ = store.get(blob_key(entry.hash))
        assert blake3.blake3(blob).hexdigest() == entry.hash


def test_threads_publishing_to_one_directory_lose_no_bundle(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = LocalStore(tmp_path / "site")
    sources = [make_source(tmp_path / f"src{n}", bundles(f"m{n}", range(2))) for n in range(6)]
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda src: publish(src, store), sources))
    assert len(assert_consistent(store).bundles) == 12


NEWER_INDEX = json.dumps(
    {"format": 3, "models": {"tiny": {"aliases": {"prod": "1.0"}, "shards": [
        {"hash": "c" * 64, "size": 123}]}}}
).encode()  # fmt: skip


def newer_format_message(store: Store) -> str:
    return (
        f"{store.location}/index.json has format 3, newer than the 2 this version of "
        "bundle-registry reads: upgrade bundle-registry (pip install -U bundle-registry)"
    )


def test_a_newer_index_format_is_refused_and_never_overwritten(dest: Store, tmp_path: Path) -> None:
    dest.put("index.json", NEWER_INDEX)
    with pytest.raises(IndexFormatError) as caught:
        publish(make_source(tmp_path / "src", bundles("tiny", range(2))), dest)
    assert str(caught.value) == newer_format_message(dest)
    assert dest.get("index.json")[0] == NEWER_INDEX
    assert [i.key for i in dest.list()] == ["index.json"]  # not a blob was sent


def test_a_deeply_nested_source_descriptor_is_named(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", [("tiny", "1.0", "universal", b"abc")])
    path = src / descriptor_key("tiny", "1.0", "universal")
    path.write_bytes(b'{"metadata": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001)
    with pytest.raises(CorruptDocument) as caught:
        publish(src, LocalStore(tmp_path / "dest"))
    assert str(caught.value) == (
        f"{path} nests arrays or objects too deeply to be a registry document; the registry is "
        "corrupt or hostile: rebuild the registry"
    )


def test_publish_promotes_the_newest_version_of_each_model(dest: Store, tmp_path: Path) -> None:
    made = [*bundles("tiny", range(9, 11)), ("ghost", "2.0", "universal", b"x")]
    src = make_source(tmp_path / "src", made)
    ghost = src / descriptor_key("ghost", "2.0", "universal")
    placeholder = msgspec.structs.replace(
        decode_descriptor(ghost.read_bytes()), metadata={"placeholder": True}
    )
    ghost.write_bytes(encode_pretty(placeholder))
    promote = Promote("prod", "ci", "a test")
    report = publish_registry(src, dest, promote=promote, progress=False, options=QUIET)
    assert report.promoted == ["tiny@prod -> 1.10 (seq 1)"]  # a placeholder is not promoted
    assert resolve_alias(dest, "tiny", "prod").version == "1.10"
    assert catalog_of(dest)[0].models["tiny"].aliases == {"prod": "1.10"}  # what clients read
    assert_consistent(dest)  # the pages show the alias
    again = publish_registry(src, dest, promote=promote, progress=False, options=QUIET)
    assert again.promoted == ["tiny@prod -> 1.10 (already)"]


def test_an_alias_that_is_not_a_name_is_refused_before_anything() -> None:
    with pytest.raises(InvalidNameError) as caught:
        Promote("../prod", None, "a test")
    assert str(caught.value).startswith("alias '../prod' is not a valid name: ")


class Recorder:
    """A store that notes each request made through it: (method, key)."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.location = inner, inner.location
        self.seen: list[tuple[str, str]] = []

    def get(
        self, key: str, if_none_match: str | None = None, limit: int | None = None
    ) -> tuple[bytes, str]:
        self.seen.append(("GET", key))
        return self.inner.get(key, if_none_match, limit)

    def head(self, key: str) -> ObjectInfo:
        self.seen.append(("HEAD", key))
        return self.inner.head(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self.seen.append(("LIST", prefix))
        return self.inner.list(prefix)

    def open(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        self.seen.append(("GET", key))
        return self.inner.open(key)

    def delete(self, key: str) -> None:
        self.seen.append(("DELETE", key))
        self.inner.delete(key)

    def put(
        self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        self.seen.append(("PUT", key))
        return self.inner.put(key, data, mode, etag)

    def put_file(
        self, key: str, path: Path, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        self.seen.append(("PUT", key))
        return self.inner.put_file(key, path, mode, etag)


def test_one_new_bundle_of_a_large_registry_costs_twelve_requests(
    dest: Store, tmp_path: Path
) -> None:
    """index off; "large" here is every registry (whole_models=0): its documents are edited."""
    edited = replace(QUIET, whole_models=0, xybrid_index=False)
    made = [b for m in ("a", "b", "c") for b in bundles(m, range(5))]
    publish(make_source(tmp_path / "src", made), dest, edited)
    promote(dest, "b", "prod", "1.3", "ci", "")
    src = make_source(tmp_path / "new", bundles("b", range(5, 6)))
    recorder = Recorder(dest)
    report = publish(src, recorder, edited)
    index = catalog_of(dest)[0]
    old = next(k for m, k in recorder.seen if k.startswith("shards/"))
    blob = report.uploaded[0]
    assert recorder.seen == [
        ("GET", "index.json"),
        ("GET", old),
        ("HEAD", blob),
        ("PUT", blob),
        ("PUT", "descriptors/b/1.5/universal.json"),
        ("GET", "v1/models"),
        ("GET", "aliases/b/index.json"),  # the history of b's alias, for its page
        ("PUT", shard_key("b", index.models["b"].shard.hash)),
        ("PUT", "v1/models"),
        ("PUT", "models/b.html"),
        ("PUT", "index.html"),
        ("PUT", "index.json"),
    ]
    assert_consistent(dest, xybrid_index=False)
