"""Benchmark of the runtime service (issue 6), against a bare Starlette + msgspec endpoint.

    python -m bench.runtime [--duration 8] [--connections 16]

1. Heartbeat throughput: wrk (Debian's package) posts heartbeats of 8 workers from 1,000 hive
   ids to our server, then to a bare Starlette app whose endpoint only decodes the same msgspec
   type; both run under uvicorn with the same settings, one process each, in this run.
2. Best worker at 1,000 hives x 8 workers: the in-process median, against a linear scan over
   every worker; and the HTTP p99 at about 1,000 req/s (wrk with a per-request delay), against
   the bare app answering a fixed body.
3. Memory per hive with 8 workers (tracemalloc), against the same heartbeats kept as parsed
   JSON dicts.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from bench._util import row, scratch
from runtime.hives import HiveRegistry, rank
from runtime.scheduler import Scheduler
from runtime.service_types import HiveHeartbeat

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


def our_app() -> Any:
    """Ours: the full service, with an in-memory catalog and one token."""
    from runtime.server import Tokens, build_runtime, create_app

    return create_app(build_runtime(tokens=Tokens({TOKEN: None})))


def run_server(kind: str, port: int) -> None:
    """Child process: serve one app under uvicorn until terminated."""
    import uvicorn

    app = our_app() if kind == "ours" else bare_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, ws="none")


class Server:
    """One of the two apps in its own uvicorn process."""

    def __init__(self, kind: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.runtime", "--serve", kind, "--port", str(self.port)]
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/v1/schedule?model=x", timeout=1).close()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{kind} server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


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

SCHEDULE_LUA = """
local i = 0
request = function()
  i = i %% %(models)d + 1
  return wrk.format("GET", string.format("/v1/schedule?model=model-%%02d", i - 1))
end
delay = function() return %(delay_ms)d end
"""


def write_scripts(root: Path, bodies: list[bytes], connections: int) -> tuple[Path, Path]:
    table = root / "bodies.lua"
    table.write_text("return {\n" + "".join(f"[==[{b.decode()}]==],\n" for b in bodies) + "}\n")
    post = root / "post.lua"
    post.write_text(POST_LUA % {"token": TOKEN, "bodies": table})
    schedule = root / "schedule.lua"
    # Each connection waits `delay` ms between requests: connections * 1000 / delay ~ 1,000/s.
    schedule.write_text(SCHEDULE_LUA % {"models": MODELS, "delay_ms": connections})
    return post, schedule


def wrk(url: str, script: Path, duration: int, connections: int) -> dict[str, float]:
    """Run wrk once; returns requests/s, non-2xx count and latency percentiles (ms)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = float(bad.group(1)) if bad else 0.0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            result[f"p{pct}"] = float(m.group(1)) * scale
    return result


# -- in-process -------------------------------------------------------------------------------


def in_process(bodies: list[bytes]) -> None:
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
    row("ours (model index)", f"{ours_us:8.1f} us   (target <= 100 us)")
    row("peer: linear scan of every worker", f"{scan_us:8.1f} us")
    row("ratio scan / ours", f"{scan_us / ours_us:8.1f}x")


def memory(bodies: list[bytes]) -> None:
    decoder = msgspec.json.Decoder(HiveHeartbeat)
    reg = HiveRegistry()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for body in bodies:
        reg.heartbeat(decoder.decode(body))
    ours = (tracemalloc.get_traced_memory()[0] - before) / HIVES
    before = tracemalloc.get_traced_memory()[0]
    plain = {}
    for body in bodies:
        parsed = msgspec.json.decode(body)
        plain[parsed["hive_id"]] = parsed
    peer = (tracemalloc.get_traced_memory()[0] - before) / HIVES
    tracemalloc.stop()
    print("3. memory per hive with 8 workers (tracemalloc, registry + indexes)")
    row("ours", f"{ours:8.0f} B    (target <= 4096 B)")
    row("peer: heartbeats kept as parsed JSON dicts", f"{peer:8.0f} B")
    row("ratio peer / ours", f"{peer / ours:8.2f}x")


# -- main -------------------------------------------------------------------------------------


def http(bodies: list[bytes], duration: int, connections: int) -> None:
    if shutil.which("wrk") is None:
        print("1. skipped: wrk is not installed (apt-get install -y wrk)")
        return
    with scratch("runtime") as root:
        post, schedule = write_scripts(root, bodies, 10)
        results: dict[str, dict[str, dict[str, float]]] = {}
        for kind in ("bare", "ours"):
            server = Server(kind)
            try:
                results[kind] = {
                    "post": wrk(server.url, post, duration, connections),
                    "schedule": wrk(server.url, schedule, duration, 10),
                }
            finally:
                server.stop()
    ours, bare = results["ours"], results["bare"]
    print(f"1. heartbeats (8 workers, 1,000 hive ids), wrk -t1 -c{connections} -d{duration}s")
    row("ours", f"{ours['post']['rps']:8.0f} /s   (target >= 5,000/s; "
        f"{ours['post']['non2xx']:.0f} non-2xx)")  # fmt: skip
    row(
        "peer: bare Starlette + msgspec decode",
        f"{bare['post']['rps']:8.0f} /s   ({bare['post']['non2xx']:.0f} non-2xx)",
    )
    row("ratio ours / peer", f"{ours['post']['rps'] / bare['post']['rps']:8.2f}x  (target >= 0.6x)")
    print("2b. GET /v1/schedule at ~1,000 req/s (wrk -c10, 10 ms between requests per connection)")
    for label, res in (("ours", ours["schedule"]), ("peer: bare fixed answer", bare["schedule"])):
        row(label, f"p50 {res.get('p50', 0):6.2f} ms  p99 {res.get('p99', 0):6.2f} ms  at "
            f"{res['rps']:6.0f} req/s  ({res['non2xx']:.0f} non-2xx)")  # fmt: skip
    row("ratio p99 ours / peer", f"{ours['schedule']['p99'] / bare['schedule']['p99']:8.2f}x"
        "  (target: ours <= 2 ms)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--serve", choices=("ours", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        run_server(args.serve, args.port)
        return 0
    bodies = heartbeat_bodies()
    http(bodies, args.duration, args.connections)
    in_process(bodies)
    memory(bodies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
