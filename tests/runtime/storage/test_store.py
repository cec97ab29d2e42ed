"""One contract suite for the storage protocol, run against every backend.

The S3 run goes through moto's server over real HTTP (``moto_endpoint``/``s3_bucket``). The read
contract runs against HTTP too (``python -m http.server`` over a directory written first); what
HTTP refuses is in ``test_http.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runtime.errors import KeyNotFound, PreconditionFailed, StoreError
from runtime.storage.http import HttpStore
from runtime.storage.local import LocalStore
from runtime.storage.memory import MemoryStore
from runtime.storage.store import NotModified, ObjectTooLarge, PutMode, Store, content_headers

Pair = tuple[Store, Store]  # (where a test writes, what the contract reads through)


def _empty(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if kind == "local":
        return LocalStore(tmp_path / "registry")
    if kind == "memory":
        return MemoryStore()
    from runtime.storage.s3 import S3Store

    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Store.from_url(f"s3://{bucket}/some/prefix", endpoint_url=endpoint)


@pytest.fixture(params=["local", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Each writable backend in turn, empty."""
    return _empty(request.param, request, tmp_path)


@pytest.fixture(params=["local", "memory", "s3", "http"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Pair:
    """Each backend in turn, read-only HTTP included: a directory served by http.server."""
    if request.param != "http":
        writable = _empty(request.param, request, tmp_path)
        return writable, writable
    root = tmp_path / "served"
    root.mkdir()
    return LocalStore(root), HttpStore(request.getfixturevalue("http_server")(root))


def test_put_then_get_returns_the_bytes_and_the_etag_that_put_gave(store: Store) -> None:
    etag = store.put("descriptors/m/1.0/universal.json", b'{"a": 1}')
    assert store.get("descriptors/m/1.0/universal.json") == (b'{"a": 1}', etag)


def test_get_and_head_agree_on_size_and_etag(pair: Pair) -> None:
    writer, reader = pair
    writer.put("descriptors/m/1.0/universal.json", b'{"a": 1}')
    data, etag = reader.get("descriptors/m/1.0/universal.json")
    info = reader.head("descriptors/m/1.0/universal.json")
    assert data == b'{"a": 1}'
    assert (info.key, info.size, info.etag) == ("descriptors/m/1.0/universal.json", 8, etag)
    assert info.modified > 0


def test_a_conditional_read_of_an_unchanged_object_is_not_modified(
    pair: Pair, tmp_path: Path
) -> None:
    writer, reader = pair
    key = "index.json"
    writer.put(key, b'{"v": 1}')
    _settle(writer, key)
    data, etag = reader.get(key)
    assert (data, bool(etag)) == (b'{"v": 1}', True)  # and a validator to ask with
    with pytest.raises(NotModified):
        reader.get(key, if_none_match=etag)
    writer.put(key, b'{"v": 22}')  # changed (a server without ETags sees a newer date)
    assert reader.get(key, if_none_match=etag)[0] == b'{"v": 22}'
    assert reader.get(key, if_none_match="0" * 32)[0] == b'{"v": 22}'


def _settle(store: Store, key: str) -> None:
    """Date a directory's file a day back: a Last-Modified within the last second is no
    validator (python -m http.server sends no ETag)."""
    if isinstance(store, LocalStore):
        past = time.time() - 86400
        os.utime(store.root / key, (past, past))


def test_a_read_past_the_callers_limit_is_refused_without_reading_it_whole(pair: Pair) -> None:
    writer, reader = pair
    writer.put("metadata/timestamp.json", b"x" * (8 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(ObjectTooLarge) as caught:
            reader.get("metadata/timestamp.json", limit=16384)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if not reader.location.startswith("s3://"):  # moto answers from this very process
        assert peak < 1 << 20  # 8 MiB offered, at most the limit (and a buffer) read
    assert str(caught.value) == (
        f"metadata/timestamp.json from {reader.location} is larger than 16384 bytes, the most a "
        "document may have: the registry is corrupt or hostile; check the registry location"
    )
    assert reader.get("metadata/timestamp.json", limit=8 << 20)[0] == b"x" * (8 << 20)


def test_equal_bytes_have_equal_etags_and_different_bytes_differ(store: Store) -> None:
    first = store.put("a.json", b"same")
    second = store.put("b.json", b"same")
    third = store.put("c.json", b"other")
    assert first == second != third


@pytest.mark.parametrize("method", ["get", "head", "open"])
def test_missing_key_raises_key_not_found_naming_key_and_location(pair: Pair, method: str) -> None:
    _, reader = pair
    with pytest.raises(KeyNotFound) as caught:
        if method == "open":
            with reader.open("blobs/missing.xyb"):
                pass
        else:
            getattr(reader, method)("blobs/missing.xyb")
    assert str(caught.value) == f"blobs/missing.xyb not found in {reader.location}"
    assert isinstance(caught.value, FileNotFoundError)


def test_deleting_a_missing_key_raises_key_not_found(store: Store) -> None:
    with pytest.raises(KeyNotFound) as caught:
        store.delete("blobs/missing.xyb")
    assert str(caught.value) == f"blobs/missing.xyb not found in {store.location}"


def test_list_filters_by_prefix_and_sorts_by_key(store: Store) -> None:
    for key in ["blobs/b.xyb", "blobs/a.xyb", "blobsx/c", "index.json", "blobs/sub/d.xyb"]:
        store.put(key, key.encode())
    listed = list(store.list("blobs/"))
    assert [i.key for i in listed] == ["blobs/a.xyb", "blobs/b.xyb", "blobs/sub/d.xyb"]
    assert [i.size for i in listed] == [11, 11, 15]
    assert [i.key for i in store.list("blobs")] == [
        "blobs/a.xyb",
        "blobs/b.xyb",
        "blobs/sub/d.xyb",
        "blobsx/c",
    ]
    assert len(list(store.list())) == 5
    assert list(store.list("nothing/")) == []


def test_open_streams_the_object(pair: Pair, tmp_path: Path) -> None:
    writer, store = pair
    payload = bytes(range(256)) * 4096
    source = tmp_path / "payload.bin"
    source.write_bytes(payload)
    writer.put_file("blobs/p.xyb", source)
    with store.open("blobs/p.xyb") as reader:
        chunks = iter(lambda: reader.read(65536), b"")
        assert b"".join(chunks) == payload


def test_delete_removes_the_object(store: Store) -> None:
    store.put("blobs/x.xyb", b"x")
    store.delete("blobs/x.xyb")
    assert list(store.list()) == []
    with pytest.raises(KeyNotFound):
        store.get("blobs/x.xyb")


def test_create_succeeds_once_then_fails_without_changing_the_object(store: Store) -> None:
    etag = store.put("descriptors/m/1/universal.json", b"first", PutMode.CREATE)
    with pytest.raises(PreconditionFailed) as caught:
        store.put("descriptors/m/1/universal.json", b"second", PutMode.CREATE)
    assert str(caught.value) == f"descriptors/m/1/universal.json already exists in {store.location}"
    assert store.get("descriptors/m/1/universal.json") == (b"first", etag)


def test_put_file_create_fails_when_the_key_exists(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "bundle.xyb"
    source.write_bytes(b"bundle bytes")
    etag = store.put_file("blobs/h.xyb", source, PutMode.CREATE)
    with pytest.raises(PreconditionFailed):
        store.put_file("blobs/h.xyb", source, PutMode.CREATE)
    assert store.get("blobs/h.xyb") == (b"bundle bytes", etag)


def test_match_replaces_only_when_the_etag_is_current(store: Store) -> None:
    etag = store.put("index.json", b"v1")
    new_etag = store.put("index.json", b"v2", PutMode.MATCH, etag)
    with pytest.raises(PreconditionFailed) as caught:
        store.put("index.json", b"v3", PutMode.MATCH, etag)
    assert str(caught.value).startswith(f"index.json in {store.location} changed since it was read")
    assert store.get("index.json") == (b"v2", new_etag)


def test_match_on_a_vanished_key_means_gone_not_conflict(store: Store) -> None:
    etag = store.put("aliases/m/prod.json", b"{}")
    store.delete("aliases/m/prod.json")
    with pytest.raises(KeyNotFound) as caught:
        store.put("aliases/m/prod.json", b"{}", PutMode.MATCH, etag)
    assert str(caught.value) == f"aliases/m/prod.json is gone from {store.location}"


def test_match_without_an_etag_is_a_programming_error(store: Store) -> None:
    with pytest.raises(ValueError, match=r"PutMode\.MATCH needs the etag the caller read"):
        store.put("index.json", b"x", PutMode.MATCH)


def _increment(store: Store, key: str, times: int) -> int:
    conflicts = 0
    for _ in range(times):
        while True:
            data, etag = store.get(key)
            time.sleep(0.001)  # think time, as a real client has: lets the writers interleave
            try:
                store.put(key, str(int(data) + 1).encode(), PutMode.MATCH, etag)
                break
            except PreconditionFailed:
                conflicts += 1
    return conflicts


def test_racing_compare_and_swap_loses_no_update(store: Store) -> None:
    store.put("counter", b"0")
    threads, times = 4, 10
    with ThreadPoolExecutor(threads) as pool:
        conflicts = sum(pool.map(lambda _: _increment(store, "counter", times), range(threads)))
    assert store.get("counter")[0] == str(threads * times).encode()
    # The counter only proves something if the writers really collided.
    assert conflicts > 0


def test_racing_creates_have_exactly_one_winner(store: Store) -> None:
    winners: list[int] = []
    barrier = threading.Barrier(6)

    def create(n: int) -> None:
        barrier.wait()
        try:
            store.put("descriptors/m/1/universal.json", str(n).encode(), PutMode.CREATE)
            winners.append(n)
        except PreconditionFailed:
            pass

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(create, range(6)))
    assert len(winners) == 1
    assert store.get("descriptors/m/1/universal.json")[0] == str(winners[0]).encode()


ESCAPING = ["../escape", "/etc/passwd", "a/../../b", "a//b", ".locks/x", "a/./b", "", "dir/"]


def _escape_message(key: str) -> str:
    return (
        f"store key {key!r} is not a relative path of plain names "
        "(no leading '/', empty, '.' or '..' parts, no hidden names)"
    )


@pytest.mark.parametrize("key", ESCAPING)
def test_keys_that_could_escape_are_refused_by_every_reader(pair: Pair, key: str) -> None:
    _, reader = pair
    for attempt in (lambda: reader.get(key), lambda: reader.head(key)):
        with pytest.raises(StoreError) as caught:
            attempt()
        assert str(caught.value) == _escape_message(key)
    with pytest.raises(StoreError) as caught, reader.open(key):
        pass
    assert str(caught.value) == _escape_message(key)


@pytest.mark.parametrize("key", ESCAPING)
def test_keys_that_could_escape_are_refused_by_every_writer(store: Store, key: str) -> None:
    for attempt in (lambda: store.put(key, b"x"), lambda: store.delete(key)):
        with pytest.raises(StoreError) as caught:
            attempt()
        assert str(caught.value) == _escape_message(key)
    assert list(store.list()) == []


def test_local_store_never_leaves_temporary_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    etag = store.put("index.json", b"1")
    with pytest.raises(PreconditionFailed):
        store.put("index.json", b"2", PutMode.CREATE)
    with pytest.raises(PreconditionFailed):
        store.put("index.json", b"2", PutMode.MATCH, "0" * 32)
    store.put("index.json", b"3", PutMode.MATCH, etag)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["index.json"]  # no lock or temporary file left in the served tree


@pytest.mark.parametrize(
    ("key", "content_type", "cache_control"),
    [
        ("blobs/abc.xyb", "application/zstd", "public, max-age=31536000, immutable"),
        (
            "descriptors/m/1/universal.json",
            "application/json",
            "public, max-age=31536000, immutable",
        ),
        ("aliases/m/prod.json", "application/json", "no-cache"),
        ("aliases/m/prod/3.json", "application/json", "public, max-age=31536000, immutable"),
        ("shards/m/abc.json", "application/json", "public, max-age=31536000, immutable"),
        ("index.json", "application/json", "no-cache"),
        ("index", "application/json", "no-cache"),
        ("v1/models", "application/json", "no-cache"),
        ("index.html", "text/html; charset=utf-8", "public, max-age=300"),
        ("models/m.html", "text/html; charset=utf-8", "public, max-age=300"),
    ],
)
def test_content_headers_per_object_class(key: str, content_type: str, cache_control: str) -> None:
    assert content_headers(key) == (content_type, cache_control)


def test_a_directory_store_reads_without_posix_locks(tmp_path: Path) -> None:
    """Windows has no fcntl: reading and creating work, replacing says what to use instead."""
    LocalStore(tmp_path).put("index.json", b"{}")
    script = (
        "import sys; sys.modules['fcntl'] = None\n"  # makes `import fcntl` fail
        "from runtime.errors import StoreError\n"
        "from runtime.storage.local import LocalStore\n"
        "from runtime.storage.store import PutMode\n"
        f"store = LocalStore({str(tmp_path)!r})\n"
        "assert store.get('index.json')[0] == b'{}'\n"
        "store.put('blobs/x', b'x', PutMode.CREATE)\n"
        "try:\n"
        "    store.put('index.json', b'[]')\n"
        "except StoreError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        f"replacing index.json in {tmp_path} needs POSIX file locks (Linux, macOS); "
        "on Windows write to an s3:// location or from WSL\n"
    )
