"""Benchmark signed metadata (TUF) on the 100,000-descriptor registry of ``bench.scale``, signed and
unsigned side by side, with python-tuf's own ``Updater`` used bare as the peer.

The registry is ``bench.scale``'s (5,000 models x 5 versions x 4 targets, alias ``prod`` on
each), made by its generator; the signed copy is the same registry with a root installed and the
index signed (version 1). Requests and bytes are counted by nginx (its access log); wall time is
measured inside the process, each resolve by a new ``Registry`` (as a new CLI run would make).

=========================================  =====================================================
case                                       target (issue 13)
=========================================  =====================================================
warm resolve, nothing changed              signed <= 5 ms more than unsigned; one request (304)
cold resolve                               requests and bytes, signed and unsigned
publish one bundle, dir and S3, index off  signed <= 1.2x the unsigned wall time
python-tuf's bare ``Updater`` (the peer)   cold and warm: refresh + index.json, over nginx
=========================================  =====================================================

    python -m bench.trust [--models 5000] [--runs 15]   (needs nginx: apt-get install -y nginx)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import boto3

from bench._util import moto_server, row, scratch
from bench.fetch import nginx_binary
from bench.scale import (
    ALIAS,
    ASKED,
    PUBLISHED,
    AccessLog,
    Registry,
    descriptors,
    nginx,
    source,
    write,
)
from registry_build.commit import Options
from registry_build.publish import publish_registry
from runtime.client.cache import Cache
from runtime.client.registry import Registry as Client
from runtime.registry.head import IndexWriter, head_index, read_head
from runtime.storage.local import LocalStore
from runtime.storage.s3 import S3Store
from runtime.storage.store import Store
from runtime.trust.keys import Signing, TrustRoot, init_keys, load_signing

REF = f"{ASKED}@{ALIAS}"
MS = 1e3
KB = 1e3
UNSIGNED_OPTIONS = Options(xybrid_index=False)


def sign(store: Store, signing: Signing) -> None:
    """Install the root and sign the registry's index (version 1): what ``build --root`` does,
    without rendering the pages this registry has none of."""
    head = read_head(store)
    writer = IndexWriter(store, signing)
    writer.check(head)
    if writer.write(head, writer.encode(head, head_index(store, head))) is None:
        raise RuntimeError("signing the benchmark registry lost a race it cannot have")


def median_ms(runs: int, fn: Callable[[], object]) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * MS


def counted(requests: list[tuple[str, str, int, int]], runs: int = 1) -> str:
    """Requests and bytes sent per run, and what the first run asked for."""
    sent = sum(r[3] for r in requests) / runs
    first = requests[: len(requests) // runs]
    statuses = ", ".join(f"{p.rsplit('/', 1)[-1][:24]} {s}" for _, p, s, _ in first)
    each = " each" if runs > 1 else ""
    return f"{len(requests) / runs:g} requests, {sent / KB:,.1f} kB{each} ({statuses})"


# -- resolves --------------------------------------------------------------------------------


def resolves(base: str, log: AccessLog, work: Path, root: TrustRoot, runs: int) -> None:
    """Cold once each, then warm ``runs`` times each, signed and unsigned taking turns (so that
    both see the same load on the machine)."""
    print("Resolve model@alias against nginx (counted in its access log)")
    clients = {"unsigned": _resolver(base, work, "unsigned", None),
               "signed": _resolver(base, work, "signed", root)}  # fmt: skip
    for label, resolve in clients.items():
        log.take()
        cold = median_ms(1, resolve)
        row(f"{label}, cold", f"{counted(log.take())}, {cold:.1f} ms")
    timings: dict[str, list[float]] = {label: [] for label in clients}
    for n in range(runs):
        order = list(clients.items())
        for label, resolve in order if n % 2 else reversed(order):
            timings[label].append(median_ms(1, resolve))
    seen = log.take()
    warm = {label: statistics.median(found) for label, found in timings.items()}
    for label in clients:
        mine = [r for r in seen if r[1].startswith(f"/{label}/")]
        row(f"{label}, warm (median of {runs})", f"{counted(mine, runs)}, {warm[label]:.2f} ms")
    extra = warm["signed"] - warm["unsigned"]
    row("signed - unsigned, warm", f"{extra:+.2f} ms (target: <= 5 ms)")


def _resolver(base: str, work: Path, label: str, trust: TrustRoot | None) -> Callable[[], None]:
    """A resolve of :data:`REF` by a new client of ``base/label``, as a new CLI run makes one."""
    cache = Cache(work / f"cache-{label}")

    def resolve() -> None:
        Client(f"{base}/{label}", cache=cache, trust=trust, progress=False).resolve(
            REF, "universal"
        )

    return resolve


def bare_updater(base: str, log: AccessLog, root: TrustRoot, runs: int) -> None:
    """python-tuf's Updater as its documentation uses it: its own urllib3 fetcher, a metadata
    and a target directory, refresh, then the index.json target (found cached, else fetched)."""
    from tuf.ngclient import Updater

    print("Peer: python-tuf's Updater used bare (refresh + index.json, no resolve)")
    state = Path(tempfile.mkdtemp(prefix="bench-trust-updater-"))
    (state / "targets").mkdir()

    def verify() -> None:
        updater = Updater(str(state), f"{base}/signed/metadata/", str(state / "targets"),
                          f"{base}/signed/targets/", bootstrap=root.data)  # fmt: skip
        updater.refresh()
        info = updater.get_targetinfo("index.json")
        if info is None:
            raise RuntimeError("the signed registry names no index.json")
        if updater.find_cached_target(info) is None:
            updater.download_target(info)

    try:
        log.take()
        cold = median_ms(1, verify)
        row("python-tuf Updater, cold", f"{counted(log.take())}, {cold:.1f} ms")
        verify()
        log.take()
        warm = median_ms(runs, verify)
        row(f"python-tuf Updater, warm (median of {runs})",
            f"{counted(log.take(), runs)}, {warm:.2f} ms")  # fmt: skip
    finally:
        shutil.rmtree(state, ignore_errors=True)


# -- publishes -------------------------------------------------------------------------------


def publish_times(
    stores: dict[str, Store], signing: Signing, work: Path, runs: int, first: int
) -> dict[str, float]:
    """Median wall time of publishing one new bundle (versions ``1.<first>`` on), ``runs`` times
    into each store, taking turns at going first."""
    times: dict[str, list[float]] = {label: [] for label in stores}
    for n in range(runs):
        order = list(stores.items())
        for label, store in order if n % 2 else reversed(order):  # whoever goes first is slower
            options = UNSIGNED_OPTIONS
            if label == "signed":
                options = replace(UNSIGNED_OPTIONS, signing=signing)
            src = source(work / f"src-{label}-{n}", PUBLISHED)
            _rename_version(src, f"1.{first + n}")
            start = time.perf_counter()
            publish_registry(src, store, progress=False, options=options)
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(found) for label, found in times.items()}


def _rename_version(src: Path, version: str) -> None:
    """Make the one bundle of ``src`` version ``version`` (each publish adds a new version)."""
    import msgspec

    from runtime.registry.wire import BundleDescriptor, descriptor_key

    (old,) = src.glob("descriptors/*/*/*.json")
    found = msgspec.json.decode(old.read_bytes(), type=BundleDescriptor)
    if found.version == version:
        return
    moved = msgspec.structs.replace(found, version=version)
    new = src / descriptor_key(moved.id, moved.version, moved.target)
    new.parent.mkdir(parents=True)
    new.write_bytes(msgspec.json.encode(moved))
    old.unlink()


def publishes(sites: Path, work: Path, signing: Signing, runs: int) -> None:
    print(f"Publish one bundle, index off (median of {runs})")
    labels = ("unsigned", "signed")
    stores: dict[str, Store] = {label: LocalStore(sites / label) for label in labels}
    _ratio_rows("dir", publish_times(stores, signing, work / "dir", runs, 10))
    with moto_server() as (endpoint, _):
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="bench-trust")
        s3 = {label: S3Store.from_url(f"s3://bench-trust/{label}", endpoint_url=endpoint)
              for label in labels}  # fmt: skip
        for label, store in s3.items():
            _upload(sites / label, store)
        _ratio_rows("s3", publish_times(dict(s3), signing, work / "s3", runs, 10 + runs))


def _upload(root: Path, store: Store) -> None:
    """What a publish of ``PUBLISHED`` reads: the documents, its shard, and the metadata."""
    wanted = ("index.json", "index", "v1/models", "metadata/", "targets/", f"shards/{PUBLISHED}/",
              f"aliases/{PUBLISHED}/")  # fmt: skip
    for path in root.rglob("*"):
        key = path.relative_to(root).as_posix()
        if path.is_file() and key.startswith(wanted):
            store.put(key, path.read_bytes())


def _ratio_rows(label: str, times: dict[str, float]) -> None:
    ratio = times["signed"] / times["unsigned"]
    row(f"{label}: unsigned", f"{times['unsigned'] * MS:.0f} ms")
    row(f"{label}: signed", f"{times['signed'] * MS:.0f} ms, {ratio:.2f}x (target: <= 1.2x)")


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    binary = nginx_binary()
    if binary is None:
        print("skipped: nginx not found (Debian: apt-get install -y nginx)")
        return 0
    with scratch("trust") as work:
        work.chmod(0o755)  # nginx workers run as an unprivileged user when started by root
        run(binary, work, args)
    return 0


def run(binary: str, work: Path, args: argparse.Namespace) -> None:
    items = descriptors(args.models)
    registry = Registry.of(items)
    sites = work / "sites"
    for label in ("unsigned", "signed"):
        write(sites / label, registry.format_2)
    root = init_keys(work / "keys")
    signing = load_signing(str(work / "keys" / "online.key"), work / "keys" / "root.json")
    sign(LocalStore(sites / "signed"), signing)
    for path in sites.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    index = (sites / "signed" / "index.json").stat().st_size
    print(f"Registry: {len(items):,} descriptors, {args.models:,} models; index.json "
          f"{index / 1e6:.2f} MB")  # fmt: skip
    with nginx(binary, sites, work) as (base, log_path):
        log = AccessLog(log_path)
        resolves(base, log, work, root, args.runs)
        bare_updater(base, log, root, args.runs)
    publishes(sites, work, signing, max(3, args.runs // 3))


if __name__ == "__main__":
    sys.exit(main())
