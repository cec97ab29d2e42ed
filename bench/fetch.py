"""Benchmark the client: download + verify a 1 GiB bundle from nginx vs ``curl -o``; cache hits.

1. A 1 GiB blob (random bytes: the download path does not care whether it compresses) is served by
   nginx on 127.0.0.1 from a temp dir, with its ``index.json`` entry and descriptor file.
   ``Registry.fetch`` (index, descriptor, download, BLAKE3 + SHA-256, fsync, rename: the real
   client path) is timed against ``curl -sS -o`` of the same URL in the same run; the two take
   turns (so a change in the machine's load hits both), best of three each. CPU seconds are shown
   too: on a shared machine they say more than wall time. Target: >= 0.9x curl's throughput.
2. A cache hit, resolve + fetch in-process of an exact version: median of 2000 calls.
   Target: <= 2 ms.

Run: ``python -m bench.fetch`` (needs ``nginx`` and ``curl``: ``apt-get install -y nginx curl``).
``BENCH_FETCH_BYTES`` sets another size (a multiple of 16 MiB).
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import blake3

from bench._util import child, free_port, median_of, row, scratch
from runtime.client.cache import Cache
from runtime.client.registry import Registry
from runtime.registry.wire import (
    BundleDescriptor,
    Index,
    Location,
    blob_key,
    descriptor_key,
    encode,
)

GiB = 1 << 30
NGINX_CONF = """daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {root}/tmp-body;
    proxy_temp_path {root}/tmp-proxy;
    fastcgi_temp_path {root}/tmp-fastcgi;
    uwsgi_temp_path {root}/tmp-uwsgi;
    scgi_temp_path {root}/tmp-scgi;
    types {{ application/json json; application/zstd xyb; }}
    server {{
        listen 127.0.0.1:{port};
        root {site};
    }}
}}
"""


def make_site(site: Path, size: int) -> BundleDescriptor:
    """A registry with one ``size``-byte bundle ``big@1.0`` (universal)."""
    tmp = site / "blob.tmp"
    site.mkdir(parents=True)
    b3, sha = blake3.blake3(max_threads=blake3.blake3.AUTO), hashlib.sha256()
    with open(tmp, "wb") as handle:
        for _ in range(size // (16 << 20)):
            chunk = os.urandom(16 << 20)
            b3.update(chunk)
            sha.update(chunk)
            handle.write(chunk)
    digest = b3.hexdigest()
    (site / "blobs").mkdir()
    tmp.rename(site / blob_key(digest))
    descriptor = BundleDescriptor(
        "big",
        "1.0",
        "universal",
        digest,
        size,
        Location("remote", blob_key(digest)),
        sha.hexdigest(),
    )
    (site / "index.json").write_bytes(encode(Index(bundles=(descriptor,))))
    key = site / descriptor_key(descriptor.id, descriptor.version, descriptor.target)
    key.parent.mkdir(parents=True)
    key.write_bytes(encode(descriptor))
    return descriptor


def nginx_binary() -> str | None:
    """nginx on PATH, or Debian's /usr/sbin/nginx (not on a normal user's PATH)."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


@contextmanager
def nginx(binary: str, site: Path, root: Path) -> Iterator[str]:
    """nginx serving ``site`` on a loopback port, configured and logging under ``root``."""
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, port=port, site=site))
    log = root / "stderr.log"
    argv = [binary, "-c", str(conf), "-p", str(root), "-e", str(root / "error.log")]
    with child(argv, log, lambda proc: wait_for_port(port, proc, log)):
        yield f"http://127.0.0.1:{port}"


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until nginx accepts connections; raise with its output if it exits or hangs."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited ({proc.returncode}): {log.read_text()}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nginx did not start listening on port {port}: {log.read_text()}")


def cpu_seconds(who: int) -> float:
    """User + system CPU seconds used so far by this process or its waited-for children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def timed(who: int, fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of ``who``) of one call of ``fn``."""
    cpu, start = cpu_seconds(who), time.perf_counter()
    fn()
    return time.perf_counter() - start, cpu_seconds(who) - cpu


def time_curl(url: str, out: Path) -> tuple[float, float, float]:
    """(wall, CPU, then the fsync curl does not do) seconds of ``curl -o``."""
    command = ["curl", "-sS", "--fail", "-o", str(out), url]
    wall, cpu = timed(resource.RUSAGE_CHILDREN, lambda: subprocess.run(command, check=True))
    fd = os.open(out, os.O_RDONLY)
    start = time.perf_counter()
    os.fsync(fd)
    sync = time.perf_counter() - start
    os.close(fd)
    out.unlink()
    return wall, cpu, sync


def time_fetch(url: str, cache_root: Path, size: int) -> tuple[float, float]:
    """(wall, CPU) seconds of ``Registry.fetch`` into an empty cache."""
    registry = Registry(url, cache=Cache(cache_root), progress=False)
    fetched: list[Path] = []
    wall, cpu = timed(
        resource.RUSAGE_SELF,
        lambda: fetched.append(registry.fetch("big@1.0", target="universal")),
    )
    if fetched[0].stat().st_size != size:
        raise RuntimeError(f"{fetched[0]} has {fetched[0].stat().st_size} bytes, not {size}")
    shutil.rmtree(cache_root)
    return wall, cpu


def download_bench(work: Path, size: int, rounds: int = 3) -> None:
    """Part 1: curl and Registry.fetch take turns; best of ``rounds`` each."""
    binary = nginx_binary()
    if binary is None or shutil.which("curl") is None:
        missing = " and ".join(n for n, b in (("nginx", binary), ("curl", shutil.which("curl")))
                               if b is None)  # fmt: skip
        print(f"1. skipped: {missing} not found (Debian: apt-get install -y nginx curl)")
        return
    work.chmod(0o755)  # nginx workers run as an unprivileged user when started by root
    descriptor = make_site(work / "site", size)
    (work / "nginx").mkdir()
    curls: list[tuple[float, float, float]] = []
    fetches: list[tuple[float, float]] = []
    with nginx(binary, work / "site", work / "nginx") as url:
        for _ in range(rounds):
            curls.append(time_curl(f"{url}/{descriptor.location.url}", work / "curl.out"))
            fetches.append(time_fetch(url, work / "cache", size))
    curl, ours = min(curls), min(fetches)
    mb = size / 1e6
    print(f"1. download + verify {size / GiB:.2f} GiB from nginx on loopback "
          f"(turns, best of {rounds}; CPU = user + system of the client)")  # fmt: skip
    row("peer: curl -o", f"{curl[0]:5.2f} s  {mb / curl[0]:6.0f} MB/s  CPU {curl[1]:5.2f} s")
    row("   curl -o, then an fsync of its file", f"{curl[0] + curl[2]:5.2f} s  "
        f"{mb / (curl[0] + curl[2]):6.0f} MB/s")  # fmt: skip
    row("ours: Registry.fetch", f"{ours[0]:5.2f} s  {mb / ours[0]:6.0f} MB/s  CPU {ours[1]:5.2f} s")
    ratio = curl[0] / ours[0]
    met = "met" if ratio >= 0.9 else "MISSED"
    row("ratio fetch / curl throughput", f"{ratio:5.2f}x   (target >= 0.9x: {met})")
    row("ratio fetch / (curl + fsync) throughput", f"{(curl[0] + curl[2]) / ours[0]:5.2f}x")
    row("all rounds, wall s: curl | fetch", " ".join(f"{c[0]:.2f}" for c in curls) + " | "
        + " ".join(f"{f[0]:.2f}" for f in fetches))  # fmt: skip


def cache_hit_bench(work: Path) -> None:
    site = work / "small"
    make_site(site, 16 << 20)
    registry = Registry(str(site), cache=Cache(work / "hit-cache"), progress=False)
    registry.fetch("big@1.0", target="universal")  # warm: index and blob cached
    hit = median_of(2000, lambda: registry.fetch("big@1.0", target="universal"))
    cold = Registry(str(site), cache=Cache(work / "hit-cache"), progress=False)
    first = median_of(1, lambda: cold.fetch("big@1.0", target="universal"))
    print("2. cache hit: resolve + fetch of big@1.0 in-process")
    met = "met" if hit <= 2e-3 else "MISSED"
    row("median of 2000", f"{hit * 1e3:.3f} ms  (target <= 2 ms: {met})")
    row("first call of a new Registry (reads the cached index)", f"{first * 1e3:.3f} ms")


def main() -> int:
    """Run both benchmarks and print the figures."""
    size = int(os.environ.get("BENCH_FETCH_BYTES", GiB))
    with scratch("fetch") as work:
        download_bench(work, size)
        cache_hit_bench(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
