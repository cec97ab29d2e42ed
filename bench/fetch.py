"""Benchmark the client: download + verify a 1 GiB bundle from nginx vs ``curl -o``; cache hits.

1. A 1 GiB blob (random bytes: the download path does not care whether it compresses) is served by
   nginx on 127.0.0.1 from a temp dir. ``Registry.fetch`` (download, BLAKE3 + SHA-256, fsync,
   rename) is timed against ``curl -s -o`` of the same URL in the same run; best of two each.
   Target: >= 0.9x curl's throughput.
2. A cache hit, resolve + fetch in-process of an exact version: median of 2000 calls.
   Target: <= 2 ms.

Run: ``python -m bench.fetch`` (needs ``nginx`` and ``curl`` on PATH: ``apt-get install nginx``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import blake3

from bench._util import median_of, row, scratch
from runtime.cache import Cache
from runtime.client import Registry
from runtime.wire import BundleDescriptor, Index, Location, blob_key, encode

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
    return descriptor


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def nginx(site: Path, root: Path) -> Iterator[str]:
    """nginx serving ``site`` on a loopback port, configured and logging under ``root``."""
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, port=port, site=site))
    proc = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(root), "-e", str(root / "error.log")],
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {proc.stderr.read() if proc.stderr else b''!r}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("nginx did not start listening")


def time_curl(url: str, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "-o", str(out), url], check=True)
    elapsed = time.perf_counter() - start
    out.unlink()
    return elapsed


def time_fetch(url: str, cache_root: Path) -> float:
    registry = Registry(url, cache=Cache(cache_root), progress=False)
    start = time.perf_counter()
    path = registry.fetch("big@1.0", target="universal")
    elapsed = time.perf_counter() - start
    shutil.rmtree(cache_root)
    assert not path.exists()
    return elapsed


def download_bench(work: Path, size: int) -> None:
    work.chmod(0o755)  # nginx workers run as an unprivileged user when started by root
    descriptor = make_site(work / "site", size)
    (work / "nginx").mkdir()
    with nginx(work / "site", work / "nginx") as url:
        blob_url = f"{url}/{descriptor.location.url}"
        curl = min(time_curl(blob_url, work / "curl.out") for _ in range(2))
        ours = min(time_fetch(url, work / "cache") for _ in range(2))
    mb = size / 1e6
    print(f"1. download + verify {size / GiB:.2f} GiB from nginx on loopback (best of 2)")
    row("curl -o", f"{curl:.2f} s  {mb / curl:8.0f} MB/s")
    row("Registry.fetch (BLAKE3 + SHA-256, fsync, rename)", f"{ours:.2f} s  {mb / ours:8.0f} MB/s")
    row("ratio fetch/curl throughput (target >= 0.9)", f"{curl / ours:.2f}x")


def cache_hit_bench(work: Path) -> None:
    site = work / "small"
    make_site(site, 16 << 20)
    registry = Registry(str(site), cache=Cache(work / "hit-cache"), progress=False)
    registry.fetch("big@1.0", target="universal")  # warm: index and blob cached
    hit = median_of(2000, lambda: registry.fetch("big@1.0", target="universal"))
    cold = Registry(str(site), cache=Cache(work / "hit-cache"), progress=False)
    first = median_of(1, lambda: cold.fetch("big@1.0", target="universal"))
    print("2. cache hit: resolve + fetch of big@1.0 in-process")
    row("median of 2000 (target <= 2 ms)", f"{hit * 1e3:.3f} ms")
    row("first call of a new Registry (reads the cached index)", f"{first * 1e3:.3f} ms")


def main() -> None:
    """Run both benchmarks and print the figures."""
    size = int(os.environ.get("BENCH_FETCH_BYTES", GiB))
    with scratch("fetch") as work:
        download_bench(work, size)
        cache_hit_bench(work)


if __name__ == "__main__":
    main()
