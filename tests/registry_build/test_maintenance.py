"""reindex, verify and gc on directories and on S3 (moto's server over HTTP)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import blake3
import msgspec
import pytest
from support.sources import assert_consistent, bundles, make_source, pages, publish

from registry_build.destination import CountingStore
from registry_build.maintenance import gc, reindex, verify
from runtime.errors import CorruptDocument
from runtime.registry.index import IndexFormatError, NoIndex
from runtime.registry.wire import blob_key, descriptor_key
from runtime.storage.store import Store


def test_reindex_rebuilds_from_descriptors_without_reading_a_blob(
    dest: Store, tmp_path: Path
) -> None:
    publish(make_source(tmp_path / "src", bundles("tiny", range(3)) + bundles("b", range(2))), dest)
    expected = dest.get("index.json")[0]
    dest.put("index.json", b"{not json")
    dest.delete("index")
    counting = ReadSpy(dest)
    written = reindex(counting, render=pages)
    assert sorted(written) == ["index", "index.json"]
    assert dest.get("index.json")[0] == expected
    assert not [key for key in counting.read if key.startswith("blobs/")]
    assert_consistent(dest)


class ReadSpy(CountingStore):
    """Remembers which keys were read."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.read: list[str] = []

    def get(self, key: str) -> tuple[bytes, str]:
        self.read.append(key)
        return super().get(key)


def test_verify_reports_missing_and_corrupt_blobs_by_bundle(dest: Store, tmp_path: Path) -> None:
    made = [("tiny", "1.0", "universal", b"one"), ("tiny", "1.1", "linux-x86_64", b"two"),
            ("tiny", "1.2", "universal", b"three")]  # fmt: skip
    publish(make_source(tmp_path / "src", made), dest)
    assert verify(dest) == (3, [])
    one, two = (blake3.blake3(p).hexdigest() for p in (b"one", b"two"))
    dest.delete(blob_key(one))
    dest.put(blob_key(two), b"twx")
    checked, problems = verify(dest)
    assert checked == 3
    assert sorted(map(str, problems)) == [
        f"tiny@1.0 (universal): blobs/{one}.xyb is missing",
        f"tiny@1.1 (linux-x86_64): blobs/{two}.xyb has BLAKE3 "
        f"{blake3.blake3(b'twx').hexdigest()}, the index names {two}",
    ]


def test_gc_deletes_only_unreferenced_blobs_older_than_the_grace(
    dest: Store, tmp_path: Path
) -> None:
    publish(make_source(tmp_path / "src", bundles("tiny", range(2))), dest)
    dest.put("blobs/" + "f" * 64 + ".xyb", b"orphan")
    kept = sorted(i.key for i in dest.list("blobs/"))[:2]
    week = 7 * 86400
    assert gc(dest, week, dry_run=True) == []  # everything is young
    doomed = gc(dest, week, dry_run=True, now=time.time() + week + 60)
    assert [(i.key, i.size) for i in doomed] == [("blobs/" + "f" * 64 + ".xyb", 6)]
    assert len(list(dest.list("blobs/"))) == 3  # a dry run deletes nothing
    gc(dest, week, dry_run=False, now=time.time() + week + 60)
    assert sorted(i.key for i in dest.list("blobs/")) == sorted(
        k for k in kept if not k.startswith("blobs/fff")
    )
    assert verify(dest)[1] == []


def test_gc_keeps_blobs_of_descriptors_not_yet_indexed(dest: Store, tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", [("tiny", "1.0", "universal", b"pending")])
    digest = blake3.blake3(b"pending").hexdigest()
    dest.put_file(blob_key(digest), src / blob_key(digest))
    key = descriptor_key("tiny", "1.0", "universal")
    dest.put(key, (src / key).read_bytes())
    assert gc(dest, 0, dry_run=False, now=time.time() + 3600) == []
    assert msgspec.json.decode(dest.get(key)[0])["hash"] == digest


def test_reindex_never_overwrites_a_newer_index_format(dest: Store, tmp_path: Path) -> None:
    publish(make_source(tmp_path / "src", bundles("tiny", range(2))), dest)
    newer = b'{"format": 2, "models": {}}'
    dest.put("index.json", newer)
    with pytest.raises(IndexFormatError, match=r"index\.json has format 2, newer than the 1 "):
        reindex(dest, render=pages)
    assert dest.get("index.json")[0] == newer


def test_verify_without_an_index_says_what_to_do(dest: Store) -> None:
    with pytest.raises(NoIndex) as caught:
        verify(dest)
    assert str(caught.value) == (
        f"{dest.location} has no index.json: publish or build a registry there first"
    )


@pytest.mark.parametrize("run", [reindex, lambda store: gc(store, 0, dry_run=True)])
def test_a_deeply_nested_descriptor_is_named_not_a_crash(
    dest: Store, tmp_path: Path, run: Callable[[Store], object]
) -> None:
    publish(make_source(tmp_path / "src", bundles("tiny", range(1))), dest)
    key = "descriptors/zzz/1.0/universal.json"
    dest.put(key, b'{"metadata": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001)
    with pytest.raises(CorruptDocument) as caught:
        run(dest)
    assert str(caught.value) == (
        f"{dest.location}/{key} nests arrays or objects too deeply to be a registry document; "
        "the registry is corrupt or hostile: fix or remove it, then run the command again"
    )
