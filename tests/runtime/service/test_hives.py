"""The hive registry: heartbeats, queries, liveness on an injected clock, eviction and freeze."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.service import T0, FakeClock, heartbeat, worker

from runtime.service.hives import (
    HiveRegistry,
    UnknownHive,
    UnknownWorker,
    WorkerConflict,
    should_freeze,
)
from runtime.service.types import HiveHeartbeat, Resources, WorkerHeartbeat, WorkerView
from runtime.service.worker_index import matches, rank, schedulable


def beat(hive_id: str, *workers: dict[str, Any], **fields: Any) -> HiveHeartbeat:
    return msgspec.convert(heartbeat(hive_id, *workers, **fields), HiveHeartbeat)


def fleet(clock: FakeClock, **kw: Any) -> HiveRegistry:
    reg = HiveRegistry(ttl=30.0, clock=clock, **kw)
    reg.heartbeat(
        beat(
            "h1",
            worker("w1", model_id="llama", backend="cuda", url="http://10.0.0.1:9001",
                   vram_bytes=1000, ram_bytes=10, cpu_percent=5.5, gpu_percent=20.0),
            worker("w2", state="Busy", model_id="llama", backend="cuda", vram_bytes=500,
                   gpu_percent=90.0),
        )
    )  # fmt: skip
    reg.heartbeat(beat("h2", worker("w3", backend="cpu", state="Loading", ram_bytes=7)))
    return reg


def test_queries_after_heartbeats() -> None:
    reg = fleet(FakeClock())
    assert reg.online_hives() == ["h1", "h2"]
    assert reg.is_online("h1") and not reg.is_online("nope")
    assert [h.hive_id for h in reg.hives()] == ["h1", "h2"]
    view = reg.hive("h1")
    assert (view.online, view.age_seconds, view.timestamp) == (True, 0.0, T0)
    assert [w.worker_id for w in view.workers] == ["w1", "w2"]
    assert reg.resources("h1") == Resources(
        workers=2, idle=1, busy=1, loading=0, vram_bytes=1500, ram_bytes=10, cpu_percent=5.5,
        gpu_percent=55.0, gpu_percent_per_worker={"w1": 20.0, "w2": 90.0},
    )  # fmt: skip
    assert (reg.resources("h2").gpu_percent, reg.resources("h2").gpu_percent_per_worker) == (
        None, {},
    )  # fmt: skip
    assert reg.worker_counts() == {"total": 3, "Idle": 1, "Busy": 1, "Loading": 1}
    assert reg.hive_count() == (2, 2)
    assert reg.worker("w3").hive_id == "h2"
    assert reg.worker_url("w1") == "http://10.0.0.1:9001"
    assert reg.worker_url("w2") is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["w1", "w2", "w3"]),
        ({"model": "llama"}, ["w1", "w2"]),
        ({"backend": "cpu"}, ["w3"]),
        ({"state": "Busy"}, ["w2"]),
        ({"model": "llama", "state": "Idle"}, ["w1"]),
        ({"hive_id": "h2"}, ["w3"]),
        ({"model": "whisper"}, []),
    ],
)
def test_worker_filters(query: dict[str, str], expected: list[str]) -> None:
    reg = fleet(FakeClock())
    assert [v.worker.worker_id for v in reg.workers(**query)] == expected


def test_named_worker_queries() -> None:
    reg = fleet(FakeClock())
    assert [v.worker.worker_id for v in reg.idle_workers()] == ["w1"]
    assert [v.worker.worker_id for v in reg.workers_by_model("llama")] == ["w1", "w2"]
    assert [v.worker.worker_id for v in reg.workers_by_backend("cuda")] == ["w1", "w2"]
    assert [v.worker.worker_id for v in reg.hive_workers("h2")] == ["w3"]


def test_a_heartbeat_replaces_the_hive_state() -> None:
    reg = fleet(FakeClock())
    assert reg.heartbeat(beat("h1", worker("w9"))) is False
    assert [w.worker_id for w in reg.hive("h1").workers] == ["w9"]
    with pytest.raises(UnknownWorker) as err:
        reg.worker("w1")
    assert str(err.value) == (
        "worker 'w1' is not known: no hive reports it; its hive must send a heartbeat listing "
        "it first (GET /v1/workers lists the workers held)"
    )
    assert reg.candidates("llama") == []


def test_unknown_and_removed_hive() -> None:
    reg = fleet(FakeClock())
    reg.remove("h2")
    with pytest.raises(UnknownHive) as err:
        reg.hive("h2")
    assert str(err.value) == (
        "hive 'h2' is not known: it has not sent a heartbeat since the server started, or it "
        "was evicted or removed (GET /v1/hives lists the hives held)"
    )
    with pytest.raises(UnknownWorker):
        reg.worker("w3")


def test_online_hives_max_age() -> None:
    clock = FakeClock()
    reg = fleet(clock)
    clock.advance(10)
    reg.heartbeat(beat("h2"))
    assert reg.online_hives(max_age=5) == ["h2"]
    assert reg.online_hives() == ["h1", "h2"]
    assert reg.age("h1") == 10


def test_expiry_evicts_a_minority_of_hives() -> None:
    clock = FakeClock()
    evicted: list[str] = []
    reg = HiveRegistry(ttl=30.0, clock=clock, on_evict=evicted.append)
    for name in ("a", "b", "c", "d", "e"):
        reg.heartbeat(beat(name, worker(f"{name}-w")))
    clock.advance(20)
    for name in ("a", "b", "c"):
        reg.heartbeat(beat(name, worker(f"{name}-w")))
    clock.advance(10)
    assert not reg.is_online("d")
    reg.tick()
    assert evicted == ["d", "e"]
    assert not reg.frozen
    assert reg.online_hives() == ["a", "b", "c"]
    assert reg.counters.evictions == 2
    with pytest.raises(UnknownWorker):
        reg.worker("d-w")


def test_freeze_when_half_expire_then_thaw_on_heartbeats() -> None:
    clock = FakeClock()
    reg = HiveRegistry(ttl=30.0, clock=clock)
    for name in ("a", "b", "c", "d"):
        reg.heartbeat(beat(name))
    clock.advance(10)
    reg.heartbeat(beat("a"))
    reg.heartbeat(beat("b"))
    clock.advance(25)  # c and d are stale: half of the fleet
    assert reg.frozen
    assert reg.hive_count() == (4, 2)
    assert reg.counters.evictions == 0
    reg.heartbeat(beat("c"))
    clock.advance(1)  # the next check is up to a second later
    assert not reg.frozen
    assert reg.hive_count() == (3, 3)
    assert reg.counters.evictions == 1
    assert reg.counters.freezes == 1


def test_a_gradual_loss_within_one_window_freezes_too() -> None:
    clock = FakeClock()
    reg = HiveRegistry(ttl=30.0, clock=clock)
    names = [f"h{i}" for i in range(10)]
    for name in names:
        reg.heartbeat(beat(name))
    for silent in range(2, 10, 2):  # one more pair goes silent every 5 s
        clock.advance(5)
        for name in names[silent:]:
            reg.heartbeat(beat(name))
    clock.advance(10)  # h0, h1 expire: 2 of 10 -> evicted
    reg.tick()
    assert (reg.counters.evictions, reg._frozen_at) == (2, None)
    clock.advance(5)  # h2, h3: 4 of 10 within one window -> evicted
    reg.tick()
    assert (reg.counters.evictions, reg._frozen_at) == (4, None)
    clock.advance(5)  # h4, h5: 6 of the 10 within one window -> freeze
    assert reg.frozen
    assert (reg.counters.evictions, reg.hive_count()) == (4, (6, 4))


def test_freeze_gives_up_after_the_limit() -> None:
    clock = FakeClock()
    reg = HiveRegistry(ttl=30.0, clock=clock, freeze_limit=120.0)
    for name in ("a", "b", "c", "d"):
        reg.heartbeat(beat(name))
    clock.advance(31)
    assert reg.frozen
    clock.advance(60)
    assert reg.frozen
    clock.advance(60)
    assert not reg.frozen
    assert reg.hives() == []
    assert reg.counters.evictions == 4


def test_small_fleets_do_not_freeze() -> None:
    clock = FakeClock()
    reg = HiveRegistry(ttl=30.0, clock=clock)
    reg.heartbeat(beat("a"))
    clock.advance(30)
    assert not reg.frozen
    assert reg.hives() == []


def test_the_expiry_heap_stays_bounded() -> None:
    clock = FakeClock()
    reg = HiveRegistry(ttl=30.0, clock=clock)
    for _ in range(1000):
        reg.heartbeat(beat("a"))
        clock.advance(0.001)
    assert len(reg._heap) <= 4 * 1 + 64 + 1


def test_worker_ids_are_unique_across_online_hives() -> None:
    clock = FakeClock()
    reg = fleet(clock)
    with pytest.raises(WorkerConflict) as err:
        reg.heartbeat(beat("h3", worker("w1")))
    assert str(err.value) == (
        "$.workers[0].worker_id: worker 'w1' is already reported by online hive 'h1'; worker "
        "ids must be unique across hives (rename the worker, or DELETE /v1/hives/h1 first)"
    )
    with pytest.raises(WorkerConflict) as err:
        reg.heartbeat(beat("h3", worker("x"), worker("x")))
    assert str(err.value) == (
        "$.workers[1].worker_id: worker 'x' is listed twice in the heartbeat of hive 'h3'; "
        "list each worker once"
    )


def test_a_worker_moves_away_from_a_stale_hive() -> None:
    clock = FakeClock()
    reg = HiveRegistry(ttl=30.0, clock=clock, freeze_min_hives=100)
    reg.heartbeat(beat("old", worker("w1"), worker("w2")))
    clock.advance(31)
    reg.heartbeat(beat("new", worker("w1")))  # "old" is evicted by the tick first
    assert reg.worker("w1").hive_id == "new"
    reg = HiveRegistry(ttl=30.0, clock=clock, freeze_min_hives=1, freeze_limit=1000)
    reg.heartbeat(beat("old", worker("w1"), worker("w2")))
    reg.heartbeat(beat("x"))
    clock.advance(31)
    reg.heartbeat(beat("new", worker("w1")))  # frozen: "old" is kept but loses w1
    assert reg.worker("w1").hive_id == "new"
    assert [w.worker_id for w in reg.hive("old").workers] == ["w2"]


def test_worker_heartbeat_updates_health_and_the_index() -> None:
    reg = fleet(FakeClock())
    assert [key[2] for key in reg.candidates("llama")] == ["w1"]
    when = T0.replace(minute=5)
    view = reg.worker_heartbeat(
        WorkerHeartbeat(worker_id="w1", timestamp=when, health_status="degraded")
    )
    assert (view.worker.health_status, view.worker.last_heartbeat) == ("degraded", when)
    assert reg.candidates("llama") == []
    assert reg.counters.worker_heartbeats == 1
    with pytest.raises(UnknownWorker):
        reg.worker_heartbeat(WorkerHeartbeat(worker_id="zz", timestamp=T0, health_status="healthy"))


def test_devices_are_left_to_the_catalog() -> None:
    reg = HiveRegistry(clock=FakeClock())
    reg.heartbeat(beat("h", devices=["cuda:0"], host="gpu1"))
    kept = reg._hives["h"].beat
    assert (kept.devices, kept.host) == (None, None)


@pytest.mark.parametrize(
    ("stale", "held", "recent", "frozen_for", "frozen"),
    [
        (0, 10, 0, None, False),  # nothing due
        (2, 10, 0, None, False),  # a fifth of the fleet: evict
        (5, 10, 0, None, True),  # half: freeze
        (3, 8, 2, None, True),  # half of the fleet of one TTL ago, counting the evicted
        (3, 3, 0, None, False),  # a fleet smaller than freeze_min_hives
        (5, 10, 0, 299.0, True),  # frozen, within the limit
        (5, 10, 0, 300.0, False),  # the limit reached: the silence is real
    ],
)
def test_the_freeze_rule(
    stale: int, held: int, recent: int, frozen_for: float | None, frozen: bool
) -> None:
    assert should_freeze(stale, held, recent, frozen_for, min_hives=4, limit=300.0) is frozen


def test_a_mirror_evicts_and_freezes_only_when_told() -> None:
    clock = FakeClock()
    mirror = HiveRegistry(ttl=30.0, clock=clock, evicts=False)
    for name in ("h1", "h2"):
        mirror.apply(beat(name, worker(f"{name}-w", model_id="llama")), clock.now - 5)
    clock.advance(100)
    assert [h.hive_id for h in mirror.hives()] == ["h1", "h2"]  # long stale, still held
    assert (mirror.hive_count(), mirror.candidates("llama")) == ((2, 0), [])
    mirror.set_frozen(clock.now)
    mirror.set_frozen(clock.now)
    assert (mirror.frozen, mirror.counters.freezes) == (True, 1)
    mirror.evict("h1")
    mirror.evict("never-held")
    mirror.set_frozen(None)
    assert ([h.hive_id for h in mirror.hives()], mirror.frozen) == (["h2"], False)
    mirror.replace_all([(beat("h3", worker("h2-w")), clock.now)])
    assert mirror.worker("h2-w").hive_id == "h3"
    assert mirror.hive("h3").age_seconds == 0.0


# -- property: every indexed query equals a linear scan over the hives held ----------------

HIVES = ["h0", "h1", "h2"]
MODELS = [None, "m0", "m1", "m2"]
BACKENDS = [None, "cpu", "cuda", "metal"]
STATES = ["Idle", "Busy", "Loading"]

_reports = st.builds(
    lambda wid, model, backend, state, health, gpu, vram: worker(
        wid, model_id=model, backend=backend, state=state, health_status=health,
        gpu_percent=gpu, vram_bytes=vram,
    ),
    st.sampled_from([f"w{i}" for i in range(6)]), st.sampled_from(MODELS),
    st.sampled_from(BACKENDS), st.sampled_from(STATES), st.sampled_from(["healthy", "degraded"]),
    st.sampled_from([None, 0.0, 50.0, 100.0]), st.sampled_from([None, 0, 10]),
)  # fmt: skip
_workers = st.lists(_reports, max_size=4, unique_by=lambda w: w["worker_id"])
_hive = st.sampled_from(HIVES)
_advance = st.tuples(st.just("advance"), st.sampled_from([-4.0, 0.5, 10.0, 29.5, 30.0, 100.0]))
_ops = st.one_of(
    st.tuples(st.just("heartbeat"), _hive, _workers),
    st.tuples(st.just("apply"), _hive, _workers, st.sampled_from([0.0, 5.0, 29.0, 30.0, 40.0])),
    st.tuples(st.just("worker_heartbeat"), st.sampled_from([f"w{i}" for i in range(6)]),
              st.sampled_from(["healthy", "degraded"])),
    st.tuples(st.just("remove"), _hive),
    st.tuples(st.just("evict"), _hive),
    st.tuples(st.just("replace_all"),
              st.lists(st.tuples(_hive, _workers, st.sampled_from([0.0, 20.0, 35.0])),
                       max_size=3, unique_by=lambda row: row[0])),
    _advance,
    _advance,  # twice as likely: time moving (and stepping back) is what liveness turns on
)  # fmt: skip


def _run(reg: HiveRegistry, clock: FakeClock, op: tuple[Any, ...]) -> None:
    kind, *args = op
    try:
        if kind == "heartbeat":
            reg.heartbeat(beat(args[0], *args[1]))
        elif kind == "apply":
            reg.apply(beat(args[0], *args[1]), clock.now - args[2])
        elif kind == "worker_heartbeat":
            reg.worker_heartbeat(
                WorkerHeartbeat(worker_id=args[0], timestamp=T0, health_status=args[1])
            )
        elif kind == "remove":
            reg.remove(args[0])
        elif kind == "evict":
            reg.evict(args[0])
        elif kind == "replace_all":
            reg.replace_all([(beat(h, *ws), clock.now - ago) for h, ws, ago in args[0]])
        else:
            clock.advance(args[0])
    except (UnknownHive, UnknownWorker, WorkerConflict):
        pass


_FILTERS = [  # each filter alone, none, and two together
    *((m, None, None) for m in [*MODELS, "absent"]),
    *((None, b, None) for b in BACKENDS),
    *((m, b, s) for m in [None, "m0"] for b in [None, "cuda"] for s in [None, *STATES]),
]


def _check_against_a_scan(reg: HiveRegistry) -> None:
    held = reg.hives()  # the beats themselves, each with whether its hive is online now
    online = [(h.hive_id, w) for h in held if h.online for w in h.workers]
    for model, backend, state in _FILTERS:
        scan = sorted(
            (WorkerView(hive_id=h, online=True, worker=w) for h, w in online
             if matches(w, model, backend, state)),
            key=lambda v: v.worker.worker_id,
        )  # fmt: skip
        assert reg.workers(model=model, backend=backend, state=state) == scan
    for h in held:
        on_hive = sorted(h.workers, key=lambda w: w.worker_id) if h.online else []
        assert [v.worker for v in reg.workers(hive_id=h.hive_id)] == on_hive
        for w in h.workers:
            assert reg.worker(w.worker_id) == WorkerView(
                hive_id=h.hive_id, online=h.online, worker=w
            )
    counts = {s: sum(w.state == s for _, w in online) for s in STATES}
    assert reg.worker_counts() == {"total": len(online), **counts}
    assert reg.hive_count() == (len(held), sum(h.online for h in held))
    ready = [w for _, w in online if schedulable(w)]
    assert reg.idle_candidates() == sorted(rank(w) for w in ready)
    for model in [*MODELS, "absent"]:
        assert reg.candidates(model) == sorted(rank(w) for w in ready if w.model_id == model)


@pytest.mark.slow
@pytest.mark.parametrize("evicts", [True, False])
@settings(max_examples=200, deadline=None, database=None)
@given(ops=st.lists(_ops, min_size=10, max_size=40))
def test_every_indexed_query_equals_a_linear_scan(evicts: bool, ops: list[tuple[Any, ...]]) -> None:
    clock = FakeClock()
    reg = HiveRegistry(ttl=30.0, clock=clock, evicts=evicts, freeze_min_hives=3, freeze_limit=100.0)
    for op in ops:
        _run(reg, clock, op)
        _check_against_a_scan(reg)


def test_a_mirror_clock_stepping_back_brings_a_stale_hive_online_again() -> None:
    clock = FakeClock()
    mirror = HiveRegistry(ttl=30.0, clock=clock, evicts=False)
    mirror.apply(beat("h", worker("w", model_id="m")), clock.now - 30)  # stale on arrival
    assert (mirror.workers(), mirror.candidates("m"), mirror.hive_count()) == ([], [], (1, 0))
    clock.advance(-4)  # the shared state's clock offset, measured again
    assert [v.worker.worker_id for v in mirror.workers(model="m")] == ["w"]
    assert [key[2] for key in mirror.candidates("m")] == ["w"]
    assert mirror.hive_count() == (1, 1)


def test_an_older_beat_applied_to_a_mirror_ends_the_hive_sooner() -> None:
    clock = FakeClock()
    mirror = HiveRegistry(ttl=30.0, clock=clock, evicts=False)
    mirror.apply(beat("h", worker("w", model_id="m")), clock.now)
    mirror.apply(beat("h", worker("w", model_id="m")), clock.now - 29)  # seen earlier
    clock.advance(1)
    assert (mirror.workers(), mirror.candidates("m"), mirror.hive_count()) == ([], [], (1, 0))
