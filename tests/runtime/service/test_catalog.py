"""The SQLite catalog: services and hives survive a restart; heartbeats are buffered."""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

import msgspec
import pytest
from support.service import T0, FakeWallClock, heartbeat

from runtime.service.catalog import Catalog, CatalogError, CatalogInUse
from runtime.service.types import HiveHeartbeat, ServiceView


def beat(hive_id: str, **fields: object) -> HiveHeartbeat:
    return msgspec.convert(heartbeat(hive_id, **fields), HiveHeartbeat)


def service(name: str) -> ServiceView:
    return ServiceView(
        name=name, host="10.0.0.1", port=80, hostname=None, url=None, status="running",
        metadata={"team": "ml"}, timestamp=T0, last_heartbeat=T0, health_status="unknown",
        is_healthy=False,
    )  # fmt: skip


def test_hives_survive_a_restart_as_unknown(tmp_path: Path) -> None:
    wall = FakeWallClock()
    db = tmp_path / "runtime.db"
    cat = Catalog(db, now=wall)
    cat.record_heartbeat(beat("h1", host="gpu1", port=9000, devices=["cuda:0", "cuda:1"]))
    [row] = cat.hives()
    assert (row.hive_id, row.host, row.port, row.devices) == (
        "h1",
        "gpu1",
        9000,
        ["cuda:0", "cuda:1"],
    )
    assert (row.status, row.created_at, row.last_heartbeat) == ("Online", T0, T0)
    cat.close()
    [row] = Catalog(db, now=wall).hives()
    assert (row.hive_id, row.host, row.status) == ("h1", "gpu1", "Unknown")


def test_status_changes_and_forgetting(tmp_path: Path) -> None:
    wall = FakeWallClock()
    cat = Catalog(tmp_path / "c.db", now=wall)
    cat.record_heartbeat(beat("h1"))
    wall.advance(60)
    cat.mark_offline("h1")
    cat.mark_offline("never-seen")
    [row] = cat.hives()
    assert (row.status, row.created_at, row.updated_at) == ("Offline", T0, wall.now)
    cat.record_heartbeat(beat("h1"))
    assert [r.status for r in cat.hives()] == ["Online"]
    cat.forget_hive("h1")
    assert cat.hives() == []


def test_last_heartbeat_is_written_on_flush(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    cat = Catalog(db)
    cat.record_heartbeat(beat("h1"))
    later = T0.replace(hour=3)
    cat.record_heartbeat(msgspec.structs.replace(beat("h1"), timestamp=later))
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT last_heartbeat FROM hives").fetchone() == (T0.isoformat(),)
    cat.flush()
    assert raw.execute("SELECT last_heartbeat FROM hives").fetchone() == (later.isoformat(),)
    raw.close()
    cat.close()


def test_services_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    cat = Catalog(db)
    cat.save_service(service("b"))
    cat.save_service(service("a"))
    cat.delete_service("b")
    cat.delete_service("missing")
    cat.close()
    assert Catalog(db).services() == [service("a")]


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(CatalogError) as err:
        Catalog(bad)
    assert str(err.value) == (
        f"catalog {bad}: cannot open it as an SQLite database (file is not a database); "
        "pass --db a writable path, or move the file away to start afresh"
    )


def test_one_catalog_per_database_file(tmp_path: Path) -> None:
    db = tmp_path / "rt.db"
    first = Catalog(db)
    assert (tmp_path / "rt.db.lock").read_text() == f"{os.getpid()} {socket.gethostname()}\n"
    with pytest.raises(CatalogInUse) as err:
        Catalog(db)
    assert str(err.value) == (
        f"catalog {db} is in use by process {os.getpid()} on host {socket.gethostname()} "
        f"(lock file {db}.lock); stop that server or pass another --db"
    )
    first.close()
    Catalog(db).close()  # free again
    Catalog(":memory:").close()
    Catalog(":memory:").close()


def test_a_lock_file_nobody_holds_blocks_nothing(tmp_path: Path) -> None:
    db = tmp_path / "rt.db"
    (tmp_path / "rt.db.lock").write_text("4242 a-host-that-died\n")
    Catalog(db).close()


def test_a_refused_database_releases_its_lock(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(CatalogError):
        Catalog(bad)
    bad.unlink()
    Catalog(bad).close()
