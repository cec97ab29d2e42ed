"""Benchmark of the runtime service's replicas over Redis (issue 14), against the memory state and
a bare Starlette + msgspec app.

    python -m bench.replicas [--duration 8] [--connections 16] [--rate 1000] [--paced 5]
                             [--visibility 300]

Redis is Debian's ``redis-server``, started in a temp dir on a free loopback port (no
persistence); every server is ``registry-runtime serve`` itself, one process each, under uvicorn.

1. Heartbeat throughput: wrk posts heartbeats of 8 workers from 1,000 hive ids (the bodies and
   the wrk script of :mod:`bench.runtime`) to the bare app (the peer), one replica on
   ``--state memory``, one replica on ``--state redis://``, and two replicas on Redis (one wrk,
   so one connection pool, per replica, both at once; the rates are summed). Target: one replica
   on Redis >= 0.5x the memory state.
2. Cross-replica visibility: replica A acknowledges a heartbeat that gives a hive a new model;
   the time until replica B's ``/v1/schedule`` for that model answers 200 (B polled on a
   keep-alive connection). Target: p99 <= 50 ms.
3. ``/v1/schedule`` p99 at a fixed 1,000 req/s on a Redis-backed replica holding 1,000 hives
   (the open-loop client of :mod:`bench.runtime`), beside the same on the memory state and the
   bare app. Target: <= 2 ms.
4. Memory per hive with 8 workers in Redis (``MEMORY USAGE`` of its keys, and its share of the
   shared hashes), beside the in-process registry's (tracemalloc, as :mod:`bench.runtime`
   measures it) in this run. The change stream is bounded and reported on its own.

On a machine with few cores, wrk, Redis and the replicas share them: the two-replica figure then
shows the cost of the shared state more than the gain of a second process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import shutil
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

from bench._util import child, free_port, row, scratch
from bench.runtime import (
    HIVES,
    MODELS,
    TOKEN,
    Paced,
    heartbeat_bodies,
    http_stack,
    paced,
    verdict,
    wait_until_up,
    write_post_script,
    wrk,
)
from runtime.service.hives import HiveRegistry
from runtime.service.types import HiveHeartbeat

ENTRY = "import sys; from runtime.cli import main; sys.exit(main(sys.argv[1:]))"


# -- the servers ------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server(root: Path) -> Iterator[str]:
    """Debian's redis-server on a free loopback port, keeping nothing on disk; yields its URL."""
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(root)]  # fmt: skip

    def ready(proc: subprocess.Popen[bytes]) -> None:
        import redis

        client = redis.Redis(port=port)
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start:\n{(root / 'redis.log').read_text()}")

    with child(argv, root / "redis.log", ready):
        yield f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def replica(root: Path, state: str, name: str) -> Iterator[str]:
    """``registry-runtime serve --state STATE`` (the bare app for ``bare``); yields its URL."""
    port = free_port()
    if state == "bare":
        argv = [sys.executable, "-m", "bench.runtime", "--serve-bare", "--port", str(port)]
    else:
        tokens = root / "tokens"
        tokens.write_text(f"{TOKEN}\n")
        argv = [sys.executable, "-c", ENTRY, "serve", "--port", str(port), "--token-file",
                str(tokens), "--state", state]  # fmt: skip
        if state == "memory":
            argv += ["--db", str(root / f"{name}.db")]
    log = root / f"{name}.log"
    with child(argv, log, lambda proc: wait_until_up(proc, port, log)):
        yield f"http://127.0.0.1:{port}"


# -- 1. heartbeats/s --------------------------------------------------------------------------


