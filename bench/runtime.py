"""Benchmark of the runtime service (issues 6 and 17), against a bare Starlette + msgspec
endpoint and a linear scan.

    python -m bench.runtime [--duration 8] [--rounds 3] [--connections 16] [--rate 1000]
                            [--paced 5]

The fleet is 1,000 hives of 8 workers, varied as a real one is: a few popular models and a long
tail (200 models), one worker in ten with none loaded, hives on each backend.

1. Heartbeat throughput: wrk (Debian's package) posts heartbeats of 8 workers from 1,000 hive
   ids (a Lua script rotates the bodies) to ``registry-runtime serve`` (the real command, with a
   token file and a SQLite file in a temp dir), then to a bare Starlette app whose endpoint only
   decodes the same msgspec type; both under uvicorn with the same settings, one process each,
   in this run. The two alternate for ``--rounds`` rounds (the machine may be shared: each
   round's ratio is of two neighbouring runs), and the median ratio is judged, its spread shown.
   Targets: >= 0.6x the bare app and >= 5,000/s.
2. The worker queries of seed 004 in-process (by model, by backend, idle, on a hive, all three
   filters, and the best worker for a model, including models loaded nowhere, where the
   scheduler falls back to any idle worker): p50 and p99 of each, against the same query
   answered by a linear scan of every worker (checked to give the same answers first).
   Targets: p99 <= 1 ms each; the best worker's median <= 100 us.
   2b. The HTTP p99 of ``/v1/schedule`` at a fixed 1,000 req/s (target <= 2 ms), against the bare
   app answering a fixed body. wrk paces itself only per connection (closed
   loop: a slow answer delays the next request, which hides the stall), so this part uses a small
   open-loop asyncio client instead: requests are due at fixed times, each on a free keep-alive
   connection, and latency counts from the time a request was due (as wrk2 does), so waiting
   behind a slow answer is counted. Its own lag is shown too (send - due).
3. Memory per hive with 8 workers (tracemalloc, the registry with its indexes), against the same
   heartbeats kept as parsed JSON dicts. Target: <= 4 KiB.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from bench._util import child, free_port, row, scratch
from runtime.service.hives import HiveRegistry
from runtime.service.scheduler import Scheduler
from runtime.service.types import HiveHeartbeat, WorkerView
from runtime.service.worker_index import matches, rank, schedulable

HIVES = 1000
WORKERS = 8
MODELS = 200
BACKENDS = ("cuda", "cpu", "metal")
TOKEN = "bench-token"


# -- data -------------------------------------------------------------------------------------


def heartbeat_bodies(seed: int = 1) -> list[bytes]:
    """1,000 heartbeats of 8 workers each, with realistic fields, as JSON. The fleet is varied:
    a few popular models and a long tail (weights 1/k over :data:`MODELS`), one worker in ten
    with no model loaded, and hives on each backend."""
    rng = random.Random(seed)
    ts = datetime.now(UTC).isoformat()
    weights = [1 / (k + 1) for k in range(MODELS)]
    bodies = []
    for h in range(HIVES):
        backend = rng.choices(BACKENDS, weights=(6, 3, 1))[0]
        models = rng.choices(range(MODELS), weights, k=WORKERS)
        workers = [
            {
                "worker_id": f"hive-{h:04d}-w{i}",
                "state": rng.choice(["Idle", "Idle", "Busy", "Loading"]),
                "last_heartbeat": ts,
                "health_status": "healthy" if rng.random() < 0.95 else "degraded",
                "url": f"http://10.{h // 256}.{h % 256}.1:{9000 + i}",
                "model_id": None if rng.random() < 0.1 else f"model-{models[i]:02d}",
                "backend": backend,
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


class LinearScan:
    """The peer of part 2: the same queries answered as they were before the indexes, by
    walking every worker of every online hive, filtering, sorting and ranking."""

    def __init__(self, reg: HiveRegistry) -> None:
        self.online = [(h.hive_id, w) for h in reg.hives() if h.online for w in h.workers]
        self.rng = random.Random(7)

    def workers(
        self,
        model: str | None = None,
        backend: str | None = None,
        state: str | None = None,
        hive_id: str | None = None,
    ) -> list[WorkerView]:
        """``HiveRegistry.workers``, by a scan."""
        found = [
            WorkerView(hive_id=h, online=True, worker=w)
            for h, w in self.online
            if matches(w, model, backend, state) and (hive_id is None or h == hive_id)
        ]
        return sorted(found, key=lambda v: v.worker.worker_id)

    def best(self, model: str) -> str:
        """The id of the worker ``Scheduler.best_worker(model, spread=1)`` answers, by a scan
        (falling back, as it does, to every healthy idle worker)."""
        ready = [w for _, w in self.online if schedulable(w)]
        loaded = [w for w in ready if w.model_id == model]
        return min(loaded or ready, key=rank).worker_id

    def best_of_two(self, model: str) -> str:
        """As :meth:`best` with spread 2 (the default): the better of two random candidates."""
        ready = [w for _, w in self.online if schedulable(w)]
        pool = [w for w in ready if w.model_id == model] or ready
        return min(self.rng.sample(pool, 2) if len(pool) > 2 else pool, key=rank).worker_id


@dataclass
class Query:
    """One query of part 2: ours and the scan's, the arguments they are timed over, and
    ``same``: whether both answer alike (checked on every argument before timing)."""

    name: str
    ours: Callable[[Any], object]
    peer: Callable[[Any], object]
    args: list[Any]
    same: Callable[[Any], bool]
    p50_target: float | None = None  # microseconds, beside the p99 <= 1 ms of every query


def queries(reg: HiveRegistry, scan: LinearScan) -> list[Query]:
    """The queries seed 004 lists, over arguments that vary: every model loaded somewhere and
    some loaded nowhere (a schedule then falls back to any idle worker), every backend, every
    hive."""
    sched = Scheduler(reg)
    models = [*(f"model-{i:02d}" for i in range(MODELS)), *(f"unloaded-{i}" for i in range(8))]
    hives = [f"hive-{h:04d}" for h in range(HIVES)]
    ours, peer = reg.workers, scan.workers

    def found(name: str, args: list[Any], **fixed: str) -> Query:
        """A ``workers`` query over ``args``: each goes to the filter given as "" in ``fixed``."""
        free = next(k for k, v in fixed.items() if v == "")

        def mine(arg: Any) -> object:
            return ours(**{**fixed, free: arg})

        def theirs(arg: Any) -> object:
            return peer(**{**fixed, free: arg})

        return Query(name, mine, theirs, args, lambda arg: mine(arg) == theirs(arg))

    def best(model: str) -> str:
        return sched.best_worker(model, spread=1).worker.worker.worker_id

    def best_of_two(model: str) -> str:
        return sched.best_worker(model).worker.worker.worker_id

    return [
        found("workers by model", models, model=""),
        found("workers by backend", list(BACKENDS), backend=""),
        found("idle workers", ["Idle"], state=""),
        found("workers on a hive", hives, hive_id=""),
        found("model + backend + state", models, model="", backend="cuda", state="Idle"),
        Query("best worker (spread 1)", best, scan.best, models,
              lambda m: best(m) == scan.best(m), 100),
        # Random (two candidates drawn): the answers are checked with spread 1 above.
        Query("best worker (spread 2, the default)", best_of_two, scan.best_of_two, models,
              lambda _: True, 100),
    ]  # fmt: skip


def timings(fn: Callable[[Any], object], args: list[Any], calls: int) -> list[tuple[int, int]]:
    """``calls`` timings of ``fn`` (thread CPU time and wall time, ns), cycling through
    ``args``. The CPU time is the query's own cost (a garbage collection included): on a
    shared machine the wall time also counts the moments the scheduler gave the core away."""
    spent = []
    for i in range(calls):
        arg = args[i % len(args)]
        cpu, wall = time.thread_time_ns(), time.perf_counter_ns()
        fn(arg)
        spent.append((time.thread_time_ns() - cpu, time.perf_counter_ns() - wall))
    return spent


def quantile(values: list[tuple[int, int]], q: float, wall: bool = False) -> float:
    """The ``q`` quantile of the CPU (or ``wall``) times in ``values``, in microseconds."""
    ordered = sorted(v[wall] for v in values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e3


def in_process(bodies: list[bytes]) -> None:
    """Part 2: each worker query's answer time in-process, against a scan of every worker."""
    decoder = msgspec.json.Decoder(HiveHeartbeat)
    reg = HiveRegistry()
    for body in bodies:
        reg.heartbeat(decoder.decode(body))
    scan = LinearScan(reg)
    print(
        f"2. worker queries, {HIVES:,} hives x {WORKERS} workers ({MODELS} models, skewed, "
        "and models loaded nowhere), in-process: p50 / p99 of the CPU time (and the wall p99)"
    )
    for q in queries(reg, scan):
        wrong = [arg for arg in q.args if not q.same(arg)]
        if wrong:
            raise RuntimeError(f"{q.name}: ours and the scan differ for {wrong[0]!r}")
        ours, peer = timings(q.ours, q.args, 3000), timings(q.peer, q.args, 300)
        p50, p99 = quantile(ours, 0.5), quantile(ours, 0.99)
        met = p99 <= 1000 and (q.p50_target is None or p50 <= q.p50_target)
        target = "p99 <= 1 ms" + ("" if q.p50_target is None else f", p50 <= {q.p50_target:.0f} us")
        row(
            q.name,
            f"ours {p50:6.1f} / {p99:6.1f} us ({quantile(ours, 0.99, wall=True):6.1f})   scan "
            f"{quantile(peer, 0.5):6.1f} / {quantile(peer, 0.99):6.1f} us   "
            f"{quantile(peer, 0.5) / p50:6.1f}x   ({target}: {verdict(met)})",
        )


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
    """Parts 1 and 2b: both servers in turn, ``args.rounds`` times, under the same load (the
    paced schedule requests in the last round, once every hive is held)."""
    if shutil.which("wrk") is None:
        print("1. and 2b. skipped: wrk is not on PATH (Debian: apt-get install -y wrk)")
        return
    paths = [f"/v1/schedule?model=model-{i:02d}" for i in range(MODELS)]
    posted: dict[str, list[dict[str, float]]] = {"bare": [], "ours": []}
    got: dict[str, Paced] = {}
    with scratch("runtime") as root:
        post = write_post_script(root, bodies)
        for round_ in range(args.rounds):
            for kind in ("bare", "ours"):
                with server(kind, root) as url:
                    posted[kind].append(wrk(url, post, args.duration, args.connections))
                    if round_ == args.rounds - 1:  # wrk went through all 1,000 bodies many times
                        got[kind] = asyncio.run(
                            paced(url, paths, args.rate, args.paced, args.paced_connections)
                        )
    print(f"   servers: {http_stack()}, one process each, on 127.0.0.1")
    heartbeat_report(posted["ours"], posted["bare"], args)
    schedule_report(got["ours"], got["bare"], args)


