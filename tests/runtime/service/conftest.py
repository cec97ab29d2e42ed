"""Fixtures of the service tests: a runtime on a fake clock and the app serving it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.service import ADMIN, HIVE_A, HIVE_B, Client, FakeClock, serve

from runtime.service.server import Runtime, build_runtime, create_app
from runtime.service.tokens import Tokens


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runtime(clock: FakeClock, tmp_path: Path) -> Iterator[Runtime]:
    """An admin token and tokens of hives a and b; the catalog under ``tmp_path``."""
    rt = build_runtime(
        tokens=Tokens({ADMIN: None, HIVE_A: "a", HIVE_B: "b"}), db=tmp_path / "rt.db", clock=clock
    )
    yield rt
    rt.catalog.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Client]:
    """A client with the admin token of the app serving ``runtime`` through uvicorn."""
    with serve(create_app(runtime)) as url:
        yield Client(url, ADMIN)