def throughput(root: Path, post: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """wrk against each set-up in turn; two replicas get one wrk each, at once."""
    results: dict[str, dict[str, float]] = {}
    with replica(root, "bare", "bare") as url:
        results["bare"] = wrk(url, post, args.duration, args.connections)
    with replica(root, "memory", "memory") as url:
        results["memory"] = wrk(url, post, args.duration, args.connections)
    with redis_server(root) as state, replica(root, state, "one") as url:
        results["redis"] = wrk(url, post, args.duration, args.connections)
    with (
        redis_server(root) as state,
        replica(root, state, "a") as a,
        replica(root, state, "b") as b,
        ThreadPoolExecutor(2) as pool,
    ):
        runs = list(pool.map(lambda u: wrk(u, post, args.duration, args.connections), [a, b]))
        results["redis x2"] = {
            "rps": sum(r["rps"] for r in runs),
            "p99": max(r.get("p99", 0.0) for r in runs),
            "non2xx": sum(r["non2xx"] for r in runs),
            "socket_errors": sum(r["socket_errors"] for r in runs),
        }
    return results


def throughput_report(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    """Part 1's lines."""
    print(
        f"1. POST /v1/heartbeat (8 workers, 1,000 hive ids in turn), wrk -t1 "
        f"-c{args.connections} -d{args.duration}s per server"
    )
    labels = {
        "bare": "peer: bare Starlette + msgspec decode",
        "memory": "1 replica, --state memory",
        "redis": "1 replica, --state redis://",
        "redis x2": "2 replicas, --state redis:// (summed)",
    }
    for kind, label in labels.items():
        res = results[kind]
        errors = f"{res['non2xx']:.0f} non-2xx, {res['socket_errors']:.0f} socket errors"
        ratio = res["rps"] / results["bare"]["rps"]
        row(label, f"{res['rps']:8.0f} /s  {ratio:5.2f}x peer  (p99 {res.get('p99', 0):.1f} ms; "
            f"{errors})")  # fmt: skip
    one = results["redis"]["rps"] / results["memory"]["rps"]
    two = results["redis x2"]["rps"] / results["redis"]["rps"]
    row("ratio 1 replica redis / memory", f"{one:8.2f}x   (target >= 0.5x: {verdict(one >= 0.5)})")
    row("ratio 2 replicas / 1 replica (redis)", f"{two:8.2f}x")


# -- 2. visibility ----------------------------------------------------------------------------


def visibility(a: str, b: str, count: int) -> list[float]:
    """Seconds from A's acknowledgement of a heartbeat to B scheduling the model it brings."""
    post, poll = _connection(a), _connection(b)
    body = json.loads(heartbeat_bodies()[0])
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    for w in body["workers"]:
        w.update(state="Idle", health_status="healthy")
    seen = []
    for i in range(count):
        body["workers"][0]["model_id"] = f"visible-{i}"
        post.request("POST", "/v1/heartbeat", json.dumps(body), headers)
        answer = post.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"heartbeat through A answered {answer.status}")
        acked = time.perf_counter()
        while True:
            poll.request("GET", f"/v1/schedule?model=visible-{i}&fallback=none")
            got = poll.getresponse()
            got.read()
            if got.status == 200:
                break
        seen.append(time.perf_counter() - acked)
    return seen


def _connection(url: str) -> http.client.HTTPConnection:
    host, port = url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=10)


def visibility_report(seen: list[float]) -> None:
    """Part 2's lines."""
    ordered = sorted(seen)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3

    print(f"2. cross-replica visibility: A acknowledges a heartbeat -> B schedules it ({len(seen)} "
          "heartbeats)")  # fmt: skip
    row("p50 / p99 / max", f"{pct(0.5):6.2f} / {pct(0.99):6.2f} / {pct(1.0):6.2f} ms   "
        f"(target p99 <= 50 ms: {verdict(pct(0.99) <= 50)})")  # fmt: skip


# -- 3. schedule latency ----------------------------------------------------------------------


def schedule_latency(root: Path, post: Path, args: argparse.Namespace) -> dict[str, Paced]:
    """The paced client against a loaded replica on each state, and the bare app."""
    paths = [f"/v1/schedule?model=model-{i:02d}" for i in range(MODELS)]
    seen: dict[str, Paced] = {}

    def measure(url: str) -> Paced:
        wrk(url, post, 2, args.connections)  # load the 1,000 hives
        time.sleep(1.0)  # let the server (and a replica's follower) drain what wrk left
        return asyncio.run(paced(url, paths, args.rate, args.paced, args.paced_connections))

    with replica(root, "bare", "bare") as url:
        seen["bare"] = measure(url)
    with replica(root, "memory", "memory") as url:
        seen["memory"] = measure(url)
    with redis_server(root) as state, replica(root, state, "one") as url:
        seen["redis"] = measure(url)
    return seen


