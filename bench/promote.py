"""Benchmark: alias promotion latency against moto's S3 server, 1, 4 and 16 concurrent promoters.

Ours: :func:`runtime.aliases.promote` (create-only record, then compare-and-swap of the pointer,
then the derived view). Peer in the same run, over the same server: a naive last-writer-wins
promotion, what MLflow's ``set_registered_model_alias`` amounts to: read the pointer, then
overwrite it with the new version and the promotion appended to the history it read. Its lost
updates are the promotions that reported success but are missing from the final file.

Each promoter is a separate process (released together); moto runs in this process on loopback,
with requests applied one at a time as S3 applies conditional writes atomically.

    python -m bench.promote [--each 10] [--promoters 1,4,16]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import blake3

from bench._util import AWS_ENV, MotoLog, moto_server, row
from runtime.aliases import AliasConflict, promote_detailed
from runtime.registry.wire import BundleDescriptor, Location, blob_key
from runtime.storage.location import open_store
from runtime.storage.store import PutMode, Store

MODEL, ALIAS = "whisper", "production"
VERSIONS = ("1.0", "1.1", "1.2")


def publish_index(store: Store) -> None:
    """An index.json with three versions of one model (promotion reads only the index and the
    model's shard)."""
    from registry_build.commit import commit

    bundles = []
    for version in VERSIONS:
        digest = blake3.blake3(version.encode()).hexdigest()
        location = Location(url=blob_key(digest))
        bundles.append(BundleDescriptor(MODEL, version, "universal", digest, 1, location))
    commit(store, bundles)


def ours(store: Store, version: str, actor: str, reason: str) -> int:
    """One promotion through the protocol; returns the races it lost."""
    return promote_detailed(store, MODEL, ALIAS, version, actor, reason).retries


def naive(store: Store, version: str, actor: str, reason: str) -> int:
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


VARIANTS: dict[str, Callable[[Store, str, str, str], int]] = {"ours": ours, "naive": naive}


def promoter(
    variant: str, location: str, endpoint: str, tag: str, each: int, barrier: Any, out: Any
) -> None:
    """A process: wait for the others, promote ``each`` times, report (reason, seconds, retries)."""
    os.environ.update(AWS_ENV)
    store = open_store(location, endpoint_url=endpoint)
    barrier.wait()
    results = []
    for i in range(each):
        reason = f"{tag}-{i}"
        start = time.perf_counter()
        try:
            retries = VARIANTS[variant](store, VERSIONS[i % 3], tag, reason)
            results.append((reason, time.perf_counter() - start, retries))
        except AliasConflict:
            results.append((reason, time.perf_counter() - start, -1))
    out.put(results)


def run(variant: str, server: tuple[str, MotoLog], promoters: int, each: int) -> dict[str, float]:
    """One round on a fresh bucket: p50/p99 (ms), retries, failures, lost updates, requests."""
    endpoint, counter = server
    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    location = f"s3://{bucket}/registry"
    store = open_store(location, endpoint_url=endpoint)
    publish_index(store)
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(promoters), ctx.Queue()
    procs = [
        ctx.Process(
            target=promoter, args=(variant, location, endpoint, f"p{n}", each, barrier, out)
        )
        for n in range(promoters)
    ]
    for proc in procs:
        proc.start()
    counter.take()
    results = [item for _ in procs for item in out.get(timeout=600)]
    for proc in procs:
        proc.join()
    methods = [method for method, _, _ in counter.take()]
    reads = sum(m in ("GET", "HEAD") for m in methods)
    writes = len(methods) - reads
    ok = [r for r in results if r[2] >= 0]
    latencies = sorted(r[1] * 1000 for r in results)
    return {
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
        "retries": sum(r[2] for r in ok),
        "failed": len(results) - len(ok),
        "lost": lost_updates(variant, store, {r[0] for r in ok}),
        "reads": reads / len(results),
        "writes": writes / len(results),
    }


def lost_updates(variant: str, store: Store, succeeded: set[str]) -> float:
    """Promotions that reported success but left no trace (ours: no record; naive: no entry)."""
    if variant == "ours":
        from runtime.aliases import history

        return len(succeeded - {r.reason for r in history(store, MODEL, ALIAS)})
    state = json.loads(store.get(f"aliases/{MODEL}/{ALIAS}.json")[0])
    return len(succeeded - {e["reason"] for e in state["history"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--each", type=int, default=10, help="promotions per promoter")
    parser.add_argument("--promoters", default="1,4,16", help="comma-separated concurrency levels")
    args = parser.parse_args()
    levels = [int(n) for n in args.promoters.split(",")]
    with moto_server() as server:
        print(f"alias promotion against moto S3 at {server[0]}, {args.each} promotions/promoter")
        for promoters in levels:
            calls = promoters * args.each
            print(f"\n{promoters} concurrent promoter(s), {calls} promotions")
            figures = {v: run(v, server, promoters, args.each) for v in VARIANTS}
            for variant, f in figures.items():
                row(
                    f"{variant:<5} p50 / p99 latency",
                    f"{f['p50']:7.1f} ms / {f['p99']:7.1f} ms",
                )
                row(
                    f"{variant:<5} retries / failed / lost updates",
                    f"{f['retries']:.0f} / {f['failed']:.0f} / {f['lost']:.0f} of {calls}",
                )
                row(
                    f"{variant:<5} S3 reads / writes per promotion",
                    f"{f['reads']:.1f} / {f['writes']:.1f}",
                )
            o, n = figures["ours"], figures["naive"]
            row(
                "ratio ours/naive p50, p99",
                f"{o['p50'] / n['p50']:.2f}x, {o['p99'] / n['p99']:.2f}x",
            )


if __name__ == "__main__":
    main()
