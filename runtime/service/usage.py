"""How often each model was scheduled, and when last: the counts behind ``/v1/models``.

``/v1/schedule`` must not wait on a disk or on Redis, so a use is counted here, in memory
(:meth:`Usage.record`), and the uses not yet written (``pending``) go to the store in one batch
every few seconds and when the server stops (:meth:`Usage.take`; a failed write hands them back
with :meth:`Usage.give_back`, to go with the next batch). A server killed with -9 loses at most
the uses of that last interval.

``totals`` are the counts as this process knows them: everything for the memory state (loaded
from SQLite at start, then counted here); for a shared state, what Redis holds plus ``pending``
(:meth:`Usage.merged`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from runtime.service.types import ModelUse


class Usage:
    """Use counts by model: ``totals`` (as known here) and ``pending`` (not yet stored)."""

    def __init__(
        self, now: Callable[[], datetime], totals: Mapping[str, ModelUse] | None = None
    ) -> None:
        self.now = now
        self.totals: dict[str, ModelUse] = dict(totals or {})
        self.pending: dict[str, ModelUse] = {}

    def record(self, model: str) -> None:
        """One use of ``model``, now."""
        when = self.now()
        _add(self.totals, model, 1, when)
        _add(self.pending, model, 1, when)

    def take(self) -> dict[str, ModelUse]:
        """The uses not yet stored, which the caller now writes (and no longer pending)."""
        pending, self.pending = self.pending, {}
        return pending

    def give_back(self, unwritten: Mapping[str, ModelUse]) -> None:
        """Uses :meth:`take` handed out that could not be written: pending again."""
        for model, use in unwritten.items():
            _add(self.pending, model, use.count, use.last_used)

    def merged(self, stored: Mapping[str, ModelUse]) -> dict[str, ModelUse]:
        """``stored`` with the pending uses added."""
        merged = {m: ModelUse(count=u.count, last_used=u.last_used) for m, u in stored.items()}
        for model, use in self.pending.items():
            _add(merged, model, use.count, use.last_used)
        return merged


def _add(book: dict[str, ModelUse], model: str, count: int, when: datetime) -> None:
    use = book.get(model)
    if use is None:
        book[model] = ModelUse(count=count, last_used=when)
        return
    use.count += count
    if when > use.last_used:
        use.last_used = when