def schedule_report(seen: dict[str, Paced], args: argparse.Namespace) -> None:
    """Part 3's lines."""
    print(f"3. GET /v1/schedule at a fixed {args.rate:.0f} req/s for {args.paced:.0f} s, open loop,"
          " 1,000 hives held (latency from due time)")  # fmt: skip
    labels = {"redis": "1 replica, --state redis://", "memory": "1 replica, --state memory",
              "bare": "peer: bare Starlette, fixed answer"}  # fmt: skip
    for kind, label in labels.items():
        got = seen[kind]
        row(label, f"p50 {got.pct(got.from_due, 0.5):5.2f} ms  p99 "
            f"{got.pct(got.from_due, 0.99):5.2f} ms  ({got.not_ok} non-2xx)")  # fmt: skip
        send, lag = got.pct(got.from_send, 0.99), got.pct(got.lag, 0.99)
        row("   of which: send to answer | waiting to send",
            f"p99 {send:5.2f} ms | p99 {lag:5.2f} ms")  # fmt: skip
    p99 = seen["redis"].pct(seen["redis"].from_due, 0.99)
    row("redis replica p99", f"{p99:8.2f} ms (target <= 2 ms: {verdict(p99 <= 2.0)})")


# -- 4. memory --------------------------------------------------------------------------------


def redis_memory(url: str, bodies: list[bytes]) -> dict[str, float]:
    """Bytes per hive in Redis after posting every heartbeat once (MEMORY USAGE)."""
    import redis

    from runtime.service import redis_layout as rl

    client = redis.Redis.from_url(url)
    ids = [json.loads(b)["hive_id"] for b in bodies]

    def usage(key: str) -> int:
        return int(client.memory_usage(key, samples=0) or 0)

    per_hive = {
        "hive key (beat + worker ids)": sum(usage(rl.hive_key(h)) for h in ids) / len(ids),
        "catalog row": sum(usage(rl.catalog_key(h)) for h in ids) / len(ids),
        "share of worker owners": usage(rl.OWNER) / len(ids),
        "share of the liveness zset": usage(rl.HIVES) / len(ids),
    }
    per_hive["total"] = sum(per_hive.values())
    per_hive["stream"] = usage(rl.EVENTS)
    per_hive["stream entries"] = int(client.xlen(rl.EVENTS))
    client.close()
    return per_hive


def in_process_memory(bodies: list[bytes]) -> float:
    """What the in-process registry keeps per hive (tracemalloc), as bench.runtime measures."""
    decoder = msgspec.json.Decoder(HiveHeartbeat)
    reg = HiveRegistry()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for body in bodies:
        reg.heartbeat(decoder.decode(body))
    used = (tracemalloc.get_traced_memory()[0] - before) / HIVES
    tracemalloc.stop()
    return used


def memory(root: Path, post: Path, bodies: list[bytes]) -> None:
    """Part 4: load 1,000 hives through one replica, then ask Redis."""
    with redis_server(root) as state, replica(root, state, "one") as url:
        wrk(url, post, 2, 4)
        usage = redis_memory(state, bodies)
    ours = in_process_memory(bodies)
    print("4. memory per hive with 8 workers")
    for label in ("hive key (beat + worker ids)", "catalog row", "share of worker owners",
                  "share of the liveness zset"):  # fmt: skip
        row(f"redis: {label}", f"{usage[label]:8.0f} B")
    row("redis: total per hive", f"{usage['total']:8.0f} B")
    row("in-process registry (tracemalloc, this run)", f"{ours:8.0f} B")
    row("ratio redis / in-process", f"{usage['total'] / ours:8.2f}x")
    row(f"redis: change stream ({usage['stream entries']:.0f} entries, bounded)",
        f"{usage['stream'] / 1e6:8.1f} MB")  # fmt: skip


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the four parts and print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds of wrk per server")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--rate", type=float, default=1000.0, help="schedule requests per second")
    parser.add_argument("--paced", type=float, default=5.0, help="seconds of paced requests")
    parser.add_argument("--paced-connections", type=int, default=16)
    parser.add_argument("--visibility", type=int, default=300, help="heartbeats timed in part 2")
    args = parser.parse_args(argv)
    missing = [tool for tool in ("wrk", "redis-server") if shutil.which(tool) is None]
    if missing:
        print(f"skipped: {' and '.join(missing)} not on PATH (Debian: apt-get install -y "
              f"{' '.join(missing)})")  # fmt: skip
        return 0
    bodies = heartbeat_bodies()
    with scratch("replicas") as root:
        post = write_post_script(root, bodies)
        print(f"   servers: {http_stack()}, one process each, on 127.0.0.1")
        throughput_report(throughput(root, post, args), args)
        with (
            redis_server(root) as state,
            replica(root, state, "a") as a,
            replica(root, state, "b") as b,
        ):
            visibility_report(visibility(a, b, args.visibility))
        schedule_report(schedule_latency(root, post, args), args)
        memory(root, post, bodies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
