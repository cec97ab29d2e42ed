"""Benchmark: S3 requests to re-publish 200 bundles, unchanged and with one new version.

Targets: re-publishing 200 unchanged bundles <= 3 requests; publishing one new version of one
model: 1 blob upload and <= 5 other requests.

Ours: :func:`registry_build.publish.publish_registry` of a directory built by
:func:`registry_build.build.build`. Peer in the same run, from the same directory into another
prefix of the same bucket: ``aws s3 sync SRC s3://bucket/prefix``, after ``touch``ing every file
of SRC (what a fresh checkout and build in CI leaves), and ``aws s3 sync --size-only`` (which skips
a changed file whose size stayed the same).

moto's S3 server runs on loopback with requests applied one at a time (S3's atomic conditional
writes). Requests are counted three ways that must agree for ours: ``PublishReport.requests`` (the
store's own count), a botocore ``before-send`` handler on the injected client, and a counting WSGI
layer in front of moto, which is the only count for the aws CLI.

    python -m bench.publish [--bundles 200] [--size 4096]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._util import AWS_ENV, MotoLog, moto_server, row, scratch

BUCKET = "bench-publish"


def labelled(seen: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """(method, key relative to its prefix) per request; LIST for a bucket listing."""
    found = []
    for method, path, query in seen:
        if "list-type" in query or path.rstrip("/") == f"/{BUCKET}":
            found.append((method, "LIST"))
        else:
            found.append((method, path.removeprefix(f"/{BUCKET}/").partition("/")[2]))
    return found


# -- the registry ----------------------------------------------------------------------------------


def model_bytes(i: int, version: str, size: int) -> bytes:
    """Distinct, deterministic content for model ``i`` at ``version``."""
    seed = hashlib.sha256(f"{i}:{version}".encode()).digest()
    return b"GGUF" + (seed * (size // len(seed) + 1))[: size - 4]


def write_config(root: Path, count: int, size: int, changed: int | None = None) -> Path:
    """A bundles.json of ``count`` one-target models at 1.0; model ``changed`` at 1.1 instead."""
    (root / "src").mkdir(parents=True, exist_ok=True)
    bundles = {}
    for i in range(count):
        name, version = f"model-{i:03d}", "1.1" if i == changed else "1.0"
        source = root / "src" / f"{name}-{version}.gguf"
        if not source.exists():
            source.write_bytes(model_bytes(i, version, size))
        bundles[name] = {
            "model_id": name, "version": version, "description": f"Model {i}",
            "targets": [{"platform": "universal", "model_file": "model.gguf",
                         "model_type": "gguf", "source_path": f"src/{source.name}"}],
        }  # fmt: skip
    path = root / "bundles.json"
    path.write_text(json.dumps({"bundles": bundles}, indent=1))
    return path


def build_site(root: Path, count: int, size: int, changed: int | None = None) -> Path:
    """Build (incrementally) the registry of :func:`write_config` into ``root/site``."""
    from registry_build.build import BuildOptions, build

    site = root / "site"
    build(write_config(root, count, size, changed), str(site), BuildOptions(progress=False))
    return site


def touch(site: Path) -> None:
    """New mtimes on every file, as a fresh checkout and build leave them."""
    now = time.time()
    for path in site.rglob("*"):
        if path.is_file():
            os.utime(path, (now, now))


# -- the publishers ------------------------------------------------------------------------------


@dataclass
class Run:
    """What one publish cost: requests seen by the server, and by the publisher where it counts."""

    label: str
    seen: list[tuple[str, str]]
    seconds: float
    reported: int | None = None  # PublishReport.requests
    events: int | None = None  # botocore before-send events on our client

    @property
    def blob_puts(self) -> int:
        return sum(m == "PUT" and k.startswith("blobs/") for m, k in self.seen)

    @property
    def other(self) -> int:
        return len(self.seen) - self.blob_puts


def ours(site: Path, endpoint: str, server: MotoLog, prefix: str, label: str) -> Run:
    """publish_registry with a fresh client, as each CI run has."""
    from registry_build.publish import publish_registry
    from runtime.storage.s3 import S3Store, make_client

    client = make_client(endpoint)
    events = [0]

    def count(**_: Any) -> None:
        events[0] += 1

    client.meta.events.register("before-send.s3", count)
    store = S3Store(client, BUCKET, prefix)
    server.take()
    start = time.perf_counter()
    report = publish_registry(site, store)
    seconds = time.perf_counter() - start
    return Run(label, labelled(server.take()), seconds, report.requests, events[0])


def peer(site: Path, endpoint: str, server: MotoLog, args: list[str], label: str) -> Run:
    """``aws s3 sync site s3://BUCKET/...`` with ``args``, counted at the server."""
    command = ["aws", "s3", "sync", str(site), *args, "--endpoint-url", endpoint,
               "--only-show-errors", "--no-progress"]  # fmt: skip
    env = {**os.environ, **AWS_ENV, "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull}  # fmt: skip
    server.take()
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True)
    return Run(label, labelled(server.take()), time.perf_counter() - start)


