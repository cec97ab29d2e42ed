"""Test registries for the client: real .xyb files (tarfile + zstandard), descriptors, shards and
index.json (format 2, made by the build side's own functions).

Bundles follow Xybrid's rules: manifest.json first (pretty JSON), then the files sorted by path;
the manifest hash is SHA-256 over each file's path and bytes (sorted by path), then the compact
manifest JSON with ``hash`` set to "". Hostile archives are written from raw tar members, zstd RLE
frames (bombs) and chained GNU long-name entries.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import blake3
import msgspec
import zstandard

from registry_build.index import merge_shard, model_entry, shard_bytes
from runtime.registry.wire import (
    AliasPointer,
    BundleDescriptor,
    FileEntry,
    Index,
    Location,
    ShardRef,
    alias_pointer_key,
    blob_key,
    descriptor_key,
    encode,
    encode_pretty,
    shard_key,
)
from runtime.storage.local import LocalStore
from runtime.storage.store import Store

Member = tuple[tarfile.TarInfo, bytes | None]


def member(name: str, data: bytes | None = None, **fields: object) -> Member:
    """A tar member: a regular file with ``data`` unless ``fields`` say otherwise."""
    info = tarfile.TarInfo(name)
    info.size = len(data) if data is not None else 0
    info.mode = 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def manifest_json(
    model: str, version: str, target: str, files: dict[str, bytes]
) -> tuple[bytes, str]:
    """(pretty manifest bytes, Xybrid hash) for ``files``."""
    fields = {
        "model_id": model,
        "version": version,
        "target": target,
        "hash": "",
        "files": sorted(files),
        "has_metadata": "model_metadata.json" in files,
    }
    hasher = hashlib.sha256()
    for path in sorted(files):
        hasher.update(path.encode())
        hasher.update(files[path])
    hasher.update(json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode())
    fields["hash"] = hasher.hexdigest()
    return json.dumps(fields, indent=2, ensure_ascii=False).encode(), str(fields["hash"])


def tar_bytes(members: list[Member]) -> bytes:
    """A GNU tar of ``members``, in the order given."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def long_name_entry(name: bytes) -> bytes:
    """A GNU ``././@LongLink`` entry naming ``name`` (tarfile writes one before a long name; a
    hostile archive chains them)."""
    info = tarfile.TarInfo("././@LongLink")
    info.type = tarfile.GNUTYPE_LONGNAME
    info.size = len(name) + 1
    data = name + b"\x00"
    return info.tobuf(tarfile.GNU_FORMAT) + data + bytes(-len(data) % 512)


def rle_frame(size: int) -> bytes:
    """A zstd frame of ``size`` zero bytes in RLE blocks: 4 bytes of frame per 128 KiB of data
    (a bomb: 2 GiB of zeros in 64 KB)."""
    block = 128 * 1024
    parts = [(0xFD2FB528).to_bytes(4, "little"), bytes([0x00, 0x38])]  # 128 KiB window
    for start in range(0, size, block):
        piece = min(block, size - start)
        last = int(start + block >= size)
        parts.append(((piece << 3) | (1 << 1) | last).to_bytes(3, "little") + b"\x00")
    return b"".join(parts)


def xyb_bytes(members: list[Member]) -> bytes:
    """A zstd-compressed GNU tar of ``members``, in the order given."""
    return zstandard.ZstdCompressor(level=3).compress(tar_bytes(members))


def bundle_members(model: str, version: str, target: str, files: dict[str, bytes]) -> list[Member]:
    """The members of a valid bundle: manifest first, then the files sorted by path."""
    manifest, _ = manifest_json(model, version, target, files)
    return [member("manifest.json", manifest)] + [member(p, files[p]) for p in sorted(files)]


def file_entries(files: dict[str, bytes]) -> tuple[FileEntry, ...]:
    """The descriptor's per-file entries."""
    return tuple(
        FileEntry(path, len(data), blake3.blake3(data).hexdigest())
        for path, data in sorted(files.items())
    )


def publish(
    root: Path,
    model: str,
    version: str,
    target: str,
    files: dict[str, bytes] | None = None,
    *,
    members: list[Member] | None = None,
    blob: bytes | None = None,
) -> BundleDescriptor:
    """Write a blob and its descriptor under ``root``; returns the full descriptor.

    ``files`` are what the descriptor lists; ``members`` or ``blob`` (raw bytes) replace the
    archive built from them, to publish hostile bundles whose download still verifies.
    """
    files = files if files is not None else {"model.bin": f"{model} {version} {target}".encode()}
    if blob is None:
        blob = xyb_bytes(members or bundle_members(model, version, target, files))
    digest = blake3.blake3(blob).hexdigest()
    descriptor = BundleDescriptor(
        id=model,
        version=version,
        target=target,
        hash=digest,
        size_bytes=len(blob),
        location=Location("remote", blob_key(digest)),
        sha256=hashlib.sha256(blob).hexdigest(),
        files=file_entries(files),
        description=f"{model} test bundle",
    )
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / blob_key(digest)).write_bytes(blob)
    path = root / descriptor_key(model, version, target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_pretty(descriptor))
    return descriptor


