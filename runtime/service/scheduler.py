"""Choosing the best worker for a model.

The best worker is on an online hive, healthy and Idle, with the model already loaded; among
those the lowest ``gpu_percent`` wins (a missing figure counts as 100), ties go to lower VRAM use,
then to the lower worker id, so the same state always gives the same answer. An idle worker
without the model is chosen only when the caller allows it (``fallback="any"``). With
``spread=2`` the answer is the better of two candidates drawn at random, so that many callers
asking at once do not all pile onto the single best worker ("power of two choices").

Candidates come from the registry's per-model index of healthy idle workers, each stored with its
rank (:func:`runtime.service.hives.rank`) already computed: a query reads only the workers that
could be the answer, never the whole fleet.
"""

from __future__ import annotations

import random
from typing import Literal

from runtime.errors import RegistryError
from runtime.service.hives import HiveRegistry
from runtime.service.types import ScheduleAnswer, WorkerView

Fallback = Literal["none", "any"]


class NoWorkerAvailable(RegistryError, LookupError):
    """Raised when no healthy idle worker on an online hive can serve the requested model."""


class ScheduleRequestError(RegistryError, ValueError):
    """Raised when a schedule query has a bad parameter (``spread`` or ``fallback``)."""


class Scheduler:
    """Picks workers from a :class:`HiveRegistry`; ``rng`` is injected for reproducible spread."""

    def __init__(self, hives: HiveRegistry, rng: random.Random | None = None) -> None:
        self.hives = hives
        self.rng = rng or random.Random()

    def best_worker(
        self, model: str, *, fallback: Fallback = "none", spread: int = 1
    ) -> ScheduleAnswer:
        """The best worker for ``model``; raises :class:`NoWorkerAvailable` when there is none."""
        if spread not in (1, 2):
            raise ScheduleRequestError(f"spread={spread} is not supported: use 1 or 2")
        self.hives.tick()
        loaded = True
        candidates = self.hives.candidates(model)
        if not candidates and fallback == "any":
            loaded = False
            candidates = self.hives.other_candidates(model)
        if not candidates:
            raise NoWorkerAvailable(self._none_message(model, fallback))
        pool = self.rng.sample(candidates, 2) if spread == 2 and len(candidates) > 2 else candidates
        chosen = min(pool)  # candidates compare by their rank: (gpu, vram, worker id)
        return ScheduleAnswer(
            model=model,
            model_loaded=loaded,
            candidates=len(candidates),
            data_age_seconds=round(self.hives.clock() - chosen.hive.seen, 3),
            worker=WorkerView(hive_id=chosen.hive.hive_id, online=True, worker=chosen.report),
        )

    @staticmethod
    def _none_message(model: str, fallback: Fallback) -> str:
        if fallback == "any":
            return f"no healthy idle worker on an online hive for model {model!r}, nor any other"
        return (
            f"no healthy idle worker on an online hive has model {model!r} loaded; "
            "ask with fallback=any to accept an idle worker without it"
        )