def heartbeat_report(
    ours: list[dict[str, float]], bare: list[dict[str, float]], args: argparse.Namespace
) -> None:
    """Part 1's lines: each round's throughput, and the ratio's median and spread."""
    print(
        f"1. POST /v1/heartbeat (8 workers, 1,000 hive ids in turn), "
        f"wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds, the servers "
        "alternating"
    )
    for label, runs in (("ours: registry-runtime serve", ours),
                        ("peer: bare Starlette + msgspec decode", bare)):  # fmt: skip
        rates = " ".join(f"{res['rps']:6.0f}" for res in runs)
        errors = sum(res["non2xx"] + res["socket_errors"] for res in runs)
        p99 = max(res.get("p99", 0.0) for res in runs)
        row(label, f"{rates} /s   (worst p99 {p99:.1f} ms; {errors:.0f} non-2xx or socket errors)")
    ratios = sorted(o["rps"] / b["rps"] for o, b in zip(ours, bare, strict=True))
    median = statistics.median(ratios)
    row(
        "ratio ours / peer, median (spread)",
        f"{median:8.2f}x  ({ratios[0]:.2f}-{ratios[-1]:.2f})   (target >= 0.6x: "
        f"{verdict(median >= 0.6)})",
    )
    rate = statistics.median(res["rps"] for res in ours)
    row("ours absolute, median", f"{rate:8.0f} /s   (target >= 5,000/s: {verdict(rate >= 5000)})")


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
    parser.add_argument("--rounds", type=int, default=3, help="runs of wrk per server, alternating")
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
