"""Small helpers shared by the benchmarks: timing, temp dirs, printing."""

from __future__ import annotations

import contextlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def scratch(name: str) -> Iterator[Path]:
    """A temporary directory for generated data, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def best_of(runs: int, fn: Callable[[], object]) -> float:
    """The fastest of ``runs`` wall-clock timings of ``fn`` (seconds)."""
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return min(timings)


def median_of(runs: int, fn: Callable[[], object]) -> float:
    """The median of ``runs`` wall-clock timings of ``fn`` (seconds)."""
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def row(label: str, value: str) -> None:
    """One aligned result line."""
    print(f"  {label:<48} {value}")
