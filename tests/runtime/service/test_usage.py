"""Model use counts: counted in memory, handed out in batches, handed back when a write fails;
stored in the SQLite catalog across a restart."""

from __future__ import annotations

from pathlib import Path

from support.service import T0, FakeWallClock

from runtime.service.catalog import Catalog
from runtime.service.types import ModelUse
from runtime.service.usage import Usage


def counts(book: dict[str, ModelUse]) -> dict[str, tuple[int, float]]:
    return {m: (u.count, u.last_used.timestamp() - T0.timestamp()) for m, u in book.items()}


def test_uses_are_counted_then_taken_or_given_back() -> None:
    wall = FakeWallClock()
    usage = Usage(wall, {"m": ModelUse(count=5, last_used=T0)})
    usage.record("m")
    wall.advance(10)
    usage.record("n")
    assert counts(usage.totals) == {"m": (6, 0.0), "n": (1, 10.0)}
    taken = usage.take()
    assert (counts(taken), usage.pending) == ({"m": (1, 0.0), "n": (1, 10.0)}, {})
    wall.advance(5)
    usage.record("n")
    usage.give_back(taken)  # the write failed
    assert counts(usage.pending) == {"m": (1, 0.0), "n": (2, 15.0)}
    stored = {"n": ModelUse(count=7, last_used=T0)}
    assert counts(usage.merged(stored)) == {"n": (9, 15.0), "m": (1, 0.0)}
    assert stored["n"].count == 7  # merged() leaves what it is given alone


def test_the_catalog_adds_uses_and_keeps_the_last(tmp_path: Path) -> None:
    wall = FakeWallClock()
    catalog = Catalog(tmp_path / "rt.db")
    later = ModelUse(count=2, last_used=T0.replace(hour=5))
    catalog.add_uses({"m": later})
    catalog.add_uses({"m": ModelUse(count=3, last_used=T0), "n": ModelUse(count=1, last_used=T0)})
    catalog.add_uses({})
    catalog.close()
    again = Catalog(tmp_path / "rt.db", now=wall)
    assert again.usage() == {"m": ModelUse(count=5, last_used=later.last_used),
                             "n": ModelUse(count=1, last_used=T0)}  # fmt: skip
    again.close()
