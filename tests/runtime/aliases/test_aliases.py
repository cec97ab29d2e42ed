"""Alias promotion (:mod:`runtime.aliases`): the protocol, its repairs, its chain and its errors.

Concurrency runs in real processes against a directory and against moto's S3 server over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import blake3
import msgspec
import pytest
from support.registries import write_index

from runtime import aliases as al
from runtime.errors import (
    CorruptDocument,
    IntegrityError,
    InvalidNameError,
    KeyNotFound,
    PreconditionFailed,
    RefError,
    ResolveError,
)
from runtime.registry.index import load_index
from runtime.registry.wire import (
    AliasIndex,
    AliasPointer,
    AliasRecord,
    BundleDescriptor,
    Location,
    alias_index_key,
    alias_pointer_key,
    alias_record_key,
    blob_key,
    encode,
)
from runtime.storage.local import LocalStore
from runtime.storage.location import open_store
from runtime.storage.memory import MemoryStore
from runtime.storage.store import ObjectInfo, ObjectTooLarge, PutMode, Store

MODEL = "whisper"
VERSIONS = ("1.0", "1.1", "1.10")
TARGETS = ("linux-x86_64", "universal")


def publish_demo(store: Store) -> dict[tuple[str, str], BundleDescriptor]:
    """Blobs and index.json for whisper 1.0/1.1/1.10 x two targets, plus a model 'vad' 2.0."""
    found = {}
    for model, version, target in [
        *((MODEL, v, t) for v in VERSIONS for t in TARGETS),
        ("vad", "2.0", "universal"),
    ]:
        data = f"{model} {version} {target} ".encode() * 64
        digest = blake3.blake3(data).hexdigest()
        store.put(blob_key(digest), data)
        d = BundleDescriptor(
            model, version, target, digest, len(data), Location(url=blob_key(digest))
        )
        found[(f"{model}@{version}", target)] = d
    write_index(store, list(found.values()))
    return found


def fixed_clock(*stamps: int) -> al.Clock:
    """A clock that returns 2026-11-22 08:00 plus the given seconds, one per call."""
    moments = iter(stamps)
    return lambda: datetime(2026, 11, 22, 8, 0, next(moments), tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    local = LocalStore(tmp_path / "registry")
    publish_demo(local)
    return local


def _promote(store: Store, alias: str, version: str, reason: str = "why") -> AliasRecord:
    return al.promote(store, MODEL, alias, version, "alice", reason)


def _pointer(store: Store, alias: str = "production") -> AliasPointer:
    return msgspec.json.decode(store.get(alias_pointer_key(MODEL, alias))[0], type=AliasPointer)


def _view(store: Store) -> AliasIndex:
    return msgspec.json.decode(store.get(alias_index_key(MODEL))[0], type=AliasIndex)


# --- the protocol ------------------------------------------------------------------------------


def test_promotions_chain_records_and_move_the_pointer(store: LocalStore) -> None:
    first = al.promote(store, MODEL, "production", "1.0", "alice", "ship", clock=fixed_clock(1))
    second = al.promote(store, MODEL, "production", "1.1", "bob", "fix", clock=fixed_clock(2))
    assert first == AliasRecord(
        MODEL, "production", "1.0", None, "alice", "ship", "2026-11-22T08:00:01.000Z", 1, ""
    )
    first_bytes = store.get(alias_record_key(MODEL, "production", 1))[0]
    second_bytes = store.get(alias_record_key(MODEL, "production", 2))[0]
    assert second.previous == "1.0"
    assert second.prev_digest == blake3.blake3(first_bytes).hexdigest()
    assert _pointer(store) == AliasPointer(
        MODEL,
        "production",
        "1.1",
        2,
        blake3.blake3(second_bytes).hexdigest(),
        "2026-11-22T08:00:02.000Z",
    )
    assert al.history(store, MODEL, "production") == (first, second)


def test_moving_back_is_another_promotion(store: LocalStore) -> None:
    for version in ("1.1", "1.0", "1.1"):
        _promote(store, "production", version)
    versions = [(r.previous, r.version) for r in al.history(store, MODEL, "production")]
    assert versions == [(None, "1.1"), ("1.1", "1.0"), ("1.0", "1.1")]
    assert al.verify_chain(store, MODEL, "production").problems == ()


def test_aliases_lists_each_alias_with_its_latest_record(store: LocalStore) -> None:
    al.promote(store, MODEL, "production", "1.0", "alice", "a", clock=fixed_clock(1))
    al.promote(store, MODEL, "staging", "1.10", "bob", "b", clock=fixed_clock(2))
    al.promote(store, MODEL, "production", "1.1", "carol", "c", clock=fixed_clock(3))
    listed = [(v.alias, v.version, v.seq, v.actor, v.reason) for v in al.aliases(store, MODEL)]
    assert listed == [("production", "1.1", 2, "carol", "c"), ("staging", "1.10", 1, "bob", "b")]
    assert al.aliases(store, "vad") == ()


def test_the_view_holds_every_alias_and_its_history(store: LocalStore) -> None:
    _promote(store, "production", "1.0")
    _promote(store, "staging", "1.1")
    _promote(store, "production", "1.10")
    view = _view(store)
    assert [(v.alias, v.version, v.seq) for v in view.aliases] == [
        ("production", "1.10", 2),
        ("staging", "1.1", 1),
    ]
    assert view.aliases[0].history == al.history(store, MODEL, "production")


def test_a_damaged_view_is_rebuilt_from_the_records(store: LocalStore) -> None:
    _promote(store, "production", "1.0")
    _promote(store, "staging", "1.1")
    store.put(alias_index_key(MODEL), b"{not json")
    _promote(store, "production", "1.10")
    view = _view(store)
    assert [(v.alias, v.seq, len(v.history)) for v in view.aliases] == [
        ("production", 2, 2),
        ("staging", 1, 1),
    ]


def test_actor_defaults_to_flag_then_github_actor_then_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_ACTOR", "ci-bot")
    assert al.default_actor("alice") == "alice"
    assert al.default_actor(None) == "ci-bot"
    monkeypatch.delenv("GITHUB_ACTOR")
    monkeypatch.setenv("USER", "local-user")
    monkeypatch.setenv("LOGNAME", "local-user")
    assert al.default_actor(None) == "local-user"


# --- resolving ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "target", "version", "alias", "targets"),
    [
        ("whisper", None, "1.10", None, ["linux-x86_64", "universal"]),
        ("whisper@1.1", "linux-x86_64", "1.1", None, ["linux-x86_64"]),
        ("whisper@1.1", "linux-aarch64", "1.1", None, ["universal"]),
        ("whisper@production", "linux-x86_64", "1.0", "production", ["linux-x86_64"]),
        (" whisper@production ", None, "1.0", "production", ["linux-x86_64", "universal"]),
    ],
)
def test_resolve(
    store: LocalStore,
    ref: str,
    target: str | None,
    version: str,
    alias: str | None,
    targets: list[str],
) -> None:
    _promote(store, "production", "1.0")
    found = al.resolve(store, ref, target)
    assert (found.model, found.version, found.alias) == (MODEL, version, alias)
    assert [d.target for d in found.bundles] == targets


@pytest.mark.parametrize(
    ("ref", "target", "error", "message"),
    [
        (
            "whisper@",
            None,
            RefError,
            "ref 'whisper@' has nothing after '@': write whisper@VERSION, whisper@ALIAS, "
            "or just whisper for the highest version",
        ),
        (
            "@production",
            None,
            RefError,
            "ref '@production' has no model before '@': write MODEL@VERSION or MODEL@ALIAS",
        ),
        (
            "whisper@prod/../x",
            None,
            RefError,
            "ref 'whisper@prod/../x': selector 'prod/../x' is not a valid name: use 1-128 "
            "letters, digits, '.', '_' or '-', starting and ending with a letter or digit, "
            "without '..'",
        ),
        (
            "whisper@2.0",
            None,
            ResolveError,
            "model 'whisper' has no version or alias '2.0' in {loc} "
            "(versions: 1.0, 1.1, 1.10; aliases: production)",
        ),
        (
            "llama@1.0",
            None,
            ResolveError,
            "model 'llama' is not in the index of {loc} (models: vad, whisper)",
        ),
        (
            "whisper@production",
            "ios-x64",
            InvalidNameError,
            "target 'ios-x64' is not a known target (known: macos-arm64, macos-x86_64, "
            "linux-x86_64, linux-arm64, ios-arm64, android-arm64, android-arm32, "
            "windows-x86_64, wasm-wgpu, universal); pass one of them with --target",
        ),
        (
            "vad@3",
            None,
            ResolveError,
            "model 'vad' has no version or alias '3' in {loc} (versions: 2.0; aliases: none)",
        ),
    ],
)
def test_resolve_errors(
    store: LocalStore, ref: str, target: str | None, error: type[Exception], message: str
) -> None:
    _promote(store, "production", "1.0")
    with pytest.raises(error) as caught:
        al.resolve(store, ref, target)
    assert str(caught.value) == message.format(loc=store.location)


def test_resolve_without_a_bundle_for_the_target(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    d = BundleDescriptor("vad", "2.0", "macos-arm64", "0" * 64, 1, Location(url=blob_key("0" * 64)))
    write_index(store, [d])
    with pytest.raises(ResolveError) as caught:
        al.resolve(store, "vad", "linux-x86_64")
    assert str(caught.value) == (
        f"vad@2.0 has no bundle for target 'linux-x86_64' or 'universal' in {store.location} "
        "(targets of 2.0: macos-arm64): pass one of those with --target, or pick another version"
    )


def test_resolve_refuses_an_alias_whose_version_left_the_index(store: LocalStore) -> None:
    _promote(store, "production", "1.0")
    kept = [d for d in publish_demo(MemoryStore()).values() if d.version != "1.0"]
    write_index(store, kept, {MODEL: {"production": "1.0"}})
    with pytest.raises(ResolveError) as caught:
        al.resolve(store, "whisper@production")
    assert str(caught.value) == (
        f"whisper@production points at version '1.0', which the index of {store.location} no "
        "longer holds (versions: 1.1, 1.10): promote the alias to one of those"
    )


def test_an_alias_wins_over_a_version_of_the_same_name_as_in_the_client(
    store: LocalStore,
) -> None:
    _promote(store, "stable", "1.0")
    bundles = list(publish_demo(MemoryStore()).values())
    late = msgspec.structs.replace(bundles[0], version="stable", hash="f" * 64)
    write_index(store, [*bundles, late], {MODEL: {"stable": "1.0"}})  # published later
    found = al.resolve(store, "whisper@stable", "universal")
    assert (found.version, found.alias) == ("1.0", "stable")
    assert al.verify(store, "whisper@stable", "universal").version == "1.0"


def test_a_registry_without_index_is_reported(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(ResolveError) as caught:
        al.promote(store, MODEL, "production", "1.0", "alice", "")
    assert str(caught.value) == (
        f"{tmp_path} has no index.json: is it a registry? Build one with `registry-build build`, "
        "or check --registry / BUNDLE_REGISTRY"
    )


# --- promotion errors --------------------------------------------------------------------------

TRY_OTHER = "pick a name that is not a version, e.g. 'production' or 'stable'"


@pytest.mark.parametrize(
    ("model", "alias", "version", "error", "message"),
    [
        (
            MODEL,
            "production",
            "9.9",
            ResolveError,
            "model 'whisper' has no version '9.9' in {loc} (versions: 1.0, 1.1, 1.10): "
            "publish it first or pick one of those",
        ),
        (
            "llama",
            "production",
            "1.0",
            ResolveError,
            "model 'llama' is not in the index of {loc} (models: vad, whisper)",
        ),
        (
            MODEL,
            "1.1",
            "1.0",
            InvalidNameError,
            "alias '1.1' is also a version of model 'whisper', so whisper@1.1 would be "
            "ambiguous: " + TRY_OTHER,
        ),
        (
            MODEL,
            "2.0",
            "1.0",
            InvalidNameError,
            "alias '2.0' looks like a version: an alias starts with a letter so that "
            "whisper@2.0 is never ambiguous, e.g. 'production' or 'stable'",
        ),
        (
            MODEL,
            "index",
            "1.0",
            InvalidNameError,
            "alias 'index' is reserved (aliases/whisper/index.json is the model's alias view): "
            "pick another name, e.g. 'production' or 'stable'",
        ),
        (
            MODEL,
            "prod uction",
            "1.0",
            InvalidNameError,
            "alias 'prod uction' is not a valid name: use 1-128 letters, digits, '.', '_' or "
            "'-', starting and ending with a letter or digit, without '..'",
        ),
        (
            MODEL,
            "../x",
            "1.0",
            InvalidNameError,
            "alias '../x' is not a valid name: use 1-128 letters, digits, '.', '_' or "
            "'-', starting and ending with a letter or digit, without '..'",
        ),
    ],
)
def test_promote_errors(
    store: LocalStore,
    model: str,
    alias: str,
    version: str,
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error) as caught:
        al.promote(store, model, alias, version, "alice", "why")
    assert str(caught.value) == message.format(loc=store.location)
    assert list(store.list("aliases/")) == []


@pytest.mark.parametrize(
    ("actor", "reason", "message"),
    [
        ("  ", "", "actor is empty: say who promotes (--actor or GITHUB_ACTOR)"),
        (
            "alice",
            "line\x00break",
            "reason 'line\\x00break' holds a control character (tab, newline, ...): "
            "write it on one line",
        ),
        (
            "al\tice",
            "",
            "actor 'al\\tice' holds a control character (tab, newline, ...): write it on one line",
        ),
        ("alice", "x" * 2001, f"reason {'x' * 40!r}... is longer than 2000 characters"),
    ],
)
def test_actor_and_reason_are_checked(
    store: LocalStore, actor: str, reason: str, message: str
) -> None:
    with pytest.raises(InvalidNameError) as caught:
        al.promote(store, MODEL, "production", "1.0", actor, reason)
    assert str(caught.value) == message


class _AlwaysTaken(MemoryStore):
    """Every record slot is claimed by someone else: a race lost on every attempt."""

    def put(
        self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        if mode is PutMode.CREATE and key.startswith("aliases/") and "index" not in key:
            raise PreconditionFailed(f"{key} already exists in {self.location}")
        return super().put(key, data, mode, etag)


def test_a_race_lost_every_time_ends_in_a_conflict_error() -> None:
    store = _AlwaysTaken()
    publish_demo(store)
    with pytest.raises(al.AliasConflict) as caught:
        al.promote(store, MODEL, "production", "1.0", "alice", "why", attempts=3)
    assert str(caught.value) == (
        "could not promote whisper@production to 1.0 in memory://: another promotion took the "
        "next record 3 times in a row; retry"
    )


# --- racing: what a promotion asks of the store ------------------------------------------------


class _Logged(LocalStore):
    """A directory store that logs each request as (op, key), and runs ``race`` once just
    before (``before``) or just after (``after``) the first write of a key: another promotion
    that wins or follows at exactly that point."""

    log: list[tuple[str, str]]
    hooks: dict[tuple[str, str], Callable[[], object]]

    def get(
        self, key: str, if_none_match: str | None = None, limit: int | None = None
    ) -> tuple[bytes, str]:
        self.log.append(("get", "shards/..." if key.startswith("shards/") else key))
        return super().get(key, if_none_match, limit)

    def head(self, key: str) -> ObjectInfo:
        self.log.append(("head", key))
        return super().head(key)

    def put(
        self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        self.hooks.pop(("before", key), lambda: None)()
        self.log.append(("put", key))
        done = super().put(key, data, mode, etag)
        self.hooks.pop(("after", key), lambda: None)()
        return done


def _logged(store: LocalStore, **hooks: Callable[[], object]) -> _Logged:
    """``store`` logged, with hooks named like ``before_2`` (record 2) or ``after_pointer``."""
    logged = _Logged(store.root)
    logged.log, logged.hooks = [], {}
    for name, hook in hooks.items():
        when, what = name.split("_")
        key = alias_pointer_key(MODEL, "production") if what == "pointer" else RECORD.format(what)
        logged.hooks[(when, key)] = hook
    return logged


RECORD = "aliases/whisper/production/{}.json"
POINTER = "aliases/whisper/production.json"
VIEW = "aliases/whisper/index.json"


def _rival(store: LocalStore, version: str, actor: str, second: int) -> Callable[[], object]:
    """Another promotion, asked at 08:00:``second`` (ours are asked at 08:00:01)."""
    return lambda: al.promote(
        LocalStore(store.root), MODEL, "production", version, actor, "", clock=fixed_clock(second)
    )


def _ours(store: Store, version: str = "1.1") -> al.Promotion:
    return al.promote_detailed(
        store, MODEL, "production", version, "alice", "", clock=fixed_clock(1)
    )


def test_a_promotion_that_races_nobody_makes_eight_requests(store: LocalStore) -> None:
    _promote(store, "production", "1.0")
    logged = _logged(store)
    assert _ours(logged).retries == 0
    assert logged.log == [
        ("get", "index.json"),  # checks, and is the head the map is written at
        ("get", "shards/..."),  # the versions of the model
        ("get", POINTER),
        ("put", RECORD.format(2)),
        ("put", POINTER),
        ("put", "index.json"),
        ("get", VIEW),
        ("put", VIEW),
    ]


def test_a_lost_slot_is_claimed_next_chained_to_its_winner(store: LocalStore) -> None:
    _promote(store, "production", "1.0")
    logged = _logged(store, before_2=_rival(store, "1.10", "bob", 2))  # asked after ours
    done = _ours(logged)
    bobs = store.get(alias_record_key(MODEL, "production", 2))[0]
    assert (done.retries, done.record.seq, done.record.previous) == (1, 3, "1.10")
    assert done.record.prev_digest == blake3.blake3(bobs).hexdigest()
    lost = logged.log.index(("put", RECORD.format(2)))
    assert logged.log[lost + 1 : lost + 3] == [("get", RECORD.format(2)), ("put", RECORD.format(3))]
    assert (_pointer(store).seq, _mapped(store)) == (3, {"production": "1.1"})
    assert [r.seq for r in _view(store).aliases[0].history] == [1, 2, 3]
    assert al.verify_chain(store, MODEL, "production").problems == ()


def test_an_older_winner_goes_first_then_the_claim_goes_on_from_the_pointer(
    store: LocalStore,
) -> None:
    _promote(store, "production", "1.0")
    logged = _logged(store, before_2=_rival(store, "1.10", "bob", 0))  # asked 1 s before ours
    done = _ours(logged)
    lost = logged.log.index(("put", RECORD.format(2)))
    assert logged.log[lost + 1 : lost + 4] == [
        ("get", RECORD.format(2)),
        ("get", POINTER),
        ("put", RECORD.format(3)),
    ]
    assert (done.retries, done.record.seq, _pointer(store).seq) == (1, 3, 3)
    assert al.verify_chain(store, MODEL, "production").problems == ()


def test_a_promotion_overtaken_leaves_pointer_map_and_view_to_the_later_one(
    store: LocalStore,
) -> None:
    _promote(store, "production", "1.0")
    logged = _logged(
        store,
        before_2=_rival(store, "1.10", "bob", 2),
        after_3=_rival(store, "1.0", "carol", 3),  # takes record 4 right after ours
    )
    done = _ours(logged)
    assert (done.record.seq, done.warnings) == (3, ())
    assert logged.log[logged.log.index(("put", RECORD.format(3))) + 1 :] == [
        ("head", RECORD.format(4))
    ]
    assert (_pointer(store).seq, _pointer(store).version) == (4, "1.0")
    assert _mapped(store) == {"production": "1.0"}
    assert [r.actor for r in _view(store).aliases[0].history] == ["alice", "bob", "alice", "carol"]
    assert al.verify_chain(store, MODEL, "production").problems == ()


def test_the_alias_map_never_moves_back_to_an_overtaken_promotion(store: LocalStore) -> None:
    _promote(store, "production", "1.0")
    logged = _logged(store, after_pointer=_rival(store, "1.10", "bob", 2))
    done = _ours(logged)  # its map write at the head it read first loses to bob's
    assert (done.record.seq, done.warnings) == (2, ())
    assert (_pointer(store).seq, _mapped(store)) == (3, {"production": "1.10"})
    assert logged.log.count(("put", VIEW)) == 0  # bob's promotion brought the view up
    assert [r.actor for r in _view(store).aliases[0].history] == ["alice", "alice", "bob"]


# --- crash repair ------------------------------------------------------------------------------


class _Crash(BaseException):
    """The process dies here."""


class _CrashBeforePointer(LocalStore):
    """Dies on the first write of a pointer file: after the record, before the pointer."""

    def put(
        self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        if key == alias_pointer_key(MODEL, "production"):
            raise _Crash
        return super().put(key, data, mode, etag)


@pytest.fixture
def crashed(store: LocalStore) -> Iterator[LocalStore]:
    """production: 1.0 promoted cleanly, then 1.1 crashed between its record and pointer."""
    _promote(store, "production", "1.0")
    with pytest.raises(_Crash):
        _promote(_CrashBeforePointer(store.root), "production", "1.1")
    assert _pointer(store).seq == 1
    assert store.get(alias_record_key(MODEL, "production", 2))
    yield store


def test_resolve_repairs_a_crash_between_record_and_pointer(crashed: LocalStore) -> None:
    assert al.resolve(crashed, "whisper@production").version == "1.1"
    assert (_pointer(crashed).seq, _pointer(crashed).version) == (2, "1.1")
    assert _view(crashed).aliases[0].seq == 2
    assert al.verify_chain(crashed, MODEL, "production").problems == ()


def test_resolve_without_repair_answers_but_leaves_the_store(crashed: LocalStore) -> None:
    assert al.resolve_alias(crashed, MODEL, "production", repair=False).version == "1.1"
    assert _pointer(crashed).seq == 1


def test_the_next_promote_repairs_a_crash(crashed: LocalStore) -> None:
    record = _promote(crashed, "production", "1.10")
    crashed_bytes = crashed.get(alias_record_key(MODEL, "production", 2))[0]
    assert (record.seq, record.previous) == (3, "1.1")
    assert record.prev_digest == blake3.blake3(crashed_bytes).hexdigest()
    assert _pointer(crashed).seq == 3
    assert al.verify_chain(crashed, MODEL, "production").problems == ()


def test_a_crash_on_the_first_promotion_is_repaired(store: LocalStore) -> None:
    with pytest.raises(_Crash):
        _promote(_CrashBeforePointer(store.root), "production", "1.1")
    assert [a.alias for a in al.aliases(store, MODEL)] == ["production"]
    assert al.resolve(store, "whisper@production").version == "1.1"
    assert _pointer(store).seq == 1


class _CrashBeforeIndex(LocalStore):
    """Dies on the first write of index.json: after the pointer moved, before the alias map."""

    def put(
        self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        if key == "index.json":
            raise _Crash
        return super().put(key, data, mode, etag)


def test_a_promotion_moves_the_alias_map_of_index_json(store: LocalStore) -> None:
    _promote(store, "production", "1.0")
    assert _mapped(store) == {"production": "1.0"}
    _promote(store, "production", "1.10")
    _promote(store, "stable", "1.1")
    assert _mapped(store) == {"production": "1.10", "stable": "1.1"}


def test_a_crash_before_the_alias_map_is_reported_then_repaired(store: LocalStore) -> None:
    _promote(store, "production", "1.0")
    with pytest.raises(_Crash):
        _promote(_CrashBeforeIndex(store.root), "production", "1.1")
    assert (_pointer(store).version, _mapped(store)) == ("1.1", {"production": "1.0"})
    assert al.verify(store, "whisper@production", "universal").problems == (
        "index.json maps whisper@production to 1.0 but its pointer names 1.1, so clients "
        "resolve 1.0 (an unfinished promotion): promote the alias again, or run "
        "`registry-build reindex`",
    )
    assert al.resolve(store, "whisper@production").version == "1.1"  # repairs
    assert _mapped(store) == {"production": "1.1"}
    assert al.verify(store, "whisper@production", "universal").problems == ()


def test_verify_reports_an_unrepaired_crash(crashed: LocalStore) -> None:
    report = al.verify_chain(crashed, MODEL, "production")
    assert report.problems == (
        "aliases/whisper/production.json: at seq 1, behind the last record 2 (an unfinished "
        "promotion; the next promote or resolve rolls it forward)",
    )


class _Counting(LocalStore):
    """A directory store that counts the records read."""

    reads: list[str]

    def get(
        self, key: str, if_none_match: str | None = None, limit: int | None = None
    ) -> tuple[bytes, str]:
        if key.count("/") == 3:
            self.reads.append(key)
        return super().get(key, if_none_match, limit)


def test_a_deleted_pointer_is_rolled_forward_from_its_records(store: LocalStore) -> None:
    for version in ("1.0", "1.1", "1.10", "1.0", "1.1"):
        _promote(store, "production", version)
    store.delete(alias_pointer_key(MODEL, "production"))
    counting = _Counting(store.root)
    counting.reads = []
    assert al.resolve_alias(counting, MODEL, "production", repair=False).seq == 5
    seqs = [int(key.rsplit("/", 1)[1].removesuffix(".json")) for key in counting.reads]
    assert seqs == [1, 3, 7, 5, 6]  # 7 and 6 missing: 5 is the newest
    assert not (store.root / alias_pointer_key(MODEL, "production")).exists()
    assert al.resolve(store, "whisper@production").version == "1.1"
    assert _pointer(store).seq == 5  # repaired
    assert al.verify_chain(store, MODEL, "production").problems == ()


def test_a_hundred_records_cost_a_few_reads() -> None:
    reads: list[str] = []
    records = {alias_record_key(MODEL, "prod", n) for n in range(1, 101)}

    def get(key: str) -> bytes:
        reads.append(key)
        if key not in records:
            raise KeyNotFound(key)
        seq = int(key.rsplit("/", 1)[1].removesuffix(".json"))
        digest = "" if seq == 1 else "ab" * 32
        return encode(AliasRecord(MODEL, "prod", "1.0", None, "ci", "", "", seq, digest))

    pointer = al.newest_pointer(get, "mem://", MODEL, "prod")
    assert pointer is not None and pointer.seq == 100
    assert len(reads) <= 14


@pytest.mark.parametrize("which", ["pointer", "record"])
def test_a_huge_pointer_or_record_is_refused_before_it_is_read(
    store: LocalStore, which: str
) -> None:
    _three(store)
    key = alias_pointer_key(MODEL, "production")
    read: Callable[[Store, str, str], object] = al.resolve_alias  # reads the pointer
    if which == "record":
        key, read = alias_record_key(MODEL, "production", 3), al.history
    store.put(key, b" " * (64 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(ObjectTooLarge) as caught:
            read(store, MODEL, "production")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # 64 MiB offered, none of it read
    assert str(caught.value) == (
        f"{key} from {store.location} is larger than 65536 bytes, the most a document may have: "
        "the registry is corrupt or hostile; check the registry location"
    )


def test_a_damaged_alias_is_named_without_contradiction(store: LocalStore) -> None:
    _three(store)
    store.delete(alias_pointer_key(MODEL, "production"))
    store.delete(alias_record_key(MODEL, "production", 1))
    damaged = (
        f"alias 'production' of model 'whisper' in {store.location} is damaged: neither its "
        "pointer aliases/whisper/production.json nor its first record "
        "aliases/whisper/production/1.json exists; restore the files, or promote the alias again"
    )
    for call in (
        lambda: al.resolve(store, "whisper@production"),
        lambda: al.resolve_alias(store, MODEL, "production"),
    ):
        with pytest.raises(ResolveError) as caught:
            call()
        assert str(caught.value) == damaged


def test_history_of_an_alias_whose_records_are_gone(store: LocalStore) -> None:
    _promote(store, "production", "1.0")
    store.delete(alias_record_key(MODEL, "production", 1))
    with pytest.raises(ResolveError) as caught:
        al.history(store, MODEL, "production")
    assert str(caught.value) == (
        f"alias 'production' of model 'whisper' in {store.location} is damaged: no record under "
        "aliases/whisper/production/ exists; restore the files, or promote the alias again"
    )


def test_a_listing_names_a_pointer_whose_record_is_gone(store: LocalStore) -> None:
    _promote(store, "production", "1.0")
    _promote(store, "production", "1.1")
    store.delete(alias_record_key(MODEL, "production", 2))
    with pytest.raises(ResolveError) as caught:
        al.aliases(store, MODEL)
    assert str(caught.value) == (
        f"alias 'production' of model 'whisper' in {store.location} is damaged: its pointer "
        "names record 2, but aliases/whisper/production/2.json does not exist; restore the "
        "files, or promote the alias again"
    )


def test_a_record_that_names_another_alias_is_refused(store: LocalStore) -> None:
    _promote(store, "production", "1.0")
    _promote(store, "staging", "1.1")
    staging = store.get(alias_record_key(MODEL, "staging", 1))[0]
    store.put(alias_record_key(MODEL, "production", 2), staging)
    with pytest.raises(CorruptDocument) as caught:
        al.resolve_alias(store, MODEL, "production")
    assert str(caught.value) == (
        f"{store.location}/aliases/whisper/production/2.json: names whisper@staging record 1, "
        "not whisper@production record 2; the registry is corrupt or hostile: restore it, or "
        "delete it (a pointer is rebuilt from the records by the next promote)"
    )


def test_a_far_away_record_is_a_gap_not_a_list_of_billions(store: LocalStore) -> None:
    _promote(store, "production", "1.0")
    far = alias_record_key(MODEL, "production", 2_000_000_000)
    store.put(far, store.get(alias_record_key(MODEL, "production", 1))[0])
    store.put(alias_record_key(MODEL, "production", 1).replace("/1.", "/99999999999."), b"{}")
    problems = al.verify_chain(store, MODEL, "production").problems
    assert problems[0] == (
        "aliases/whisper/production/99999999999.json: not a record (records are named <seq>.json)"
    )
    assert problems[1] == "aliases/whisper/production/: record(s) 2-1999999999 missing"


def test_stray_names_under_aliases_are_not_aliases(store: LocalStore) -> None:
    _promote(store, "production", "1.0")
    for key in (
        "aliases/whisper/a b.json",
        "aliases/whisper/x..y/1.json",
        "aliases/whisper/é.json",
    ):
        store.put(key, b"{}")
    assert al.alias_names(store, MODEL) == ["production"]
    assert [v.alias for v in al.aliases(store, MODEL)] == ["production"]


# --- tamper evidence ---------------------------------------------------------------------------


def _three(store: LocalStore) -> None:
    for version in ("1.0", "1.1", "1.10"):
        _promote(store, "production", version)


def _edit(store: LocalStore, seq: int, **changes: object) -> None:
    key = alias_record_key(MODEL, "production", seq)
    record = msgspec.json.decode(store.get(key)[0], type=AliasRecord)
    store.put(key, encode(msgspec.structs.replace(record, **changes)))


def test_an_edited_record_breaks_the_chain(store: LocalStore) -> None:
    _three(store)
    _edit(store, 1, actor="mallory")
    (problem,) = al.verify_chain(store, MODEL, "production").problems
    assert problem.startswith("aliases/whisper/production/2.json: prev_digest ")
    assert problem.endswith(": a record was edited, replaced or removed")


def test_a_removed_record_is_a_gap(store: LocalStore) -> None:
    _three(store)
    store.delete(alias_record_key(MODEL, "production", 2))
    problems = al.verify_chain(store, MODEL, "production").problems
    assert problems[0] == "aliases/whisper/production/: record(s) 2 missing"
    assert problems[1].startswith("aliases/whisper/production/3.json: prev_digest ")
    assert problems[2] == (
        "aliases/whisper/production/3.json: previous version '1.1' but the record before "
        "names '1.0'"
    )


def test_an_edited_last_record_no_longer_matches_the_pointer(store: LocalStore) -> None:
    _three(store)
    _edit(store, 3, version="1.0")
    (problem,) = al.verify_chain(store, MODEL, "production").problems
    assert problem.startswith(
        "aliases/whisper/production.json: names seq 3, version '1.10', digest "
    )
    assert ", but the last record is seq 3, version '1.0', digest " in problem


def test_stray_and_corrupt_files_are_reported(store: LocalStore) -> None:
    _promote(store, "production", "1.0")
    store.put("aliases/whisper/production/notes.txt", b"hi")
    store.put(alias_record_key(MODEL, "production", 2), b"[]")
    problems = al.verify_chain(store, MODEL, "production").problems
    assert problems[0] == (
        "aliases/whisper/production/notes.txt: not a record (records are named <seq>.json)"
    )
    assert problems[1] == (
        f"{store.location}/aliases/whisper/production/2.json: $: []: expected `object`, got "
        "`array`; the registry is corrupt or hostile: restore it, or delete it (a pointer is "
        "rebuilt from the records by the next promote)"
    )


# --- verify ------------------------------------------------------------------------------------


def test_verify_rehashes_blobs_and_checks_the_chain(store: LocalStore) -> None:
    _promote(store, "production", "1.1")
    report = al.verify(store, "whisper@production")
    assert report.problems == ()
    assert [(c.target, c.ok) for c in report.bundles] == [
        ("linux-x86_64", True),
        ("universal", True),
    ]
    assert report.chain is not None and report.chain.records == 1
    al.raise_for_problems(report)


def test_verify_names_a_damaged_blob(store: LocalStore) -> None:
    descriptors = publish_demo(store)
    damaged = descriptors[("whisper@1.1", "universal")]
    store.put(blob_key(damaged.hash), b"tampered")
    report = al.verify(store, "whisper@1.1", "universal")
    actual = blake3.blake3(b"tampered").hexdigest()
    expected = (
        f"blobs/{damaged.hash}.xyb has BLAKE3 {actual} and 8 bytes, but the index names "
        f"{damaged.hash} and {damaged.size_bytes} bytes: the blob is damaged, republish it"
    )
    assert report.problems == (expected,)
    with pytest.raises(IntegrityError) as caught:
        al.raise_for_problems(report)
    assert str(caught.value) == f"whisper@1.1: 1 problem found:\n  - {expected}"


def test_verify_names_a_missing_blob(store: LocalStore) -> None:
    descriptors = publish_demo(store)
    gone = descriptors[("whisper@1.0", "linux-x86_64")]
    store.delete(blob_key(gone.hash))
    report = al.verify(store, "whisper@1.0", "linux-x86_64")
    assert report.problems == (
        f"blobs/{gone.hash}.xyb is missing from {store.location}: republish this bundle",
    )


# --- concurrency: 16 processes x 10 promotions -------------------------------------------------

WORKER = """
import json, sys
from runtime.aliases import AliasConflict, promote_detailed
from runtime.storage.location import open_store

