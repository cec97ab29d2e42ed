"""Benchmark 3 of the build: the index for 100,000 descriptors (``bench.pages`` adds the pages).

Targets: index.json and the shards <= 450 bytes per descriptor; with the pages, <= 3 s in all
(``bench.scale`` measures what a client and a publisher move at this size).
Peer in the same run: a Helm-style `index.yaml` of the same entries written with PyYAML
(what `helm repo index` produces), timed and sized the same way.

    python -m bench.index [--descriptors 100000]
"""

from __future__ import annotations

import argparse
import time

import yaml

from bench._util import row
from registry_build.index import Catalog, outside_documents
from registry_build.state import Published, Shards, build_state, shards_from
from runtime.registry.wire import BundleDescriptor, FileEntry, Index, Location, blob_key, encode
from runtime.storage.memory import MemoryStore

TARGETS = ("linux-x86_64", "linux-arm64", "macos-arm64", "android-arm64", "universal")


def descriptors(count: int) -> list[BundleDescriptor]:
    """``count`` realistic descriptors: models x 4 versions x 5 targets."""
    out = []
    for i in range(count):
        model, rest = divmod(i, 20)
        version, target = divmod(rest, 5)
        digest = f"{i:064x}"
        out.append(
            BundleDescriptor(
                id=f"model-{model:05d}",
                version=f"1.{version}.0",
                target=TARGETS[target],
                hash=digest,
                size_bytes=123_456_789 + i,
                location=Location("remote", blob_key(digest)),
                sha256=f"{i:064x}",
                model_type="gguf",
                files=(FileEntry("model.gguf", 123_456_000, f"{i:064x}"),),
                description=f"Model {model}: a small language model",
                created_at="2026-11-22T08:00:00Z",
                metadata={
                    "architecture": "llama",
                    "quantization": "Q4_K_M",
                    "license": "apache-2.0",
                    "parameter_count": 1_000_000_000,
                    "context_length": 8192,
                },
            )
        )
    return out


def catalog(items: list[BundleDescriptor]) -> tuple[Index, dict[str, bytes], Catalog]:
    """index.json, the shards (key -> bytes) and the catalog of ``items``, as reindex makes them."""
    made = shards_from(items)
    state = build_state(made, {}, Shards(MemoryStore()), Published())
    return state.index, state.unwritten, Catalog.of(state.index, {s.model: s for s in made})


def helm_yaml(items: list[BundleDescriptor]) -> bytes:
    entries: dict[str, list[dict[str, object]]] = {}
    for d in items:
        entries.setdefault(d.id, []).append({
            "name": d.id, "version": d.version, "description": d.description, "digest": d.sha256,
            "urls": [d.location.url], "created": d.created_at, "annotations": {"target": d.target},
        })  # fmt: skip
    return yaml.dump({"apiVersion": "v1", "entries": entries}, Dumper=yaml.CSafeDumper).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--descriptors", type=int, default=100_000)
    args = parser.parse_args()
    items = descriptors(args.descriptors)
    start = time.perf_counter()
    index, shards, whole = catalog(items)
    documents = {"index.json": encode(index), **shards, **outside_documents(whole)}
    index_s = time.perf_counter() - start
    metadata = len(documents["index.json"]) + sum(map(len, shards.values()))
    start = time.perf_counter()
    helm = helm_yaml(items)
    helm_s = time.perf_counter() - start
    n = args.descriptors
    print(f"Index for {n:,} descriptors (the pages: bench.pages)")
    row("shards + index.json/index/v1/models", f"{index_s:.2f} s")
    row("index.json + shards bytes per descriptor (target <= 450)", f"{metadata / n:.0f}")
    row(
        "peer: Helm-style index.yaml (PyYAML C dumper)",
        f"{helm_s:.2f} s, {len(helm) / n:.0f} B/entry",
    )
    row("ratio index time / peer", f"{index_s / helm_s:.2f}x")


if __name__ == "__main__":
    main()
