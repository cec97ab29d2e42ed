"""Built registry directories for publish tests (a blob and a descriptor per bundle), stand-in
pages, and the consistency check every publish, commit and reindex test ends with."""

from __future__ import annotations

import hashlib
import os
import traceback
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import blake3

from registry_build.commit import Options
from registry_build.index import Catalog, outside_documents
from registry_build.publish import PublishReport, publish_registry
from registry_build.render import ModelView, model_views
from runtime.aliases.view import read_view
from runtime.registry.index import load_index, read_shard
from runtime.registry.wire import (
    AliasIndex,
    BundleDescriptor,
    Index,
    Location,
    blob_key,
    descriptor_key,
    encode_pretty,
)
from runtime.storage.store import Store

Bundle = tuple[str, str, str, bytes]  # model, version, target, payload


def make_source(root: Path, bundles: list[Bundle]) -> Path:
    """A built registry directory: a blob and a descriptor per bundle."""
    for model, version, target, payload in bundles:
        digest = blake3.blake3(payload).hexdigest()
        blob = root / blob_key(digest)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(payload)
        descriptor = BundleDescriptor(
            id=model,
            version=version,
            target=target,
            hash=digest,
            size_bytes=len(payload),
            location=Location("remote", blob_key(digest)),
            sha256=hashlib.sha256(payload).hexdigest(),
            description=f"{model} model",
            created_at="2026-11-22T08:00:00Z",
        )
        path = root / descriptor_key(model, version, target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_pretty(descriptor))
    return root


def bundles(model: str, versions: range, size: int = 2000) -> list[Bundle]:
    """One universal bundle per version with distinct random bytes."""
    return [(model, f"1.{v}", "universal", os.urandom(size)) for v in versions]


class StandIn:
    """A small stand-in for the browse pages: a list page and a page per model (whole or in part
    alike, as the real pages are)."""

    def site(
        self, catalog: Catalog, aliases: Mapping[str, AliasIndex], *, split: bool
    ) -> dict[str, bytes]:
        return {**self.front(model_views(catalog, aliases)), **self.models(catalog, aliases)}

    def models(self, catalog: Catalog, aliases: Mapping[str, AliasIndex]) -> dict[str, bytes]:
        return {
            f"models/{m.id}.html": f"<h1>{m.id}</h1>{len(m.versions)} {aliases.get(m.id)}".encode()
            for m in model_views(catalog, aliases)
        }

    def front(self, rows: list[ModelView]) -> dict[str, bytes]:
        text = "".join(
            f"<li>{m.id}@{m.latest} {m.version_count} {list(m.badges)} {m.default}" for m in rows
        )
        return {"index.html": text.encode()}


pages = StandIn()
QUIET = Options(pages=pages)


def catalog_of(store: Store) -> tuple[Index, Catalog]:
    """The store's index.json and the catalog of every shard it names."""
    index = load_index(store)
    shards = {m: read_shard(store, m, e.shard)[0] for m, e in index.models.items()}
    return index, Catalog.of(index, shards)


def assert_consistent(store: Store, xybrid_index: bool = True, blobs: bool = True) -> Catalog:
    """index, v1/models and pages derive from index.json, its shards and the alias views (and
    index.json names the digests of the first two); every blob it names is complete (unless the
    test made up its digests: ``blobs=False``)."""
    index, catalog = catalog_of(store)
    outside = outside_documents(catalog, xybrid_index)
    assert index.documents == {k: blake3.blake3(v).hexdigest() for k, v in outside.items()}
    views = {m: v for m in index.models if (v := read_view(store, m)[0]) and v.aliases}
    for key, expected in {**outside, **pages.site(catalog, views, split=True)}.items():
        assert store.get(key)[0] == expected, key
    for entry in catalog.bundles if blobs else ():
        blob, _ = store.get(blob_key(entry.hash))
        assert (len(blob), blake3.blake3(blob).hexdigest()) == (entry.size_bytes, entry.hash)
    return catalog


def publish(src: Path, store: Store, options: Options = QUIET) -> PublishReport:
    """Publish the built registry ``src`` to ``store`` with the stand-in pages, quietly."""
    return publish_registry(src, store, progress=False, options=options)


def fork(work: Callable[[], object]) -> int:
    """Run ``work`` in a forked child (cheap: everything is imported already); its pid."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads running
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            work()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid
