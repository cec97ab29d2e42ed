"""The repository's own bundles.json builds on a fresh clone, and every bundle round-trips.

The round trip reads each .xyb with an implementation independent of ours (tarfile + zstandard)
and checks Xybrid's loader rules: manifest first, the file list equals the entries, and the
manifest hash recomputes with Xybrid's algorithm.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import blake3
import pytest
import zstandard
from support.sources import catalog_of

from registry_build.build import build
from runtime.registry.wire import decode_descriptor
from runtime.registry.xyb import verify_archive
from runtime.storage.local import LocalStore

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "site"
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(out.parent / "cache"))
    try:
        build(ROOT / "bundles.json", str(out))
    finally:
        mp.undo()
    return out


def read_xyb(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with open(path, "rb") as handle:
        raw = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True).read()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
        return [(m, archive.extractfile(m).read()) for m in archive.getmembers()]  # type: ignore[union-attr]


def xybrid_hash(manifest: dict[str, object], files: dict[str, bytes]) -> str:
    hasher = hashlib.sha256()
    for name in sorted(files):
        hasher.update(name.encode())
        hasher.update(files[name])
    compact = json.dumps({**manifest, "hash": ""}, separators=(",", ":"), ensure_ascii=False)
    hasher.update(compact.encode())
    return hasher.hexdigest()


def test_demo_covers_the_promised_shapes(site: Path) -> None:
    index = catalog_of(LocalStore(site))[1]
    assert len(index.models) >= 3
    assert len({d.target for d in index.bundles}) >= 3
    descriptors = [
        decode_descriptor((site / f"descriptors/{d.id}/{d.version}/{d.target}.json").read_bytes())
        for d in index.bundles
    ]
    assert any(len(d.files) > 2 for d in descriptors)  # a multi-file source_dir
    assert any(d.metadata.get("placeholder") for d in descriptors)


def test_every_demo_bundle_round_trips(site: Path) -> None:
    index = catalog_of(LocalStore(site))[1]
    for entry in index.bundles:
        blob = site / entry.location.url
        data = blob.read_bytes()
        assert blake3.blake3(data).hexdigest() == entry.hash
        assert hashlib.sha256(data).hexdigest() == entry.sha256
        members = read_xyb(blob)
        first, manifest_bytes = members[0]
        assert first.name == "manifest.json"
        manifest = json.loads(manifest_bytes)
        assert list(manifest) == ["model_id", "version", "target", "hash", "files", "has_metadata"]
        assert manifest_bytes.decode() == json.dumps(manifest, indent=2, ensure_ascii=False)
        files = {m.name: content for m, content in members[1:]}
        assert all(m.isfile() and m.mtime == 0 and m.uid == m.gid == 0 for m, _ in members)
        assert sorted(manifest["files"]) == sorted(files)
        assert manifest["has_metadata"] == ("model_metadata.json" in files)
        assert manifest["hash"] == xybrid_hash(manifest, files)
        assert (manifest["model_id"], manifest["version"], manifest["target"]) == entry.key
        descriptor = decode_descriptor(
            (site / f"descriptors/{entry.id}/{entry.version}/{entry.target}.json").read_bytes()
        )
        assert {f.path: f.blake3 for f in descriptor.files} == {
            name: blake3.blake3(content).hexdigest() for name, content in files.items()
        }
        assert verify_archive(blob, descriptor.files).hash == manifest["hash"]


def test_multi_file_bundle_follows_model_metadata_files(site: Path) -> None:
    (entry,) = [
        decode_descriptor(p.read_bytes())
        for p in (site / "descriptors" / "tiny-bert").rglob("universal.json")
    ]
    assert [f.path for f in entry.files] == [
        "config.json", "model.safetensors", "model_metadata.json", "tokenizer.json",
    ]  # README.md is in the directory but not listed  # fmt: skip
