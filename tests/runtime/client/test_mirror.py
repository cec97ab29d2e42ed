"""The mirror of one registry's mutable documents: its folder, and what it answers offline."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.registries import demo_registry

from runtime.client.cache import Cache
from runtime.client.mirror import Mirror, OfflineMiss
from runtime.errors import CorruptDocument, InvalidNameError
from runtime.names import parse_ref
from runtime.storage.local import LocalStore
from runtime.storage.store import Store


def unused() -> Store:
    raise AssertionError("no store is opened for this")


def test_pointer_paths_take_names_only(tmp_path: Path) -> None:
    mirror = Mirror(Cache(tmp_path / "cache"), "/srv/reg", unused, notice=print)
    with pytest.raises(InvalidNameError, match=r"^alias '\.\./\.\./x' is not a valid name"):
        mirror.save_pointer("tiny", "../../x", b"{}")
    with pytest.raises(InvalidNameError, match=r"^model '\.\.' is not a valid name"):
        mirror.saved_pointer("..", "stable")
    assert not (tmp_path / "cache").exists()


def test_one_folder_per_location_with_the_location_in_it(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    first = Mirror(cache, "https://a.example/reg", unused, notice=print)
    other = Mirror(cache, "https://b.example/reg", unused, notice=print)
    assert first.folder.parent == other.folder.parent == cache.root / "registries"
    assert first.folder != other.folder
    first.save_index(b"{}")
    assert (first.folder / "location").read_text() == "https://a.example/reg\n"


def test_offline_answers_from_the_saved_index_and_pointers_and_opens_no_store(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    demo_registry(site)
    cache = Cache(tmp_path / "cache")
    online = Mirror(cache, str(site), lambda: LocalStore(site), notice=print)
    assert online.resolve(parse_ref("tiny@stable"), ("universal",)).version == "1.2"
    notices: list[str] = []
    offline = Mirror(cache, str(site), unused, offline=True, notice=notices.append)
    assert offline.resolve(parse_ref("tiny@stable"), ("universal",)).version == "1.2"
    assert offline.fallback == "offline"
    assert len(notices) == 1
    assert notices[0].startswith(f"offline: resolving from the cached index of {site} (saved ")
    with pytest.raises(OfflineMiss) as caught:
        Mirror(Cache(tmp_path / "empty"), str(site), unused, offline=True, notice=print).resolve(
            parse_ref("tiny"), ("universal",)
        )
    assert str(caught.value) == (
        f"offline, and the cache {tmp_path / 'empty'} holds no index of {site}: "
        "fetch once while the registry is reachable"
    )


def test_a_pointer_that_does_not_decode_is_not_kept(tmp_path: Path) -> None:
    site = tmp_path / "site"
    demo_registry(site)
    (site / "aliases/tiny/stable.json").write_bytes(b'{"model": "../x"}')
    mirror = Mirror(Cache(tmp_path / "cache"), str(site), lambda: LocalStore(site), notice=print)
    with pytest.raises(CorruptDocument, match=r"aliases/tiny/stable\.json: "):
        mirror.resolve(parse_ref("tiny@stable"), ("universal",))
    assert not (mirror.folder / "aliases").exists()
