"""Benchmark of the runtime service (issue 6), against a bare Starlette + msgspec endpoint.

    python -m bench.runtime [--duration 8] [--connections 16] [--rate 1000] [--paced 5]

1. Heartbeat throughput: wrk (Debian's package) posts heartbeats of 8 workers from 1,000 hive
   ids (a Lua script rotates the bodies) to ``registry-runtime serve`` (the real command, with a
   token file and a SQLite file in a temp dir), then to a bare Starlette app whose endpoint only
   decodes the same msgspec type; both under uvicorn with the same settings, one process each,
   in this run. Targets: >= 0.6x the bare app and >= 5,000/s.
2. Best worker at 1,000 hives x 8 workers: the in-process median (target <= 100 us), against a
   linear scan over every worker; and the HTTP p99 at a fixed 1,000 req/s (target <= 2 ms),
   against the bare app answering a fixed body. wrk paces itself only per connection (closed
   loop: a slow answer delays the next request, which hides the stall), so this part uses a small
   open-loop asyncio client instead: requests are due at fixed times, each on a free keep-alive
   connection, and latency counts from the time a request was due (as wrk2 does), so waiting
   behind a slow answer is counted. Its own lag is shown too (send - due).
3. Memory per hive with 8 workers (tracemalloc), against the same heartbeats kept as parsed
   JSON dicts.

The absolute throughput depends on uvicorn's HTTP parser and event loop (h11 and asyncio unless
httptools and uvloop are installed); the report names the ones in use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from bench._util import child, free_port, row, scratch
from runtime.service.hives import HiveRegistry, rank
from runtime.service.scheduler import Scheduler
from runtime.service.types import HiveHeartbeat

HIVES = 1000
WORKERS = 8
MODELS = 32
TOKEN = "bench-token"


# -- data -------------------------------------------------------------------------------------


def heartbeat_bodies(seed: int = 1) -> list[bytes]:
    """1,000 heartbeats of 8 workers each, with realistic fields, as JSON."""
    rng = random.Random(seed)
    ts = datetime.now(UTC).isoformat()
    bodies = []
    for h in range(HIVES):
        workers = [
            {
                "worker_id": f"hive-{h:04d}-w{i}",
                "state": rng.choice(["Idle", "Idle", "Busy", "Loading"]),
                "last_heartbeat": ts,
                "health_status": "healthy" if rng.random() < 0.95 else "degraded",
                "url": f"http://10.{h // 256}.{h % 256}.1:{9000 + i}",
                "model_id": f"model-{rng.randrange(MODELS):02d}",
                "backend": "cuda",
                "device_id": i,
                "vram_bytes": rng.randrange(1 << 34),
                "ram_bytes": rng.randrange(1 << 35),
                "cpu_percent": round(rng.uniform(0, 100), 1),
                "gpu_percent": round(rng.uniform(0, 100), 1),
            }
            for i in range(WORKERS)
        ]
        beat = {
            "hive_id": f"hive-{h:04d}",
            "timestamp": ts,
            "workers": workers,
            "host": f"10.{h // 256}.{h % 256}.1",
            "port": 8080,
            "devices": [f"cuda:{i}" for i in range(WORKERS)],
        }
        bodies.append(msgspec.json.encode(beat))
    return bodies


# -- the servers ------------------------------------------------------------------------------


def bare_app() -> Any:
    """The peer: Starlette + msgspec, decoding the heartbeat and nothing else."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    decoder = msgspec.json.Decoder(HiveHeartbeat)
    fixed = b'{"worker":{"hive_id":"hive-0001","worker":{"worker_id":"hive-0001-w0"}}}'

    async def heartbeat(request: Request) -> Response:
        beat = decoder.decode(await request.body())
        return Response(b'{"hive_id":"%s"}' % beat.hive_id.encode(), media_type="application/json")

    async def schedule(request: Request) -> Response:
        return Response(fixed, media_type="application/json")

    return Starlette(
        routes=[
            Route("/v1/heartbeat", heartbeat, methods=["POST"]),
            Route("/v1/schedule", schedule),
        ]
    )


