"""The shared state (``--state redis://HOST:PORT/DB``): any number of ``serve`` replicas behind
one address, with hives, workers, services and the hive catalog in Redis.

**Writes** go to Redis, each in one step (heartbeats arriving together share one pipelined round
trip, :class:`Pipelined`): a hive's heartbeat is one Lua script
(:data:`~runtime.service.redis_layout.BEAT`) that checks every worker's owner across hives (a
worker reported by another *live* hive is a conflict), stores the beat, its liveness time (from
Redis' ``TIME``) and the workers' new owner, updates the catalog row and appends a change event.
Service and worker writes are compare-and-set scripts: read the value, apply the very rules of
:class:`~runtime.service.services.ServiceRegistry` in Python, and write only if the value is
still the one read (else read again). A write is acknowledged only after Redis confirmed it, so
a replica killed with -9 loses nothing it acknowledged, and after this replica's mirror shows
it, so a client reads its own writes from the same replica.

**Reads** never leave the process (``/v1/schedule`` above all). Each replica keeps a mirror (a
:class:`~runtime.service.hives.HiveRegistry` with its per-model index, and a
:class:`~runtime.service.services.ServiceRegistry`), fed by the change events. Two listings read
Redis itself, in one pipelined round trip: the hive catalog (``/v1/hives``) and the model use
counts (``/v1/models``).

*Why a stream.* Change notifications come from a Redis Stream (``runtime:events``), which each
replica reads from the last id it applied (``XREAD BLOCK``). A stream keeps its entries, so a
replica that lost its connection for a moment replays what it missed, in order, and nothing
needs configuring on the Redis side. Keyspace notifications would need
``notify-keyspace-events`` set on the server, are lost while a subscriber is disconnected, and
carry only a key name (each would cost a read). The stream is bounded (``MAXLEN ~``); a replica
that finds the entries it missed already trimmed, or a Redis with a new epoch, loads a snapshot
instead (one script returns everything at one stream position).

**One clock.** Liveness times are Redis' ``TIME``; a replica reads Redis' clock as its own
monotonic clock plus the offset measured at each housekeeping round, so every replica judges
"online" alike. Eviction and the freeze are decided once for all replicas by whichever holds
the reaper lease (``SET NX PX``) that interval, with the one freeze rule
(:func:`~runtime.service.hives.should_freeze`) over the shared counts; evicting is a script that
re-checks the hive is still stale. Health checks: each service is probed by the replica that
takes its lease for the interval, so once per interval across the replicas.

**Faults.** With Redis unreachable, writes answer 503 with ``Retry-After``; reads answer from
the mirror, their data age still counting, with the stale marker
(:meth:`RedisState.stale_for`); ``/health`` says ``degraded``. On reconnecting, a replica replays
the events it missed. If Redis lost its data (a restart without persistence: a new epoch), the
replicas write back what their mirrors hold and Redis lacks (insert-if-absent, keeping each
hive's own heard-at time), so a restarted, empty Redis makes no hive look dead: silent ones
age out as before, under the freeze rule. Run Redis with ``appendonly yes`` to keep the catalog,
the services and the model use counts across its restarts without relying on that.

**Model use counts** are counted in this replica (:mod:`runtime.service.usage`) and added to
Redis in one script call each housekeeping round (:data:`~runtime.service.redis_layout.USE`) and
when the replica stops; ``/v1/models`` reads Redis' totals and adds what this replica has not
written yet (the last totals read, while Redis is away).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from runtime.service import redis_layout as rl
from runtime.service.catalog import HiveRecord
from runtime.service.hives import (
    DEFAULT_TTL,
    HiveRegistry,
    UnknownHive,
    check_duplicates,
    should_freeze,
    unknown_hive,
    unknown_worker,
    with_worker_health,
    worker_conflict,
)
from runtime.service.services import ServiceRegistry
from runtime.service.state import StateChoice, StateChoiceError, StateUnavailable
from runtime.service.tokens import Writer, check_hive
from runtime.service.types import (
    HiveHeartbeat,
    ModelUse,
    ServiceHeartbeat,
    ServiceRegistration,
    ServiceUpdate,
    ServiceView,
    WorkerHeartbeat,
    WorkerView,
)
from runtime.service.usage import Usage
from runtime.storage.location import redact

log = logging.getLogger(__name__)

T = TypeVar("T")
EventId = tuple[int, int]
Row = dict[bytes, bytes]  # a hash, as HGETALL answers it (bytes: no decode_responses)
Events = list[tuple[bytes, list[tuple[bytes, Row]]]]  # what XREAD answers

BLOCK_MS = 1000  # one XREAD waits at most this long for new events
APPLY_WAIT = 2.0  # a write waits at most this long for the mirror to show it
CAS_TRIES = 20
RECONNECT = 0.2  # seconds between attempts while Redis is unreachable

_BEAT = msgspec.json.Decoder(HiveHeartbeat)
_SERVICE = msgspec.json.Decoder(ServiceView)
_ENCODE = msgspec.json.Encoder()


class SharedClock:
    """Redis' clock as this process reads it: local monotonic time plus the offset measured
    at the last ``TIME`` (unix seconds); the local wall clock until the first."""

    def __init__(self) -> None:
        self.offset = time.time() - time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def wall(self) -> datetime:
        """The same instant as an aware datetime (for the service registry's rules)."""
        return datetime.fromtimestamp(self(), UTC)

    def sync(self, shared: float, local: float) -> None:
        """Redis said ``shared`` at local monotonic time ``local``."""
        self.offset = shared - local


class Pipelined:
    """Calls of one script that arrive together share a round trip to Redis: those queued while
    a round is out go in the next one, as one pipeline (not a transaction: each script is atomic
    by itself). Under load this saves a write and a read per heartbeat, which is most of what a
    heartbeat costs here beside HTTP; a call alone goes at once."""

    def __init__(self, client: aioredis.Redis, script: str) -> None:
        self.client = client
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()
        self._queue: list[tuple[list[Any], asyncio.Future[Any]]] = []
        self._round: asyncio.Task[None] | None = None

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        """The script's reply (a :class:`RedisError` raised as such)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(([len(keys), *keys, *args], future))
        if self._round is None:
            self._round = asyncio.create_task(self._rounds())
        return await future

    async def _rounds(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    replies = await self._send([call for call, _ in batch])
                except Exception as exc:  # the connection, say: every call of the round failed
                    replies = [exc] * len(batch)
                for (_, future), reply in zip(batch, replies, strict=True):
                    if future.done():  # its caller went away
                        continue
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        finally:
            self._round = None

    async def _send(self, calls: list[list[Any]]) -> list[Any]:
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for call in calls:
                pipe.evalsha(self.sha, *call)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt or not any(isinstance(r, NoScriptError) for r in replies):
                break
            await self.client.script_load(self.script)  # a restarted Redis forgot it
        return replies


class RedisState:
    """The state in Redis, with this replica's mirror of it; see the module notes."""

    kind = "redis"

    def __init__(
        self,
        choice: StateChoice,
        *,
        ttl: float = DEFAULT_TTL,
        freeze_min_hives: int = 4,
        freeze_limit: float | None = None,
    ) -> None:
        self.shown = choice.shown
        self.url = choice.url
        self.clock = SharedClock()
        self.hives = HiveRegistry(
            ttl=ttl, clock=self.clock, evicts=False, freeze_min_hives=freeze_min_hives,
            freeze_limit=freeze_limit,
        )  # fmt: skip
        self.services = ServiceRegistry(now=self.clock.wall)
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.interval = min(1.0, ttl / 10)  # the reaper's and the clock's round
        self._epoch: bytes | None = None
        self._epoch_changed = False  # seen by housekeeping: Redis lost its data while connected
        self._last: bytes = b"0-0"
        self._waiters: list[tuple[EventId, int, asyncio.Future[None]]] = []
        self._own: dict[bytes, HiveHeartbeat] = {}  # this replica's beats, not yet applied
        self._lost_at: float | None = time.monotonic()  # not in sync until the first load
        self._tasks: list[asyncio.Task[None]] = []
        self._warned = False
        self.usage = Usage(self.clock.wall)
        self._stored_usage: dict[str, ModelUse] = {}  # Redis' counts as last read

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, load a snapshot (or start stale, retrying) and follow the changes."""
        retry = Retry(NoBackoff(), 1)  # one immediate retry: a connection Redis closed
        self._redis = aioredis.from_url(
            self.url, socket_timeout=2.0, socket_connect_timeout=1.0, retry=retry
        )
        self._tail = aioredis.from_url(
            self.url, socket_timeout=BLOCK_MS / 1000 + 2.0, socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
        )  # fmt: skip
        self._scripts = {
            name: self._redis.register_script(getattr(rl, name))
            for name in ("WORKER", "GONE", "SURVEY", "EVICT", "FREEZE", "SERVICE", "USE")
        }
        self._snapshot = self._tail.register_script(rl.SNAPSHOT)
        self._beats = Pipelined(self._redis, rl.BEAT)
        with contextlib.suppress(RedisError, StateUnavailable):
            await self._resync()
        self._tasks = [asyncio.create_task(self._follow()), asyncio.create_task(self._keep())]

    async def stop(self) -> None:
        """Stop following, write the use counts not yet written, and close the connections."""
        pending = set(self._tasks)
        while pending:  # cancelled again until it ends: redis-py may swallow one mid-call
            for task in pending:
                task.cancel()
            _done, pending = await asyncio.wait(pending, timeout=0.05)
        try:
            await self._flush_usage()
        except (RedisError, StateUnavailable) as exc:
            log.warning("model use counts not stored at stop: %s", _reason(exc))
        for client in (self._redis, self._tail):
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    def close(self) -> None:
        """Nothing is held open outside the event loop."""

    def stale_for(self) -> float | None:
        """Seconds since the mirror lost touch with Redis; None while it follows the events."""
        lost = self._lost_at
        return None if lost is None else round(time.monotonic() - lost, 3)

    # -- hives ------------------------------------------------------------------------------

    async def heartbeat(self, beat: HiveHeartbeat) -> None:
        """Store a heartbeat in one step; raises WorkerConflict naming the live owner."""
        check_duplicates(beat)
        reply = await self._beat(beat, restore=None)
        if reply[0] == b"conflict":
            index = int(reply[1])
            raise worker_conflict(index, beat.workers[index].worker_id, reply[2].decode())
        if _event_id(reply[1]) > _event_id(self._last):  # the follower may take it as it is
            self._own[reply[1]] = beat
        await self._shown(reply[1])
        self._own.pop(reply[1], None)

    async def worker_heartbeat(self, beat: WorkerHeartbeat, by: str | None) -> WorkerView:
        """Compare-and-set the worker's health into its hive's beat."""
        for _ in range(CAS_TRIES):
            owner = await self._call(self._redis.hget(rl.OWNER, beat.worker_id))
            if owner is None:
                raise unknown_worker(beat.worker_id)
            hive_id = _text(owner)
            check_hive(by, hive_id)
            old = await self._call(self._redis.hget(rl.hive_key(hive_id), "beat"))
            if old is None:  # its hive is gone (evicted meanwhile): so is the worker
                raise unknown_worker(beat.worker_id)
            hive = with_worker_health(_BEAT.decode(old), beat)
            event = await self._script(
                "WORKER", [beat.worker_id, hive_id, old, _ENCODE.encode(hive)]
            )
            if event is not None:
                await self._shown(event)
                report = next(w for w in hive.workers if w.worker_id == beat.worker_id)
                return WorkerView(
                    hive_id=hive_id, online=self.hives.is_online(hive_id), worker=report
                )
        raise self._busy(f"worker {beat.worker_id!r}")

    async def remove_hive(self, hive_id: str) -> None:
        """Forget a hive, its workers' ownership and its catalog row."""
        event = await self._script("GONE", [hive_id])
        if event is None:
            raise unknown_hive(hive_id)
        await self._shown(event)

    async def catalog_hives(self) -> list[HiveRecord]:
        """Every catalog row in Redis, by hive id (read in one pipelined round trip)."""
        start = len(rl.catalog_key(""))
        found = sorted(await self._call(self._catalog_keys()))
        pipe = self._redis.pipeline(transaction=False)
        for key in found:
            pipe.hgetall(key)
        rows = cast(list[Row], await self._call(pipe.execute()))
        return [_record(k[start:], row) for k, row in zip(found, rows, strict=True) if row]

    async def catalog_hive(self, hive_id: str) -> HiveRecord | None:
        """One catalog row in Redis."""
        row = cast(Row, await self._call(self._redis.hgetall(rl.catalog_key(hive_id))))
        return _record(hive_id, row) if row else None

    async def _catalog_keys(self) -> list[str]:
        pattern = rl.catalog_key("*")
        return [_text(k) async for k in self._redis.scan_iter(match=pattern, count=500)]

    async def _beat(self, beat: HiveHeartbeat, restore: float | None) -> list[Any]:
        bare = msgspec.structs.replace(beat, host=None, port=None, devices=None)
        shape = json.dumps([beat.host, beat.port, beat.devices or []])
        args: list[bytes | str | int] = [
            beat.hive_id, _ENCODE.encode(bare), " ".join(w.worker_id for w in beat.workers),
            shape, beat.timestamp.isoformat(), int(self.hives.ttl * 1000),
            int(self.hives.ttl * 1000 * rl.KEEP_TTLS),
            "" if restore is None else str(int(restore * 1000)),
        ]  # fmt: skip
        keys = [rl.hive_key(beat.hive_id), rl.catalog_key(beat.hive_id)]
        reply: list[Any] = await self._call(self._beats(keys, args))
        return reply

    # -- services ---------------------------------------------------------------------------

    async def register_service(self, reg: ServiceRegistration, by: Writer) -> ServiceView:
        """Register or overwrite, by the registry's rule, in one compare-and-set."""
        return await self._put_service(reg.name, lambda cur: self.services.registered(cur, reg, by))

    async def update_service(self, name: str, change: ServiceUpdate, by: Writer) -> ServiceView:
        """Change the fields ``change`` gives of a service."""
        return await self._put_service(
            name, lambda cur: self.services.updated(cur, name, change, by)
        )

    async def service_heartbeat(self, name: str, beat: ServiceHeartbeat, by: Writer) -> ServiceView:
        """Record a service's heartbeat."""
        return await self._put_service(name, lambda cur: self.services.beaten(cur, name, beat, by))

    async def remove_service(self, name: str, by: Writer) -> None:
        """Deregister a service."""

        def remove(current: ServiceView | None) -> bytes:
            self.services.removable(current, name, by)
            return b""

        await self._change_service(name, remove)

    async def claim_check(self, name: str, interval: float) -> bool:
        """Take the service's probe lease for ``interval``; False when another replica has it
        (or Redis cannot say: a result could not be stored anyway)."""
        try:
            lease = rl.check_lease(name)
            won = await self._redis.set(lease, self.replica, nx=True, px=int(interval * 1000))
        except RedisError:
            return False
        return bool(won)

    async def record_check(self, name: str, up: bool, *, beat: bool = False) -> None:
        """Store a changed health result (skipped, with a log line, while Redis is away)."""

        def record(current: ServiceView | None) -> bytes | None:
            new = self.services.checked(current, up, beat=beat)
            return None if new is None else _ENCODE.encode(new)

        try:
            await self._change_service(name, record)
        except StateUnavailable as exc:
            log.warning("health of service %s not stored: %s", name, exc)

    async def _put_service(
        self, name: str, rule: Callable[[ServiceView | None], ServiceView]
    ) -> ServiceView:
        """Store what ``rule`` (one of the registry's rules, which raise a refusal) makes of the
        stored service, and return it with fresh health fields."""
        result: list[ServiceView] = []

        def write(current: ServiceView | None) -> bytes:
            result[:] = [rule(current)]
            return _ENCODE.encode(result[0])

        await self._change_service(name, write)
        return self.services.judged(result[0])

    async def _change_service(
        self, name: str, decide: Callable[[ServiceView | None], bytes | None]
    ) -> None:
        """Compare-and-set service ``name``: ``decide`` gets the stored value (None: absent) and
        raises (a refusal) or returns the bytes to store, ``b""`` to remove it, None for no
        write; a value changed meanwhile is read again."""
        for _ in range(CAS_TRIES):
            raw = await self._call(self._redis.hget(rl.SERVICES, name))
            new = decide(None if raw is None else _SERVICE.decode(raw))
            if new is None:
                return
            event = await self._script("SERVICE", [name, raw or b"", new])
            if event is not None:
                await self._shown(event)
                return
        raise self._busy(f"service {name!r}")

    # -- following the events -----------------------------------------------------------------

    async def _follow(self) -> None:
        """Apply the events as they come; on a lost connection, mark stale and reconnect."""
        while True:
            _honour_cancel()
            try:
                if self._lost_at is not None or self._epoch_changed:
                    await self._resync()
                reply = cast(
                    Events,
                    await self._tail.xread({rl.EVENTS: self._last}, count=1000, block=BLOCK_MS),
                )
                for _stream, entries in reply:
                    for event_id, fields in entries:
                        self._apply(fields, self._own.pop(event_id, None))
                        self._last = event_id
                self._wake()
            except (RedisError, StateUnavailable) as exc:
                self._lose(exc)
                await asyncio.sleep(RECONNECT)

    async def _resync(self) -> None:
        """After (re)connecting: replay from the last event if Redis still has what we missed,
        else load a snapshot; write back what a Redis that lost its data lacks."""
        epoch = await self._tail.get(rl.EPOCH)
        if epoch is not None and epoch == self._epoch and await self._replayable():
            self._found()
            return
        reply = await self._snapshot(keys=[], args=[secrets.token_hex(8)])
        epoch, last, frozen, flat_hives, flat_services = reply
        hives = [
            (_BEAT.decode(flat_hives[i + 2]), int(flat_hives[i + 1]) / 1000)
            for i in range(0, len(flat_hives), 3)
        ]
        services = {
            flat_services[i].decode(): _SERVICE.decode(flat_services[i + 1])
            for i in range(0, len(flat_services), 2)
        }
        if self._epoch is not None and epoch != self._epoch:
            await self._restore({b.hive_id for b, _ in hives}, set(services))
            for beat, seen in hives:
                self.hives.apply(beat, seen)
            for view in services.values():
                self.services.put(view)
        else:
            self.hives.replace_all(hives)
            self.services.replace_all(services.values())
        self.hives.set_frozen(int(frozen) / 1000 if frozen else None)
        self._epoch, self._last, self._epoch_changed = epoch, last, False
        self._found()
        self._wake()

    async def _replayable(self) -> bool:
        """Whether every event after the last one applied is still in the stream."""
        info = await self._tail.xinfo_stream(rl.EVENTS)
        deleted = info.get("max-deleted-entry-id")  # Redis 7; before it, load a snapshot
        return deleted is not None and _event_id(deleted) <= _event_id(self._last)

    async def _restore(self, hives: set[str], services: set[str]) -> None:
        """Redis lost its data: write back the hives and services it lacks (if still absent)."""
        log.warning("shared state %s has lost its data (a restart without persistence?); "
                    "writing back this replica's hives and services", self.shown)  # fmt: skip
        for beat, seen in self.hives.held():
            if beat.hive_id not in hives:
                await self._beat(beat, restore=seen)
        for name, view in self.services.held().items():
            if name not in services:
                await self._script("SERVICE", [name, b"", _ENCODE.encode(view)])

    def _apply(self, fields: Row, decoded: HiveHeartbeat | None = None) -> None:
        """Apply one event (see :mod:`~runtime.service.redis_layout`) to the mirror; ``decoded``
        is the beat it carries when this replica wrote it (no need to decode it again)."""
        kind, _, rest = fields[b"e"].partition(b" ")
        if kind in (b"beat", b"worker"):
            _hive, seen, beat = rest.split(b" ", 2)
            self.hives.apply(decoded or _BEAT.decode(beat), int(seen) / 1000)
            counters = self.hives.counters
            if kind == b"beat":
                counters.heartbeats += 1
            else:
                counters.worker_heartbeats += 1
        elif kind == b"gone":
            with contextlib.suppress(UnknownHive):
                self.hives.remove(rest.decode())
        elif kind == b"evict":
            self.hives.evict(rest.decode())
        elif kind in (b"freeze", b"thaw"):
            self.hives.set_frozen(int(rest) / 1000 if kind == b"freeze" else None)
        elif kind == b"svc":
            self.services.put(_SERVICE.decode(rest.partition(b" ")[2]))
        elif kind == b"svc-gone":
            self.services.discard(rest.decode())

    async def _shown(self, event: bytes) -> None:
        """Wait until the mirror has applied ``event`` (at most :data:`APPLY_WAIT` seconds: the
        write is stored either way)."""
        wanted = _event_id(event)
        if wanted <= _event_id(self._last):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (wanted, id(future), future))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(future), APPLY_WAIT)

    def _wake(self) -> None:
        applied = _event_id(self._last)
        while self._waiters and self._waiters[0][0] <= applied:
            future = heapq.heappop(self._waiters)[2]
            if not future.done():
                future.set_result(None)

    def _lose(self, exc: BaseException) -> None:
        if self._lost_at is None:
            self._lost_at = time.monotonic()
            log.warning(
                "shared state %s unreachable (%s); answering from this replica's mirror, "
                "writes refused until it is back", self.shown, _reason(exc),
            )  # fmt: skip

    def _found(self) -> None:
        if self._lost_at is not None:
            log.info("shared state %s in sync", self.shown)
        self._lost_at = None

    # -- housekeeping: the clock, eviction and the freeze, silent services --------------------

    async def _keep(self) -> None:
        """Each round: read Redis' clock and epoch (a flushed Redis keeps the connection); the
        replica holding the reaper lease evicts."""
        while True:
            _honour_cancel()
            try:
                await self._sync_clock()
                epoch = await self._redis.get(rl.EPOCH)
                self._epoch_changed = self._epoch is not None and epoch != self._epoch
                if await self._redis.set(
                    rl.REAP_LEASE, self.replica, nx=True, px=int(self.interval * 1000)
                ):
                    await self._reap()
                await self._flush_usage()
                self._warned = False
            except (RedisError, StateUnavailable) as exc:
                if not self._warned:
                    log.warning("shared state %s: housekeeping paused (%s)", self.shown,
                                _reason(exc))  # fmt: skip
                    self._warned = True
            await asyncio.sleep(self.interval)

    async def _sync_clock(self) -> None:
        before = time.monotonic()
        seconds, micros = await self._redis.time()
        self.clock.sync(seconds + micros / 1e6, (before + time.monotonic()) / 2)

    async def _reap(self) -> None:
        """Evict the stale hives, unless the freeze rule says the fleet went quiet at once."""
        ttl_ms = int(self.hives.ttl * 1000)
        now, stale, held, recent, frozen = await self._script("SURVEY", [ttl_ms])
        frozen_for = (int(now) - int(frozen)) / 1000 if frozen else None
        rule = {"min_hives": self.hives.freeze_min_hives, "limit": self.hives.freeze_limit}
        if should_freeze(len(stale), held, recent, frozen_for, **rule):  # type: ignore[arg-type]
            if not frozen:
                await self._script("FREEZE", ["freeze"])
            return
        if frozen:
            await self._script("FREEZE", ["thaw"])
        for hive_id in stale:
            await self._script("EVICT", [hive_id, ttl_ms])

    async def prune_services(self) -> list[str]:
        """Remove the silent services, each by a compare-and-set (another replica may prune
        the same one meanwhile: it is removed once)."""

        def prune(current: ServiceView | None) -> bytes | None:
            return b"" if current is not None and self.services.silent(current) else None

        silent = [n for n, v in self.services.held().items() if self.services.silent(v)]
        for name in silent:
            await self._change_service(name, prune)
        return silent

    # -- model usage --------------------------------------------------------------------------

    def record_use(self, model: str) -> None:
        """Count a use in this replica; Redis gets it with the next round."""
        self.usage.record(model)

    async def model_usage(self) -> dict[str, ModelUse]:
        """Redis' counts (the last read, while it is away) with this replica's unwritten ones."""
        with contextlib.suppress(StateUnavailable):
            pipe = self._redis.pipeline(transaction=False)
            pipe.hgetall(rl.USAGE_COUNT)
            pipe.hgetall(rl.USAGE_LAST)
            counts, lasts = await self._call(pipe.execute())
            self._stored_usage = {
                _text(m): ModelUse(count=int(n), last_used=_ms(lasts.get(m, b"0")))
                for m, n in counts.items()
            }
        return self.usage.merged(self._stored_usage)

    async def _flush_usage(self) -> None:
        uses = self.usage.take()
        if not uses:
            return
        args: list[str | int] = []
        for model, use in uses.items():
            args += [model, use.count, round(use.last_used.timestamp() * 1000)]
        try:
            await self._script("USE", args)
        except BaseException:
            self.usage.give_back(uses)
            raise

    # -- calls --------------------------------------------------------------------------------

    async def _script(self, name: str, args: list[Any]) -> Any:
        return await self._call(self._scripts[name](keys=[], args=args))

    async def _call(self, pending: Awaitable[T]) -> T:
        """Await a Redis call; a failure is :class:`StateUnavailable` (503, Retry-After)."""
        try:
            return await pending
        except RedisError as exc:
            raise StateUnavailable(
                f"the shared state {self.shown} is unavailable ({_reason(exc)}); writes resume "
                f"when it is back: retry after {StateUnavailable.retry_after} s"
            ) from None

    def _busy(self, what: str) -> StateUnavailable:
        return StateUnavailable(
            f"{what} changed {CAS_TRIES} times while this write was made; retry after "
            f"{StateUnavailable.retry_after} s"
        )


