"""Conditional reads over HTTP (the contract all stores share is in ``test_store.py``): the
validator is the server's ETag, else a Last-Modified date only when it is strong, and a 304
raises NotModified with no body read."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.conditional import Log, serve

from runtime.storage.http import HttpStore
from runtime.storage.store import NotModified


@pytest.fixture
def log(tmp_path: Path) -> Log:
    (tmp_path / "index.json").write_bytes(b'{"format": 2}')
    return Log(tmp_path)


@pytest.fixture
def url(log: Log) -> Iterator[str]:
    yield from serve(log)


def test_an_etag_goes_back_as_if_none_match_and_a_304_sends_no_body(log: Log, url: str) -> None:
    store = HttpStore(url)
    data, etag = store.get("index.json")
    assert (data, etag.startswith('"')) == (b'{"format": 2}', True)
    with pytest.raises(NotModified):
        store.get("index.json", if_none_match=etag)
    (log.root / "index.json").write_bytes(b'{"format": 3}')
    assert store.get("index.json", if_none_match=etag)[0] == b'{"format": 3}'
    assert log.take() == [("index.json", 200, 13), ("index.json", 304, 0), ("index.json", 200, 13)]


def test_without_etags_a_strong_last_modified_is_the_validator(
    tmp_path: Path, http_server: Callable[[Path], str]
) -> None:
    """python -m http.server sends no ETag: a Last-Modified a second or more before the
    response's Date is strong (RFC 9110, 8.8.2.2) and goes back as If-Modified-Since."""
    index = tmp_path / "index.json"
    index.write_bytes(b"{}")
    store = HttpStore(http_server(tmp_path))
    # Modified "now" (here: ahead of the server's clock, so a slow machine cannot age it past a
    # second before the answer's Date): a weak validator, so none is kept.
    os.utime(index, (time.time() + 30, time.time() + 30))
    assert store.get("index.json")[1] == ""
    os.utime(index, (time.time() - 60, time.time() - 60))
    _, etag = store.get("index.json")
    assert etag.startswith("modified:")
    with pytest.raises(NotModified):
        store.get("index.json", if_none_match=etag)
    index.write_bytes(b'{"v": 2}')
    assert store.get("index.json", if_none_match=etag)[0] == b'{"v": 2}'