def run_bare(port: int) -> None:
    """Child process: serve the bare app with the settings ``registry-runtime serve`` uses."""
    import uvicorn

    uvicorn.run(bare_app(), host="127.0.0.1", port=port, ws="none", access_log=False)


def server_command(kind: str, port: int, root: Path) -> list[str]:
    """The command line of one server: ours is ``registry-runtime serve`` itself."""
    if kind == "bare":
        return [sys.executable, "-m", "bench.runtime", "--serve-bare", "--port", str(port)]
    tokens = root / "tokens"
    tokens.write_text(f"{TOKEN}\n")
    # The `registry-runtime` entry point, run by this interpreter (so a venv's is used).
    entry = "import sys; from runtime.cli import main; sys.exit(main(sys.argv[1:]))"
    return [
        sys.executable, "-c", entry, "serve", "--host", "127.0.0.1", "--port", str(port),
        "--db", str(root / "runtime.db"), "--token-file", str(tokens),
    ]  # fmt: skip


@contextlib.contextmanager
def server(kind: str, root: Path) -> Iterator[str]:
    """One of the two apps in its own uvicorn process; yields its base URL, stops it after."""
    port = free_port()
    log = root / f"{kind}.log"
    with child(server_command(kind, port, root), log, lambda proc: wait_until_up(proc, port, log)):
        yield f"http://127.0.0.1:{port}"


def wait_until_up(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Wait until the server answers HTTP; raise with its log if it exits or hangs."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}):\n{log.read_text()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/schedule?model=x", timeout=1)
            return
        except urllib.error.HTTPError:
            return  # an answer, even a 404, means it is up
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not answer within 30 s:\n{log.read_text()}")


def http_stack() -> str:
    """The HTTP parser and event loop uvicorn picks in this environment ("auto")."""
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn {importlib.metadata.version('uvicorn')}, {parser}, {loop}"


# -- wrk --------------------------------------------------------------------------------------

