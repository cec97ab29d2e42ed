"""What the runtime service keeps across a restart, in SQLite: registered services, hives and
how often each model was scheduled.

Heartbeat state is soft and rebuilt from the next heartbeats; only these tables persist::

    services(name PRIMARY KEY, body)            body: the ServiceView as JSON, with its owner
    hives(hive_id PRIMARY KEY, host, port, devices, created_at, updated_at, status,
          last_heartbeat)                       status: Unknown | Online | Offline
    model_usage(model PRIMARY KEY, use_count, last_used_ms)
                                                schedule answers per model, and the last one
                                                (epoch ms); written in batches (add_uses)

A hive row changes when the hive appears, its host/port/devices change, or it goes Online or
Offline. ``last_heartbeat`` is buffered and written in one transaction by :meth:`Catalog.flush`
(the server calls it every few seconds and at shutdown), so heartbeats never wait on the disk.

One process at a time owns a database file: two servers on one file would each keep their own
view and overwrite each other's (a deleted service would return after a restart). The catalog
holds an exclusive ``flock`` on a lock file beside the database from open to close::

    runtime.db          the SQLite database (with runtime.db-wal and runtime.db-shm beside it)
    runtime.db.lock     "PID HOST" of the process that holds the lock (or held it last)

A second open fails with :class:`CatalogInUse` naming that process. The kernel drops the lock
when its process dies, so a lock file left by a killed server blocks nothing. ``":memory:"``
needs no lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from runtime.errors import RegistryError
from runtime.service.types import HiveHeartbeat, HiveStatus, ModelUse, ServiceView

_SCHEMA = """
CREATE TABLE IF NOT EXISTS services (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hives (
    hive_id TEXT PRIMARY KEY, host TEXT, port INTEGER, devices TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, status TEXT NOT NULL,
    last_heartbeat TEXT
);
CREATE TABLE IF NOT EXISTS model_usage (
    model TEXT PRIMARY KEY, use_count INTEGER NOT NULL, last_used_ms INTEGER NOT NULL
);
"""


class CatalogError(RegistryError, OSError):
    """Raised when the SQLite catalog file cannot be opened or is not a catalog."""


class CatalogInUse(CatalogError):
    """Raised when another process (another ``serve``) holds the catalog's lock file."""


class HiveRecord(msgspec.Struct, kw_only=True):
    """A row of the hive catalog."""

    hive_id: str
    host: str | None
    port: int | None
    devices: list[str]
    created_at: datetime
    updated_at: datetime
    status: HiveStatus
    last_heartbeat: datetime | None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Catalog:
    """The SQLite file behind the service; ``":memory:"`` for a catalog that does not persist."""

    def __init__(self, path: Path | str, *, now: Callable[[], datetime] = _utcnow) -> None:
        self.path = str(path)
        self.now = now
        self._lock = threading.Lock()
        self._known: dict[str, tuple[str | None, int | None, list[str], str]] = {}
        self._pending: dict[str, datetime] = {}
        self._lock_file = _take_lock(self.path)
        try:
            self._db = _connect(self.path)
        except CatalogError:
            _release_lock(self._lock_file)
            raise
        self._load_known()

    def close(self) -> None:
        """Flush buffered heartbeats, close the database and release its lock."""
        self.flush()
        with self._lock:
            self._db.close()
            _release_lock(self._lock_file)
            self._lock_file = None

    # -- services -----------------------------------------------------------------------------

    def save_service(self, service: ServiceView) -> None:
        """Insert or replace a service."""
        body = msgspec.json.encode(service).decode()
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO services VALUES (?, ?)", (service.name, body))

    def delete_service(self, name: str) -> None:
        """Remove a service (no-op when absent)."""
        with self._lock:
            self._db.execute("DELETE FROM services WHERE name = ?", (name,))

    def services(self) -> list[ServiceView]:
        """Every stored service, by name."""
        with self._lock:
            rows = self._db.execute("SELECT body FROM services ORDER BY name").fetchall()
        return [msgspec.json.decode(row[0], type=ServiceView) for row in rows]

    # -- hives --------------------------------------------------------------------------------

    def record_heartbeat(self, beat: HiveHeartbeat) -> None:
        """Note a heartbeat: a row write only if the hive is new, changed, or was not Online."""
        devices = list(beat.devices or [])
        shape = (beat.host, beat.port, devices, "Online")
        with self._lock:
            self._pending[beat.hive_id] = beat.timestamp
            if self._known.get(beat.hive_id) != shape:
                self._upsert(beat.hive_id, shape, beat.timestamp)

    def mark_offline(self, hive_id: str) -> None:
        """Set a hive's status to Offline (it was evicted)."""
        self._set_status(hive_id, "Offline")

    def forget_hive(self, hive_id: str) -> None:
        """Delete a hive's row (it was removed by an operator)."""
        with self._lock:
            self._known.pop(hive_id, None)
            self._pending.pop(hive_id, None)
            self._db.execute("DELETE FROM hives WHERE hive_id = ?", (hive_id,))

    def hives(self) -> list[HiveRecord]:
        """Every catalogued hive, by id (buffered heartbeats are flushed first)."""
        self.flush()
        with self._lock:
            rows = self._db.execute("SELECT * FROM hives ORDER BY hive_id").fetchall()
        return [_hive_record(row) for row in rows]

    def hive(self, hive_id: str) -> HiveRecord | None:
        """One catalogued hive; None when the catalog does not have it."""
        self.flush()
        with self._lock:
            row = self._db.execute("SELECT * FROM hives WHERE hive_id = ?", (hive_id,)).fetchone()
        return None if row is None else _hive_record(row)

    # -- model usage --------------------------------------------------------------------------

    def add_uses(self, uses: dict[str, ModelUse]) -> None:
        """Add ``uses`` to the stored counts, in one transaction (the later last use wins)."""
        rows = [(m, u.count, _ms(u.last_used)) for m, u in uses.items()]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO model_usage VALUES (?, ?, ?) ON CONFLICT(model) DO UPDATE SET "
                "use_count = use_count + excluded.use_count, "
                "last_used_ms = max(last_used_ms, excluded.last_used_ms)",
                rows,
            )
            self._db.execute("COMMIT")

    def usage(self) -> dict[str, ModelUse]:
        """The stored counts, by model."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM model_usage").fetchall()
        return {m: ModelUse(count=n, last_used=_from_ms(ms)) for m, n, ms in rows}

    def flush(self) -> None:
        """Write buffered ``last_heartbeat`` values in one transaction."""
        with self._lock:
            if not self._pending:
                return
            rows = [(ts.isoformat(), hid) for hid, ts in self._pending.items()]
            self._pending.clear()
            self._db.execute("BEGIN")
            self._db.executemany("UPDATE hives SET last_heartbeat = ? WHERE hive_id = ?", rows)
            self._db.execute("COMMIT")

    def _upsert(
        self, hive_id: str, shape: tuple[str | None, int | None, list[str], str], ts: datetime
    ) -> None:
        host, port, devices, status = shape
        now = self.now().isoformat()
        self._db.execute(
            "INSERT INTO hives VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(hive_id) DO UPDATE SET "
            "host=excluded.host, port=excluded.port, devices=excluded.devices, "
            "updated_at=excluded.updated_at, status=excluded.status, "
            "last_heartbeat=excluded.last_heartbeat",
            (hive_id, host, port, json.dumps(devices), now, now, status, ts.isoformat()),
        )
        self._known[hive_id] = shape

    def _set_status(self, hive_id: str, status: HiveStatus) -> None:
        with self._lock:
            known = self._known.get(hive_id)
            if known is None:
                return
            self._known[hive_id] = (known[0], known[1], known[2], status)
            self._db.execute(
                "UPDATE hives SET status = ?, updated_at = ? WHERE hive_id = ?",
                (status, self.now().isoformat(), hive_id),
            )

    def _load_known(self) -> None:
        # After a restart nothing is Online until it speaks again: heartbeat state is soft.
        with self._lock:
            self._db.execute("UPDATE hives SET status = 'Unknown' WHERE status = 'Online'")
            rows = self._db.execute("SELECT hive_id, host, port, devices, status FROM hives")
            for hive_id, host, port, devices, status in rows.fetchall():
                self._known[hive_id] = (host, port, json.loads(devices), status)


def _take_lock(path: str) -> int | None:
    """Lock ``<path>.lock`` for this process and write "PID HOST" into it; None for memory."""
    if path == ":memory:":
        return None
    lock = f"{path}.lock"
    try:
        # Not written to a temporary name and renamed: the lock lives on this file's inode.
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise CatalogError(
            f"catalog {path}: cannot create its lock file {lock} ({exc.strerror}); "
            "pass --db a writable path"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise CatalogInUse(
            f"catalog {path} is in use by {holder} (lock file {lock}); stop that server or "
            "pass another --db"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    return fd


def _holder(fd: int) -> str:
    """Who holds a lock, from its lock file: "process PID on host HOST"."""
    words = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    if not words or not words[0].isdigit():
        return "another process"  # it has not written its pid yet
    host = f" on host {words[1][:60]}" if len(words) > 1 else ""
    return f"process {words[0][:20]}{host}"


def _release_lock(fd: int | None) -> None:
    # The file stays: unlinking it could let a third process lock a new file while a second
    # still holds the old one. Its text is read only while someone holds the lock, so what a
    # dead holder left there misleads nobody.
    if fd is not None:
        os.close(fd)


def _connect(path: str) -> sqlite3.Connection:
    db: sqlite3.Connection | None = None
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
    except sqlite3.Error as exc:
        if db is not None:
            db.close()
        raise CatalogError(
            f"catalog {path}: cannot open it as an SQLite database ({exc}); "
            "pass --db a writable path, or move the file away to start afresh"
        ) from exc
    return db


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _hive_record(row: tuple[object, ...]) -> HiveRecord:
    hive_id, host, port, devices, created, updated, status, last = row
    return msgspec.convert(
        {
            "hive_id": hive_id,
            "host": host,
            "port": port,
            "devices": json.loads(str(devices)),
            "created_at": created,
            "updated_at": updated,
            "status": status,
            "last_heartbeat": last,
        },
        HiveRecord,
        strict=False,
    )