def index_documents(
    descriptors: list[BundleDescriptor], aliases: dict[str, dict[str, str]] | None = None
) -> dict[str, bytes]:
    """Store key -> bytes of ``index.json`` (format 2) and the shards of ``descriptors``."""
    grouped: dict[str, list[BundleDescriptor]] = {}
    for d in descriptors:
        grouped.setdefault(d.id, []).append(d)
    documents, entries = {}, {}
    for model, found in sorted(grouped.items()):
        shard = merge_shard(None, model, found)
        data = shard_bytes(shard)
        entries[model] = model_entry(shard, data, (aliases or {}).get(model, {}))
        documents[shard_key(model, entries[model].shard.hash)] = data
    documents["index.json"] = encode(Index(models=entries))
    return documents


def write_index(
    root: Path | Store,
    descriptors: list[BundleDescriptor],
    aliases: dict[str, dict[str, str]] | None = None,
) -> None:
    """Write ``index.json`` naming the shards of ``descriptors`` (as index entries), and those
    shards, into a directory or a store."""
    store = root if not isinstance(root, Path) else LocalStore(root)
    for key, data in index_documents(descriptors, aliases).items():
        store.put(key, data)


def write_alias(root: Path, model: str, alias: str, version: str, seq: int = 1) -> None:
    """Point ``model@alias`` at ``version``: its pointer, and the alias map of ``index.json``."""
    path = root / alias_pointer_key(model, alias)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_pretty(AliasPointer(model, alias, version, seq, "0" * 64)))
    index_path = root / "index.json"
    if index_path.is_file():
        index = msgspec.json.decode(index_path.read_bytes(), type=Index)
        entry = index.models[model]
        mapped = msgspec.structs.replace(entry, aliases={**entry.aliases, alias: version})
        index_path.write_bytes(
            encode(msgspec.structs.replace(index, models={**index.models, model: mapped}))
        )


DEMO_TARGETS = ("linux-x86_64", "macos-arm64", "universal")


def demo_registry(root: Path) -> dict[tuple[str, str, str], BundleDescriptor]:
    """tiny 1.0 / 1.2 / 1.10 (1.2 for several targets), alias stable -> 1.2; mac-only 2.0."""
    published = [
        publish(root, "tiny", "1.0", "universal"),
        *(publish(root, "tiny", "1.2", t) for t in DEMO_TARGETS),
        publish(root, "tiny", "1.10", "universal"),
        publish(root, "mac-only", "2.0", "macos-arm64"),
    ]
    write_index(root, published)
    write_alias(root, "tiny", "stable", "1.2")
    return {d.key: d for d in published}


def whisper_registry(root: Path) -> LocalStore:
    """whisper 1.0 and 1.1 (universal) in a directory."""
    store = LocalStore(root)
    bundles = []
    for version in ("1.0", "1.1"):
        data = f"whisper {version}".encode() * 100
        digest = blake3.blake3(data).hexdigest()
        store.put(blob_key(digest), data)
        location = Location(url=blob_key(digest))
        bundles.append(
            BundleDescriptor("whisper", version, "universal", digest, len(data), location)
        )
    write_index(store, bundles)
    return store


def shard_path(root: Path, model: str) -> str:
    """The key of the shard that ``index.json`` names for ``model``."""
    index = msgspec.json.decode((root / "index.json").read_bytes(), type=Index)
    return shard_key(model, index.models[model].shard.hash)


def rename_shard(root: Path, model: str, data: bytes) -> str:
    """Store ``data`` as the shard of ``model`` and point ``index.json`` at it (its digest and
    size, so it verifies whatever it holds); returns its key."""
    index = msgspec.json.decode((root / "index.json").read_bytes(), type=Index)
    ref = ShardRef(blake3.blake3(data).hexdigest(), len(data))
    entry = msgspec.structs.replace(index.models[model], shard=ref)
    models = {**index.models, model: entry}
    (root / "index.json").write_bytes(encode(msgspec.structs.replace(index, models=models)))
    key = shard_key(model, ref.hash)
    (root / key).parent.mkdir(parents=True, exist_ok=True)
    (root / key).write_bytes(data)
    return key