def _honour_cancel() -> None:
    """Raise a cancellation that a redis-py call consumed (it may end one mid-call with its own
    error, or none), so that a loop does not run on after :meth:`RedisState.stop`."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _text(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode()


def _event_id(raw: bytes) -> EventId:
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq or 0)


def _reason(exc: BaseException) -> str:
    text = redact(str(exc)) or type(exc).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _record(hive_id: str, row: Row) -> HiveRecord:
    host, port, devices = json.loads(row[b"shape"])
    return HiveRecord(
        hive_id=hive_id, host=host, port=port, devices=devices,
        created_at=_ms(row[b"created_ms"]), updated_at=_ms(row[b"updated_ms"]),
        status=row[b"status"].decode(),  # type: ignore[arg-type]  # written by BEAT/EVICT only
        last_heartbeat=datetime.fromisoformat(row[b"last_heartbeat"].decode()),
    )  # fmt: skip


def _ms(raw: bytes) -> datetime:
    return datetime.fromtimestamp(int(raw) / 1000, UTC)


def check_reachable(choice: StateChoice) -> str | None:
    """Try Redis once before serving: a refused password or database is an error (it will not
    go away); an unreachable server is a warning (returned), and the replica starts stale."""
    import redis

    client = redis.Redis.from_url(choice.url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        client.ping()
    except (redis.AuthenticationError, redis.ResponseError) as exc:
        raise StateChoiceError(
            f"--state {choice.shown}: Redis refused the connection ({_reason(exc)}); check the "
            "password and the database number in the URL"
        ) from None
    except RedisError as exc:
        return f"--state {choice.shown}: Redis is unreachable ({_reason(exc)}); starting stale"
    finally:
        client.close()
    return None
