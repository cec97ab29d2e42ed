"""Signed registries for tests: keys, a signed publish, a client that verifies from a pinned root,
a store that records the requests made through it, and the three places a registry is read from
(a directory, moto's S3 server, ``python -m http.server``)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import pytest

from registry_build.commit import Options
from registry_build.publish import PublishReport
from runtime.client.cache import Cache
from runtime.client.registry import Registry
from runtime.errors import KeyNotFound
from runtime.storage.local import LocalStore
from runtime.storage.s3 import S3Store
from runtime.storage.store import NotModified, ObjectInfo, PutMode, Store
from runtime.trust.keys import ONLINE_KEY, ROOT_JSON, Signing, init_keys, load_root, load_signing
from support.sources import QUIET, bundles, make_source, publish


@dataclass(frozen=True)
class Keys:
    """A keys directory as ``keys init`` writes it, and the signing it gives (with the root to
    install)."""

    directory: Path

    @property
    def root_file(self) -> Path:
        return self.directory / ROOT_JSON

    @property
    def online_file(self) -> Path:
        return self.directory / ONLINE_KEY

    @property
    def signing(self) -> Signing:
        return load_signing(str(self.online_file), self.root_file)

    def copy(self, directory: Path) -> Keys:
        """The same keys in ``directory`` (for a test that rotates them)."""
        shutil.copytree(self.directory, directory)
        return Keys(directory)


def make_keys(directory: Path) -> Keys:
    """A root key, an online key and root version 1 in ``directory``."""
    init_keys(directory)
    return Keys(directory)


@dataclass
class Site:
    """Where a test publishes and attacks (``store``) and what a client reads (``location``, and
    the store to read it with, when the client should not open one itself)."""

    store: Store
    location: str
    reader: Store | None = None
    sources: Path = field(default_factory=Path)
    published: int = 0

    def publish(self, keys: Keys | None, *versions: int, options: Options = QUIET) -> PublishReport:
        """Publish one universal bundle of ``tiny`` per version, signed with ``keys``."""
        self.published += 1
        src = make_source(self.sources / f"src{self.published}", bundles("tiny", versions))
        signed = replace(options, signing=keys.signing) if keys else options
        return publish(src, self.store, signed)

    def client(self, cache: Path, keys: Keys | None, reader: Store | None = None) -> Registry:
        """A client of the site that verifies from the root of ``keys`` (version 1, as pinned)."""
        root = load_root(keys.root_file) if keys is not None else None
        found = reader or self.reader
        return Registry(self.location, cache=Cache(cache), store=found, trust=root, progress=False)


def open_site(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Site:
    """A fresh site of ``kind``: "dir", "s3" (moto's server) or "http" (http.server over a
    directory, which the test writes to)."""
    sources = tmp_path / "sources"
    if kind == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        endpoint = request.getfixturevalue("moto_endpoint")
        store = S3Store.from_url(f"s3://{bucket}/reg", endpoint_url=endpoint)
        return Site(store, store.location, store, sources)
    root = tmp_path / "site"
    root.mkdir()
    store = LocalStore(root)
    if kind == "dir":
        return Site(store, str(root), None, sources)
    serve: Callable[[Path], str] = request.getfixturevalue("http_server")
    return Site(store, serve(root), None, sources)


class Recording:
    """A store that notes each read through it: (key, status) with 200, 304 or 404."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.location = inner, inner.location
        self.reads: list[tuple[str, int]] = []

    def take(self) -> list[tuple[str, int]]:
        seen, self.reads = self.reads, []
        return seen

    def get(
        self, key: str, if_none_match: str | None = None, limit: int | None = None
    ) -> tuple[bytes, str]:
        try:
            found = self.inner.get(key, if_none_match, limit)
        except NotModified:
            self.reads.append((key, 304))
            raise
        except KeyNotFound:
            self.reads.append((key, 404))
            raise
        self.reads.append((key, 200))
        return found

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        try:
            context = self.inner.open(key)
            reader = context.__enter__()
        except KeyNotFound:
            self.reads.append((key, 404))
            raise
        self.reads.append((key, 200))
        try:
            yield reader
        finally:
            context.__exit__(None, None, None)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def put(
        self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        return self.inner.put(key, data, mode, etag)

    def put_file(
        self, key: str, path: Path, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        return self.inner.put_file(key, path, mode, etag)


def keys_of(store: Store, prefix: str = "") -> list[str]:
    """Every key under ``prefix``."""
    return [info.key for info in store.list(prefix)]


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes): what a client has cached."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }
