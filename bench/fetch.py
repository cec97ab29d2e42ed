"""Benchmark the client: download + verify a 1 GiB bundle from nginx vs ``curl -o``; cache hits.

1. A 1 GiB blob (random bytes: the download path does not care whether it compresses) is served by
   nginx on 127.0.0.1 from a temp dir, with its ``index.json`` entry and descriptor file.
   ``Registry.fetch`` (index, descriptor, download, BLAKE3, fsync, rename: the real client path)
   is timed against ``curl -sS -o`` of the same URL in the same run; the two take turns (so a
   change in the machine's load hits both), best of three each. CPU seconds per GiB (user +
   system of the client; nginx is not counted for either) are shown beside each other: on a
   shared machine they say more than wall time. Target: >= 0.9x curl's throughput.
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
from registry_build.commit import commit
from runtime.client.cache import Cache
from runtime.client.registry import Registry
from runtime.registry.wire import BundleDescriptor, Location, blob_key
from runtime.storage.local import LocalStore

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
    location = Location("remote", blob_key(digest))
    sha256 = sha.hexdigest()  # published as a publisher would; the client does not compute it
    descriptor = BundleDescriptor("big", "1.0", "universal", digest, size, location, sha256)
    commit(LocalStore(site), [descriptor])  # descriptor, index and pages, as a publish writes them
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
    report_download(size, curls, fetches)


def report_download(
    size: int, curls: list[tuple[float, float, float]], fetches: list[tuple[float, float]]
) -> None:
    """Print part 1: the best round of each (its wall and CPU), the ratios, and every round."""
    curl, ours = min(curls), min(fetches)
    gib = size / GiB
    print(
        f"1. download + verify {gib:.2f} GiB from nginx on loopback (turns, best of {len(curls)};"
        " CPU = user + system of the client, per GiB)"
    )
    row("peer: curl -o", speed(size, curl[0], curl[1]))
    row("   curl -o, then an fsync of its file", speed(size, curl[0] + curl[2]))
    row("ours: Registry.fetch", speed(size, ours[0], ours[1]))
    ratio = curl[0] / ours[0]
    met = "met" if ratio >= 0.9 else "MISSED"
    row("ratio fetch / curl throughput", f"{ratio:5.2f}x   (target >= 0.9x: {met})")
    row("ratio fetch / (curl + fsync) throughput", f"{(curl[0] + curl[2]) / ours[0]:5.2f}x")
    row("ratio fetch / curl CPU per GiB", f"{ours[1] / curl[1]:5.2f}x")
    walls = [f"{c[0]:.2f}" for c in curls], [f"{f[0]:.2f}" for f in fetches]
    row("all rounds, wall s: curl | fetch", " ".join(walls[0]) + " | " + " ".join(walls[1]))
    cpus = [f"{c[1] / gib:.2f}" for c in curls], [f"{f[1] / gib:.2f}" for f in fetches]
    row("all rounds, CPU s/GiB: curl | fetch", " ".join(cpus[0]) + " | " + " ".join(cpus[1]))


def speed(size: int, wall: float, cpu: float | None = None) -> str:
    """Wall seconds, MB/s and (when given) CPU seconds per GiB of moving ``size`` bytes."""
    text = f"{wall:5.2f} s  {size / 1e6 / wall:6.0f} MB/s"
    return text if cpu is None else f"{text}  CPU {cpu / (size / GiB):5.2f} s/GiB"


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
