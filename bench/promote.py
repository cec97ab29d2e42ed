"""Benchmark: alias promotion latency with 1, 4 and 16 racing promoters, on moto's S3 server and
on a directory.

Ours: :func:`runtime.aliases.promote` (create-only record, then compare-and-swap of the pointer,
then index.json's alias map and the derived view), on an unsigned registry and on a signed one
(the map is then a signed commit). Peer in the same run, over the same store: a naive
last-writer-wins promotion, what MLflow's ``set_registered_model_alias`` amounts to: read the
pointer, then overwrite it with the new version and the promotion appended to the history it
read. Its lost updates are the promotions that reported success but are missing from the final
file.

Each promoter is a separate process (released together) that counts the requests it makes
through the store, by what they touch: ``alias`` (records and the pointer: the protocol),
``index`` (index.json's alias map), ``view`` (aliases/<id>/index.json) and ``other`` (the
shard read to check the version, TUF metadata). moto runs in this process on loopback, with
requests applied one at a time as S3 applies conditional writes atomically.

    python -m bench.promote [--each 10] [--promoters 1,4,16] [--stores s3,dir]
                            [--variants ours,signed,naive]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import blake3

from bench._util import AWS_ENV, moto_server, row, scratch
from runtime.aliases import AliasConflict, promote_detailed
from runtime.registry.wire import BundleDescriptor, Location, alias_index_key, blob_key
from runtime.storage.location import open_store
from runtime.storage.store import ObjectInfo, PutMode, Store

if TYPE_CHECKING:
    from runtime.trust.keys import Signing

MODEL, ALIAS = "whisper", "production"
VERSIONS = ("1.0", "1.1", "1.2")
KINDS = ("alias", "index", "view", "other")


def kind_of(key: str) -> str:
    """What a request touches (module notes)."""
    if key == alias_index_key(MODEL):
        return "view"
    if key.startswith(f"aliases/{MODEL}/"):
        return "alias"
    return "index" if key == "index.json" else "other"


class Counted:
    """A store that counts the requests made through it: (read or write, kind of key)."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.location = inner, inner.location
        self.counts: Counter[tuple[str, str]] = Counter()

    def _note(self, op: str, key: str) -> None:
        self.counts[(op, kind_of(key))] += 1

    def get(
        self, key: str, if_none_match: str | None = None, limit: int | None = None
    ) -> tuple[bytes, str]:
        self._note("read", key)
        return self.inner.get(key, if_none_match, limit)

    def head(self, key: str) -> ObjectInfo:
        self._note("read", key)
        return self.inner.head(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._note("read", prefix)
        return self.inner.list(prefix)

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        self._note("read", key)
        with self.inner.open(key) as handle:
            yield handle

    def delete(self, key: str) -> None:
        self._note("write", key)
        self.inner.delete(key)

    def put(
        self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        self._note("write", key)
        return self.inner.put(key, data, mode, etag)

    def put_file(
        self, key: str, path: Path, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        self._note("write", key)
        return self.inner.put_file(key, path, mode, etag)


@dataclass(frozen=True)
class Site:
    """Where one round promotes: a fresh registry, and the online key of a signed one."""

    location: str
    endpoint: str | None
    key: str | None = None


def publish_index(store: Store, keys: Path | None) -> None:
    """An index.json with three versions of one model, signed with the keys in ``keys`` when
    given (promotion reads only the index and the model's shard)."""
    from registry_build.commit import Options, commit
    from runtime.trust.keys import load_signing

    bundles = []
    for version in VERSIONS:
        digest = blake3.blake3(version.encode()).hexdigest()
        location = Location(url=blob_key(digest))
        bundles.append(BundleDescriptor(MODEL, version, "universal", digest, 1, location))
    signing = load_signing(str(keys / "online.key"), keys / "root.json") if keys else None
    commit(store, bundles, options=Options(signing=signing))


def ours(store: Store, version: str, actor: str, reason: str, signing: Signing | None) -> int:
    """One promotion through the protocol; returns the races it lost."""
    return promote_detailed(store, MODEL, ALIAS, version, actor, reason, signing=signing).retries


def naive(store: Store, version: str, actor: str, reason: str, signing: Signing | None) -> int:
    """Last writer wins: read the pointer, overwrite it with the promotion appended."""
    key = f"aliases/{MODEL}/{ALIAS}.json"
    try:
        state = json.loads(store.get(key)[0])
    except FileNotFoundError:
        state = {"history": []}
    entry = {"version": version, "previous": state.get("version"), "actor": actor, "reason": reason}
    state = {"version": version, "history": [*state["history"], entry]}
    store.put(key, json.dumps(state).encode(), PutMode.OVERWRITE)
    return 0


VARIANTS: dict[str, Callable[[Store, str, str, str, Signing | None], int]] = {
    "ours": ours,
    "signed": ours,
    "naive": naive,
}


def promoter(variant: str, site: Site, tag: str, each: int, barrier: Any, out: Any) -> None:
    """A process: wait for the others, promote ``each`` times, report (reason, seconds,
    retries) per promotion and the requests made."""
    from runtime.trust import signing_from

    os.environ.update(AWS_ENV)
    store = Counted(open_store(site.location, endpoint_url=site.endpoint))
    signing = signing_from(site.key) if site.key else None
    barrier.wait()
    results = []
    for i in range(each):
        reason = f"{tag}-{i}"
        start = time.perf_counter()
        try:
            retries = VARIANTS[variant](store, VERSIONS[i % 3], tag, reason, signing)
            results.append((reason, time.perf_counter() - start, retries))
        except AliasConflict:
            results.append((reason, time.perf_counter() - start, -1))
    out.put((results, dict(store.counts)))


def race(variant: str, site: Site, promoters: int, each: int) -> dict[str, float]:
    """One round: p50/p99 (ms), retries, failures, lost updates, requests per promotion."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(promoters), ctx.Queue()
    procs = [
        ctx.Process(target=promoter, args=(variant, site, f"p{n}", each, barrier, out))
        for n in range(promoters)
    ]
    for proc in procs:
        proc.start()
    reports = [out.get(timeout=900) for _ in procs]
    for proc in procs:
        proc.join()
    results = [item for found, _ in reports for item in found]
    counts: Counter[tuple[str, str]] = Counter()
    for _, seen in reports:
        counts.update(seen)
    ok = [r for r in results if r[2] >= 0]
    latencies = sorted(r[1] * 1000 for r in results)
    store = open_store(site.location, endpoint_url=site.endpoint)
    calls = len(results)
    figures = {
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
        "retries": sum(r[2] for r in ok),
        "failed": len(results) - len(ok),
        "lost": lost_updates(variant, store, {r[0] for r in ok}),
    }
    for (op, kind), n in counts.items():
        figures[op] = figures.get(op, 0) + n / calls
        figures[kind] = figures.get(kind, 0) + n / calls
    return figures


def lost_updates(variant: str, store: Store, succeeded: set[str]) -> float:
    """Promotions that reported success but left no trace (ours: no record; naive: no entry)."""
    if variant != "naive":
        from runtime.aliases import history

        return len(succeeded - {r.reason for r in history(store, MODEL, ALIAS)})
    state = json.loads(store.get(f"aliases/{MODEL}/{ALIAS}.json")[0])
    return len(succeeded - {e["reason"] for e in state["history"]})


class Sites:
    """Fresh registries of one kind ("s3" on the moto server, "dir" under a scratch folder)."""

    def __init__(self, kind: str, work: Path, endpoint: str | None) -> None:
        self.kind, self.work, self.endpoint = kind, work, endpoint

    def fresh(self, signed: bool) -> Site:
        """A new registry holding the index (signed with the keys under ``work`` if asked)."""
        name = f"bench-{uuid.uuid4().hex[:10]}"
        if self.kind == "s3":
            import boto3

            boto3.client("s3", endpoint_url=self.endpoint).create_bucket(Bucket=name)
            location = f"s3://{name}/registry"
        else:
            location = str(self.work / name)
        keys = self.work / "keys" if signed else None
        publish_index(open_store(location, endpoint_url=self.endpoint), keys)
        return Site(location, self.endpoint, str(keys / "online.key") if keys else None)


def report(variant: str, f: dict[str, float], calls: int) -> None:
    """The rows of one variant."""
    row(f"{variant:<6} p50 / p99 latency", f"{f['p50']:7.1f} ms / {f['p99']:7.1f} ms")
    row(
        f"{variant:<6} retries / failed / lost updates",
        f"{f['retries']:.0f} / {f['failed']:.0f} / {f['lost']:.0f} of {calls}",
    )
    total = f.get("read", 0) + f.get("write", 0)
    row(
        f"{variant:<6} requests per promotion (reads + writes)",
        f"{total:5.1f} ({f.get('read', 0):.1f} + {f.get('write', 0):.1f})",
    )
    if variant != "naive":
        parts = ", ".join(f"{k} {f.get(k, 0):.1f}" for k in KINDS)
        row(f"{variant:<6}   of which", parts)


def level(sites: Sites, variants: list[str], promoters: int, each: int) -> None:
    """Every variant at one concurrency level, then the ratios to the naive peer."""
    calls = promoters * each
    print(f"\n{sites.kind}: {promoters} concurrent promoter(s), {calls} promotions")
    figures = {}
    for variant in variants:
        site = sites.fresh(signed=variant == "signed")
        figures[variant] = race(variant, site, promoters, each)
        report(variant, figures[variant], calls)
    peer = figures.get("naive")
    for variant in (v for v in figures if v != "naive" and peer):
        o = figures[variant]
        assert peer is not None
        row(
            f"ratio {variant}/naive p50, p99",
            f"{o['p50'] / peer['p50']:.2f}x, {o['p99'] / peer['p99']:.2f}x",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--each", type=int, default=10, help="promotions per promoter")
    parser.add_argument("--promoters", default="1,4,16", help="comma-separated concurrency levels")
    parser.add_argument("--stores", default="s3,dir", help="comma-separated: s3, dir")
    parser.add_argument("--variants", default="ours,signed,naive", help="ours, signed, naive")
    args = parser.parse_args()
    levels = [int(n) for n in args.promoters.split(",")]
    variants = [v for v in args.variants.split(",") if v in VARIANTS]
    print(f"alias promotion, {args.each} promotions per promoter; load {os.getloadavg()[0]:.1f}")
    with scratch("promote") as work, moto_server() as (endpoint, _):
        from runtime.trust.keys import init_keys

        init_keys(work / "keys")
        for kind in args.stores.split(","):
            sites = Sites(kind, work, endpoint if kind == "s3" else None)
            for promoters in levels:
                level(sites, variants, promoters, args.each)


if __name__ == "__main__":
    main()