POST_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
local bodies = dofile("%(bodies)s")
local i = 0
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", "/v1/heartbeat", nil, bodies[i])
end
"""


def write_post_script(root: Path, bodies: list[bytes]) -> Path:
    """The wrk script that posts the heartbeats in turn."""
    table = root / "bodies.lua"
    table.write_text("return {\n" + "".join(f"[==[{b.decode()}]==],\n" for b in bodies) + "}\n")
    post = root / "post.lua"
    post.write_text(POST_LUA % {"token": TOKEN, "bodies": table})
    return post


def wrk(url: str, script: Path, duration: int, connections: int) -> dict[str, float]:
    """Run wrk once; returns requests/s, non-2xx count and latency percentiles (ms)."""
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if done.returncode != 0 or rps is None:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    result = {"rps": float(rps.group(1))}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    result["non2xx"] = float(bad.group(1)) if bad else 0.0
    errors = re.search(r"Socket errors: (.*)", done.stdout)
    result["socket_errors"] = (
        float(sum(map(int, re.findall(r"\d+", errors.group(1))))) if errors else 0.0
    )
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", done.stdout, re.M)
        if m:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            result[f"p{pct}"] = float(m.group(1)) * scale
    return result


# -- a fixed-rate, open-loop client -----------------------------------------------------------


@dataclass
class Paced:
    """What the paced client saw: latencies from due time and from send time (seconds)."""

    from_due: list[float] = field(default_factory=list)
    from_send: list[float] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)
    not_ok: int = 0
    elapsed: float = 0.0

    def pct(self, values: list[float], q: float) -> float:
        """The ``q`` quantile of ``values`` in ms."""
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3


async def paced(url: str, paths: list[str], rate: float, seconds: float, conns: int) -> Paced:
    """GET ``paths`` in turn at a fixed ``rate`` over ``conns`` keep-alive connections.

    Request ``i`` is due at ``start + i / rate`` whatever happened before (open loop); when every
    connection is busy it waits for one, and that wait counts in its latency.
    """
    host, port = url.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(conns):
        idle.put_nowait(await asyncio.open_connection(host, int(port)))
    seen = Paced()

    async def one(due: float, path: str) -> None:
        reader, writer = await idle.get()
        sent = loop.time()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        await reader.readexactly(int(length.group(1)) if length else 0)
        done = loop.time()
        idle.put_nowait((reader, writer))
        seen.not_ok += not head.startswith(b"HTTP/1.1 2")
        seen.from_due.append(done - due)
        seen.from_send.append(done - sent)
        seen.lag.append(sent - due)

    start = loop.time() + 0.05
    tasks = []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        tasks.append(asyncio.create_task(one(due, paths[i % len(paths)])))
    await asyncio.gather(*tasks)
    seen.elapsed = loop.time() - start
    while not idle.empty():
        idle.get_nowait()[1].close()
    return seen


# -- in-process -------------------------------------------------------------------------------


def in_process(bodies: list[bytes]) -> None:
    """Part 2: the scheduler's answer time in-process, against a scan of every worker."""
    decoder = msgspec.json.Decoder(HiveHeartbeat)
    reg = HiveRegistry()
    for body in bodies:
        reg.heartbeat(decoder.decode(body))
    sched = Scheduler(reg)
    models = [f"model-{i % MODELS:02d}" for i in range(5000)]
    ours = []
    for model in models:
        start = time.perf_counter()
        sched.best_worker(model)
        ours.append(time.perf_counter() - start)
    everyone = [w for h in reg.hives() for w in h.workers]
    scan = []
    for model in models[:1000]:
        start = time.perf_counter()
        min(
            (w for w in everyone if w.model_id == model and w.state == "Idle"
             and w.health_status == "healthy"),
            key=rank,
        )  # fmt: skip
        scan.append(time.perf_counter() - start)
    ours_us, scan_us = statistics.median(ours) * 1e6, statistics.median(scan) * 1e6
    print("2. best worker, 1,000 hives x 8 workers, in-process (median)")
    row("ours (model index)", f"{ours_us:8.1f} us   (target <= 100 us: {verdict(ours_us <= 100)})")
    row("peer: linear scan of every worker", f"{scan_us:8.1f} us")
    row("ratio scan / ours", f"{scan_us / ours_us:8.1f}x")


def memory(bodies: list[bytes]) -> None:
    """Part 3: what the registry keeps per hive, against plain parsed JSON."""
    decoder = msgspec.json.Decoder(HiveHeartbeat)
    reg = HiveRegistry()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for body in bodies:
        reg.heartbeat(decoder.decode(body))
    ours = (tracemalloc.get_traced_memory()[0] - before) / HIVES
    before = tracemalloc.get_traced_memory()[0]
    plain: dict[str, Any] = {}
    for body in bodies:
        parsed = msgspec.json.decode(body)
        plain[parsed["hive_id"]] = parsed
    peer = (tracemalloc.get_traced_memory()[0] - before) / HIVES
    tracemalloc.stop()
    print("3. memory per hive with 8 workers (tracemalloc, registry + indexes)")
    row("ours", f"{ours:8.0f} B    (target <= 4096 B: {verdict(ours <= 4096)})")
    row("peer: heartbeats kept as parsed JSON dicts", f"{peer:8.0f} B")
    row("ratio peer / ours", f"{peer / ours:8.2f}x")


# -- main -------------------------------------------------------------------------------------


