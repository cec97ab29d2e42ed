"""Best-worker scheduling: ranking, eligibility, fallback, spread, and data age."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest
from support.service import FakeClock, heartbeat, worker

from runtime.service.hives import HiveRegistry
from runtime.service.scheduler import NoWorkerAvailable, Scheduler, ScheduleRequestError
from runtime.service.types import HiveHeartbeat


def registry(clock: FakeClock, *hives: tuple[str, list[dict[str, Any]]]) -> HiveRegistry:
    reg = HiveRegistry(ttl=30.0, clock=clock, freeze_min_hives=100)
    for hive_id, workers in hives:
        reg.heartbeat(msgspec.convert(heartbeat(hive_id, *workers), HiveHeartbeat))
    return reg


@pytest.mark.parametrize(
    ("workers", "best"),
    [
        ([worker("a", gpu_percent=50.0), worker("b", gpu_percent=10.0)], "b"),
        ([worker("a"), worker("b", gpu_percent=99.0)], "b"),  # missing gpu counts as 100
        ([worker("a", gpu_percent=100.0), worker("b")], "a"),  # tie at 100: worker id
        (
            [
                worker("a", gpu_percent=5.0, vram_bytes=900),
                worker("b", gpu_percent=5.0, vram_bytes=100),
            ],
            "b",
        ),
        ([worker("b", gpu_percent=5.0), worker("a", gpu_percent=5.0)], "a"),
        ([worker("a", gpu_percent=0.0, state="Busy"), worker("b", gpu_percent=80.0)], "b"),
        ([worker("a", gpu_percent=0.0, health_status="degraded"), worker("b")], "b"),
    ],
)
def test_ranking(workers: list[dict[str, Any]], best: str) -> None:
    loaded = [{**w, "model_id": "m"} for w in workers]
    answer = Scheduler(registry(FakeClock(), ("h", loaded))).best_worker("m")
    assert answer.worker.worker.worker_id == best
    assert answer.model_loaded


def test_loaded_model_wins_and_any_idle_worker_is_the_fallback() -> None:
    clock = FakeClock()
    reg = registry(
        clock,
        (
            "h1",
            [worker("cold", gpu_percent=0.0, model_id="other"), worker("free", gpu_percent=1.0)],
        ),
        ("h2", [worker("warm", gpu_percent=70.0, model_id="m")]),
    )
    sched = Scheduler(reg)
    assert sched.best_worker("m").worker.worker.worker_id == "warm"
    answer = sched.best_worker("x", spread=1)  # rbee's default: any idle worker, to load it
    assert (answer.worker.worker.worker_id, answer.model_loaded, answer.candidates) == (
        "cold",
        False,
        3,
    )
    with pytest.raises(NoWorkerAvailable) as err:
        sched.best_worker("x", fallback="none")  # loaded only
    assert str(err.value) == (
        "no healthy idle worker on an online hive has model 'x' loaded; drop fallback=none to "
        "accept an idle worker that would load it"
    )
    with pytest.raises(NoWorkerAvailable) as err:
        sched.best_worker("x", loadable=False)  # the registry does not have it
    assert str(err.value) == (
        "no healthy idle worker on an online hive has model 'x' loaded, and the registry does "
        "not list it, so no worker can load it; GET /v1/models lists the registry's models"
    )
    assert sched.best_worker("m", loadable=False).worker.worker.worker_id == "warm"


def test_no_idle_worker_at_all() -> None:
    sched = Scheduler(registry(FakeClock(), ("h", [worker("busy", state="Busy", model_id="m")])))
    with pytest.raises(NoWorkerAvailable) as err:
        sched.best_worker("m")
    assert str(err.value) == (
        "no worker can serve model 'm': no healthy idle worker on an online hive; retry when one "
        "is idle (GET /v1/workers lists the workers)"
    )


def test_offline_hives_are_skipped_and_data_age_is_reported() -> None:
    clock = FakeClock()
    reg = registry(
        clock,
        ("h1", [worker("a", gpu_percent=0.0, model_id="m")]),
        ("h2", [worker("b", gpu_percent=50.0, model_id="m")]),
    )
    clock.advance(12.5)
    sched = Scheduler(reg)
    answer = sched.best_worker("m")
    assert (answer.worker.worker.worker_id, answer.data_age_seconds) == ("a", 12.5)
    clock.advance(10)
    reg.heartbeat(msgspec.convert(heartbeat("h2", worker("b", model_id="m")), HiveHeartbeat))
    clock.advance(10)  # h1 is now 32.5 s old
    answer = sched.best_worker("m")
    assert (answer.worker.worker.worker_id, answer.data_age_seconds) == ("b", 10.0)
    clock.advance(30)
    with pytest.raises(NoWorkerAvailable):
        sched.best_worker("m")


def test_spread_picks_the_better_of_two_random_candidates_by_default() -> None:
    workers = [worker(f"w{i}", gpu_percent=float(i), model_id="m") for i in range(10)]
    sched = Scheduler(registry(FakeClock(), ("h", workers)), rng=random.Random(7))
    assert {sched.best_worker("m", spread=1).worker.worker.worker_id for _ in range(20)} == {"w0"}
    chosen = [sched.best_worker("m").worker.worker.worker_id for _ in range(200)]
    assert "w9" not in chosen  # the worst can never beat its partner
    assert len(set(chosen)) >= 5
    assert chosen.count("w0") < 100  # the best no longer takes every request
    rng = random.Random(7)
    expected = [min(rng.sample(range(10), 2)) for _ in range(200)]
    assert chosen == [f"w{i}" for i in expected]


def test_spread_must_be_one_or_two() -> None:
    sched = Scheduler(registry(FakeClock()))
    with pytest.raises(ScheduleRequestError) as err:
        sched.best_worker("m", spread=3)
    assert str(err.value) == "spread=3 is not supported: use 1 or 2"


def test_candidates_come_from_the_model_index() -> None:
    reg = registry(
        FakeClock(),
        ("h", [worker("a", model_id="m"), worker("b", model_id="n"), worker("c", state="Busy",
               model_id="m")]),
    )  # fmt: skip
    assert [key[2] for key in reg.candidates("m")] == ["a"]
    assert [key[2] for key in reg.candidates("n")] == ["b"]
    assert Scheduler(reg).best_worker("m").candidates == 1
