"""Temp-then-rename writes: readers never see half a file, failures leave nothing behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from runtime.storage.atomic import is_temp_name, sweep_temp_files, temp_file, write_atomic


def test_write_atomic_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "index.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["index.json"]


def test_failed_write_keeps_old_content_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    write_atomic(target, b"old")
    with pytest.raises(RuntimeError), temp_file(target) as (handle, _tmp):
        handle.write(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["index.json"]


def test_sweep_removes_only_stale_temp_files(tmp_path: Path) -> None:
    stale = tmp_path / ".blob.xyb.tmp-1-abc"
    fresh = tmp_path / ".blob.xyb.tmp-2-def"
    keep = tmp_path / "blob.xyb"
    for path in (stale, fresh, keep):
        path.write_bytes(b"x")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert is_temp_name(stale.name) and not is_temp_name(keep.name)
    assert sweep_temp_files(tmp_path, older_than=3600, now=time.time()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [fresh.name, keep.name]