def http(bodies: list[bytes], args: argparse.Namespace) -> None:
    """Parts 1 and 2b: both servers, one after the other, under the same load."""
    if shutil.which("wrk") is None:
        print("1. and 2b. skipped: wrk is not on PATH (Debian: apt-get install -y wrk)")
        return
    paths = [f"/v1/schedule?model=model-{i:02d}" for i in range(MODELS)]
    results: dict[str, tuple[dict[str, float], Paced]] = {}
    with scratch("runtime") as root:
        post = write_post_script(root, bodies)
        for kind in ("bare", "ours"):
            with server(kind, root) as url:
                posted = wrk(url, post, args.duration, args.connections)
                # Every hive is held now (wrk went through all 1,000 bodies many times).
                got = asyncio.run(paced(url, paths, args.rate, args.paced, args.paced_connections))
                results[kind] = posted, got
    print(f"   servers: {http_stack()}, one process each, on 127.0.0.1")
    heartbeat_report(results["ours"][0], results["bare"][0], args)
    schedule_report(results["ours"][1], results["bare"][1], args)


def heartbeat_report(
    ours: dict[str, float], bare: dict[str, float], args: argparse.Namespace
) -> None:
    """Part 1's lines."""
    print(
        f"1. POST /v1/heartbeat (8 workers, 1,000 hive ids in turn), "
        f"wrk -t1 -c{args.connections} -d{args.duration}s"
    )
    for label, res in (("ours: registry-runtime serve", ours),
                       ("peer: bare Starlette + msgspec decode", bare)):  # fmt: skip
        errors = f"{res['non2xx']:.0f} non-2xx, {res['socket_errors']:.0f} socket errors"
        row(label, f"{res['rps']:8.0f} /s   (p99 {res.get('p99', 0):.1f} ms; {errors})")
    ratio = ours["rps"] / bare["rps"]
    row("ratio ours / peer", f"{ratio:8.2f}x   (target >= 0.6x: {verdict(ratio >= 0.6)})")
    row(
        "ours absolute",
        f"{ours['rps']:8.0f} /s   (target >= 5,000/s: {verdict(ours['rps'] >= 5000)})",
    )


def schedule_report(ours: Paced, bare: Paced, args: argparse.Namespace) -> None:
    """Part 2b's lines."""
    print(
        f"2b. GET /v1/schedule at a fixed {args.rate:.0f} req/s for {args.paced:.0f} s, open loop "
        f"(asyncio client, {args.paced_connections} keep-alive connections; latency from due time)"
    )
    for label, got in (("ours", ours), ("peer: bare Starlette, fixed answer", bare)):
        row(
            label,
            f"p50 {got.pct(got.from_due, 0.5):5.2f} ms  p99 {got.pct(got.from_due, 0.99):5.2f} ms  "
            f"max {got.pct(got.from_due, 1.0):6.2f} ms  at {len(got.from_due) / got.elapsed:5.0f}/s"
            f"  ({got.not_ok} non-2xx)",
        )
        row(
            "   of which: send to answer | waiting to send",
            f"p99 {got.pct(got.from_send, 0.99):5.2f} ms | p99 {got.pct(got.lag, 0.99):5.2f} ms",
        )
    p99 = ours.pct(ours.from_due, 0.99)
    row("ratio p99 ours / peer", f"{p99 / bare.pct(bare.from_due, 0.99):8.2f}x")
    row("ours p99", f"{p99:8.2f} ms (target <= 2 ms: {verdict(p99 <= 2.0)})")


def verdict(met: bool) -> str:
    """How a target line ends."""
    return "met" if met else "MISSED"


def main(argv: list[str] | None = None) -> int:
    """Run the three parts and print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds of wrk per server")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--rate", type=float, default=1000.0, help="schedule requests per second")
    parser.add_argument("--paced", type=float, default=5.0, help="seconds of paced requests")
    parser.add_argument("--paced-connections", type=int, default=16)
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare:
        run_bare(args.port)
        return 0
    bodies = heartbeat_bodies()
    http(bodies, args)
    in_process(bodies)
    memory(bodies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
