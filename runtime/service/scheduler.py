"""Choosing the best worker for a model.

The best worker is on an online hive, healthy and Idle, with the model already loaded; among
those the lowest ``gpu_percent`` wins (a missing figure counts as 100), ties go to lower VRAM use,
then to the lower worker id. When no such worker has the model loaded, any healthy idle worker
is chosen instead, to load it (``fallback="any"``, the default, as rbee's
``find_best_worker_for_model`` does); ``fallback="none"`` asks for a worker with the model loaded
or nothing. A model that no worker has loaded and that the registry does not list
(``loadable=False``) gets no fallback: no worker could load it.

The answer is the better of two candidates drawn at random (``spread=2``, the default: "power of
two choices"), so that many routers asking at once do not all pile onto the single best worker
(a herd); ``spread=1`` always answers the single best, the same state giving the same answer.
When nothing can serve, :class:`NoWorkerAvailable` is a 503, as rbee's routers expect.

Candidates come from the registry's pools of healthy idle workers on online hives
(:mod:`runtime.service.worker_index`), one per model and one of them all, each kept in rank order
(:func:`~runtime.service.worker_index.rank`): the best is the head of a pool, two random
candidates are two positions in it, and the count is its length. An answer costs the same
whether the fleet has ten workers or ten thousand.
"""

from __future__ import annotations

import random
from typing import Literal

from runtime.errors import RegistryError
from runtime.service.hives import HiveRegistry
from runtime.service.types import ScheduleAnswer

Fallback = Literal["none", "any"]


class NoWorkerAvailable(RegistryError, LookupError):
    """Raised when no healthy idle worker on an online hive can serve the requested model
    (503)."""


class ScheduleRequestError(RegistryError, ValueError):
    """Raised when a schedule query has a bad parameter (``spread`` or ``fallback``)."""


class Scheduler:
    """Picks workers from a :class:`HiveRegistry`; ``rng`` is injected for reproducible spread."""

    def __init__(self, hives: HiveRegistry, rng: random.Random | None = None) -> None:
        self.hives = hives
        self.rng = rng or random.Random()

    def best_worker(
        self, model: str, *, fallback: Fallback = "any", spread: int = 2, loadable: bool = True
    ) -> ScheduleAnswer:
        """The best worker for ``model``; raises :class:`NoWorkerAvailable` when there is none.
        ``loadable`` is False when the registry does not list ``model``."""
        if spread not in (1, 2):
            raise ScheduleRequestError(f"spread={spread} is not supported: use 1 or 2")
        loaded = True
        pool = self.hives.candidates(model)
        if not pool and fallback == "any" and loadable:
            loaded = False  # none has it loaded, so every idle worker is one that would load it
            pool = self.hives.idle_candidates()
        if not pool:
            raise NoWorkerAvailable(self._none_message(model, fallback, loadable))
        best = min(self.rng.sample(pool, 2)) if spread == 2 and len(pool) > 2 else pool[0]
        view, seen = self.hives.candidate(best)
        return ScheduleAnswer(
            model=model,
            model_loaded=loaded,
            candidates=len(pool),
            data_age_seconds=round(self.hives.clock() - seen, 3),
            worker=view,
        )

    @staticmethod
    def _none_message(model: str, fallback: Fallback, loadable: bool) -> str:
        loaded = f"no healthy idle worker on an online hive has model {model!r} loaded"
        if fallback == "none":
            return f"{loaded}; drop fallback=none to accept an idle worker that would load it"
        if not loadable:
            return (
                f"{loaded}, and the registry does not list it, so no worker can load it; "
                "GET /v1/models lists the registry's models"
            )
        return (
            f"no worker can serve model {model!r}: no healthy idle worker on an online hive; "
            "retry when one is idle (GET /v1/workers lists the workers)"
        )