def verified(endpoint: str, prefix: str) -> str:
    """``registry-build verify`` of ours, as the publish workflow runs it after publishing."""
    from registry_build.maintenance import verify
    from runtime.storage.s3 import S3Store, make_client

    checked, problems = verify(S3Store(make_client(endpoint), BUCKET, prefix))
    return f"{checked} blobs, {len(problems)} problems"


# -- report --------------------------------------------------------------------------------------


def counts(run: Run) -> str:
    agree = ""
    if run.reported is not None:
        same = run.reported == run.events == len(run.seen)
        agree = "; report/events/server agree" if same else (
            f"; MISMATCH report {run.reported}, events {run.events}, server {len(run.seen)}"
        )  # fmt: skip
    return (
        f"{len(run.seen):4d} requests ({run.blob_puts} blob uploads, {run.other} other), "
        f"{run.seconds:.2f} s{agree}"
    )


def breakdown(run: Run) -> str:
    """The requests besides blob uploads, e.g. ``GET index.json, LIST, PUT index``."""
    other = [k if k == "LIST" else f"{m} {k}" for m, k in run.seen
             if not (m == "PUT" and k.startswith("blobs/"))]  # fmt: skip
    return ", ".join(other)


def ratio(peer_run: Run, our_run: Run) -> str:
    return f"{len(peer_run.seen) / max(1, len(our_run.seen)):.1f}x our requests"


def peer_rows(run: Run, ours_run: Run) -> None:
    row(f"peer: {run.label}", counts(run))
    if run.other <= 12:
        row("  requests besides blobs", breakdown(run))
    row("  ratio", ratio(run, ours_run))


PEERS = {
    "aws s3 sync": ["peer"],
    "aws s3 sync --size-only": ["peer-size-only", "--size-only"],
}


def publish_all(site: Path, endpoint: str, server: MotoLog, aws: bool) -> list[Run]:
    """Ours, then each peer (when the aws CLI is there), from ``site`` after touching it."""
    touch(site)
    runs = [ours(site, endpoint, server, "ours", "ours")]
    for label, (prefix, *flags) in PEERS.items() if aws else ():
        runs.append(peer(site, endpoint, server, [f"s3://{BUCKET}/{prefix}", *flags], label))
    return runs


Measured = tuple[list[Run], list[Run], list[Run], str]


def measure(root: Path, count: int, size: int, aws: bool) -> Measured:
    """First publish, (a) re-publish unchanged, (b) one new version; and verify ours after."""
    with moto_server() as (endpoint, server):
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        site = build_site(root, count, size)
        first = publish_all(site, endpoint, server, aws)
        again = publish_all(site, endpoint, server, aws)
        one = publish_all(build_site(root, count, size, changed=0), endpoint, server, aws)
        return first, again, one, verified(endpoint, "ours")


def verdict(met: bool) -> str:
    return "; target met" if met else "; target MISSED"


def report(count: int, size: int, first: list[Run], again: list[Run], one: list[Run]) -> None:
    print(f"Publish {count} bundles of {size} B to S3 (moto server on loopback, real HTTP);")
    print("the built directory is touched before each publish, as a fresh CI checkout leaves it")
    for run in first:
        row(f"first publish: {run.label}", counts(run))
    print(f" (a) re-publish, {count} bundles unchanged")
    row("ours (target <= 3 requests)", counts(again[0]) + verdict(len(again[0].seen) <= 3))
    row("  requests", breakdown(again[0]))
    for run in again[1:]:
        peer_rows(run, again[0])
    print(" (b) one model at a new version")
    met = one[0].blob_puts == 1 and one[0].other <= 5
    row("ours (target 1 blob upload, <= 5 other)", counts(one[0]) + verdict(met))
    row("  requests besides the blob", breakdown(one[0]))
    for run in one[1:]:
        peer_rows(run, one[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundles", type=int, default=200)
    parser.add_argument("--size", type=int, default=4096, help="bytes per model file")
    args = parser.parse_args()
    aws = shutil.which("aws") is not None
    with scratch("publish") as root:
        os.environ["XDG_CACHE_HOME"] = str(root / "cache")  # build state stays in the scratch dir
        first, again, one, check = measure(root, args.bundles, args.size, aws)
    report(args.bundles, args.size, first, again, one)
    row("ours: verify after (b)", check)
    if aws:
        print("  note: --size-only misses a changed file whose size stayed the same; neither sync")
        print("  orders blobs before the index nor compare-and-swaps index.json")
    else:
        print("  peer skipped: the aws CLI is not on PATH; `pip install awscli` (it pins botocore,")
        print("  so best in its own virtualenv) and run again to compare with `aws s3 sync`")


if __name__ == "__main__":
    main()