location, endpoint, tag, count = sys.argv[1:5]
store = open_store(location, endpoint_url=endpoint or None)
versions = ["1.0", "1.1", "1.10"]
print("ready", flush=True)
sys.stdin.readline()
for i in range(int(count)):
    reason = f"{tag}-{i}"
    try:
        done = promote_detailed(store, "whisper", "production", versions[i % 3], tag, reason)
        print(json.dumps({"reason": reason, "seq": done.record.seq, "retries": done.retries}))
    except AliasConflict as exc:
        print(json.dumps({"reason": reason, "conflict": str(exc)}))
"""


def _race(location: str, endpoint: str, processes: int, each: int) -> list[dict[str, object]]:
    """Start the promoters, release them together, and collect what each call reported."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, location, endpoint, f"p{n}", str(each)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0
        reports += [json.loads(line) for line in out.splitlines()]
    return reports


def _check_race(store: Store, reports: list[dict[str, object]], calls: int) -> None:
    assert len(reports) == calls
    succeeded = {r["reason"]: r["seq"] for r in reports if "seq" in r}
    records = al.history(store, MODEL, "production")
    # Every successful call has exactly one record, at the seq it reported; no other records.
    assert sorted(r.reason for r in records) == sorted(succeeded)
    assert {r.reason: r.seq for r in records} == succeeded
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert len(records) >= calls * 0.9  # bounded retries rarely give up
    pointer = _pointer(store)
    assert (pointer.seq, pointer.version) == (records[-1].seq, records[-1].version)
    assert al.verify_chain(store, MODEL, "production").problems == ()
    assert _view(store).aliases[0].history == records
    assert _mapped(store) == {"production": pointer.version}  # what clients resolve by


def _mapped(store: Store) -> dict[str, str]:
    return dict(load_index(store).models[MODEL].aliases)


@pytest.mark.slow
def test_sixteen_processes_promote_into_a_directory(store: LocalStore) -> None:
    _check_race(store, _race(store.location, "", 16, 10), 160)


@pytest.mark.slow
def test_sixteen_processes_promote_into_s3(moto_endpoint: str, s3_bucket: str) -> None:
    location = f"s3://{s3_bucket}/registry"
    store = open_store(location, endpoint_url=moto_endpoint)
    publish_demo(store)  # 16 racing, 5 each: moto serves ~200 requests/s (the directory: 10)
    _check_race(store, _race(location, moto_endpoint, 16, 5), 80)
