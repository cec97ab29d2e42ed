"""``registry-runtime promote | aliases | history | verify`` against a real directory, and the
reading commands over HTTP against ``python -m http.server`` serving a built site."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest
from support.registries import whisper_registry

from runtime.cli import main
from runtime.registry.wire import blob_key
from runtime.storage.local import LocalStore

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalStore:
    """:func:`whisper_registry`, with no BUNDLE_REGISTRY or GITHUB_ACTOR set."""
    monkeypatch.delenv("BUNDLE_REGISTRY", raising=False)
    monkeypatch.delenv("GITHUB_ACTOR", raising=False)
    return whisper_registry(tmp_path / "site")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _promote(registry: LocalStore, version: str, *extra: str) -> list[str]:
    return ["promote", "whisper", "production", version, "--registry", registry.location, *extra]


def test_promote_then_list_and_history(
    registry: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, *_promote(registry, "1.0", "--actor", "alice", "--reason", "go"))
    assert (code, out) == (0, "whisper@production -> 1.0: record 1 by alice\n")
    code, out, _ = _run(capsys, *_promote(registry, "1.1", "--actor", "bob"))
    assert (code, out) == (0, "whisper@production -> 1.1 (was 1.0): record 2 by bob\n")

    code, out, _ = _run(capsys, "aliases", "whisper", "--registry", registry.location)
    (line,) = out.splitlines()
    assert line.startswith("production\t1.1\trecord 2\t")
    assert line.endswith("\tbob\t")

    code, out, _ = _run(capsys, "history", "whisper", "production", "--registry", registry.location)
    lines = [line.split("\t") for line in out.splitlines()]
    assert [(f[0], f[2], f[3], f[4]) for f in lines] == [
        ("1", "- -> 1.0", "alice", "go"),
        ("2", "1.0 -> 1.1", "bob", ""),
    ]


def test_history_as_json(
    registry: LocalStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUNDLE_REGISTRY", registry.location)
    monkeypatch.setenv("GITHUB_ACTOR", "ci-bot")
    _run(capsys, "promote", "whisper", "production", "1.1", "--reason", "release")
    code, out, _ = _run(capsys, "history", "whisper", "production", "--json")
    (record,) = json.loads(out)
    assert code == 0
    assert {k: record[k] for k in ("version", "previous", "actor", "reason", "seq")} == {
        "version": "1.1",
        "previous": None,
        "actor": "ci-bot",
        "reason": "release",
        "seq": 1,
    }


def test_verify_a_ref_through_its_alias(
    registry: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(capsys, *_promote(registry, "1.1", "--actor", "alice"))
    code, out, err = _run(capsys, "verify", "whisper@production", "--registry", registry.location)
    digest = blake3.blake3(b"whisper 1.1" * 100).hexdigest()
    assert (code, err) == (0, "")
    assert out == (
        f"ok\twhisper@1.1\tuniversal\t{digest}\nok\twhisper@production\t1 record(s), chain intact\n"
    )


def test_verify_fails_on_a_damaged_blob(
    registry: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = blake3.blake3(b"whisper 1.0" * 100).hexdigest()
    registry.put(blob_key(digest), b"bad")
    code, out, err = _run(capsys, "verify", "whisper@1.0", "--registry", registry.location)
    bad = blake3.blake3(b"bad").hexdigest()
    assert (code, out) == (1, "")
    assert err == (
        "Error: whisper@1.0: 1 problem found:\n"
        f"  - blobs/{digest}.xyb has BLAKE3 {bad} and 3 bytes, but the index names {digest} "
        "and 1100 bytes: the blob is damaged, republish it\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["promote", "whisper", "production", "2.0", "--actor", "a"],
            "model 'whisper' has no version '2.0' in {loc} (versions: 1.0, 1.1): "
            "publish it first or pick one of those",
        ),
        (
            ["history", "whisper", "staging"],
            "model 'whisper' has no alias 'staging' in {loc} (aliases: none)",
        ),
        (["aliases", "llama"], "model 'llama' is not in the index of {loc} (models: whisper)"),
        (
            ["verify", "whisper@"],
            "ref 'whisper@' has nothing after '@': write whisper@VERSION, whisper@ALIAS, "
            "or just whisper for the highest version",
        ),
    ],
)
def test_user_errors_print_one_line_and_exit_1(
    registry: LocalStore, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = _run(capsys, *argv, "--registry", registry.location)
    assert (code, out) == (1, "")
    assert err == f"Error: {message.format(loc=registry.location)}\n"


def test_a_registry_is_required(registry: LocalStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "aliases", "whisper")
    assert (code, err) == (
        1,
        "Error: no registry given: pass --registry URL|DIR|s3://BUCKET or set BUNDLE_REGISTRY\n",
    )


def test_a_lost_pointer_is_answered_from_the_records(
    registry: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """issue 10: a pointer missing while records exist (a crash during an alias's first
    promotion, or a deleted pointer) is rolled forward; verify still reports it."""
    _run(capsys, *_promote(registry, "1.0", "--actor", "alice"))
    _run(capsys, *_promote(registry, "1.1", "--actor", "bob"))
    registry.delete("aliases/whisper/production.json")
    code, out, err = _run(capsys, "aliases", "whisper", "--registry", registry.location)
    assert (code, err) == (0, "")
    assert out.startswith("production\t1.1\trecord 2\t")
    code, out, err = _run(capsys, "verify", "whisper@production", "--registry", registry.location)
    digest = blake3.blake3(b"whisper 1.1" * 100).hexdigest()
    assert (code, out) == (1, f"ok\twhisper@1.1\tuniversal\t{digest}\n")
    assert err == (
        "Error: whisper@production: 1 problem found:\n"
        "  - aliases/whisper/production.json: missing although 2 record(s) exist (the next "
        "promote restores it)\n"
    )


@pytest.mark.parametrize("command", [["aliases", "whisper"], ["history", "whisper", "production"]])
def test_a_damaged_alias_is_one_line_that_does_not_contradict_itself(
    registry: LocalStore, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    _run(capsys, *_promote(registry, "1.0", "--actor", "alice"))
    registry.delete("aliases/whisper/production.json")
    registry.delete("aliases/whisper/production/1.json")
    registry.put("aliases/whisper/production/notes.txt", b"a stray file keeps the folder")
    code, out, err = _run(capsys, *command, "--registry", registry.location)
    assert (code, out) == (1, "")
    damage = (
        "no record under aliases/whisper/production/ exists"
        if command[0] == "history"
        else "neither its pointer aliases/whisper/production.json nor its first record "
        "aliases/whisper/production/1.json exists"
    )
    assert err == (
        f"Error: alias 'production' of model 'whisper' in {registry.location} is damaged: "
        f"{damage}; restore the files, or promote the alias again\n"
    )


# --- over HTTP: a built site with promotions, served by python -m http.server -----------------


@pytest.fixture
def site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The repository's tiny-llama built by ``registry-build build --alias staging``, then
    promoted to production twice (by alice, then bob)."""
    out = tmp_path / "site"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    subprocess.run(
        ["registry-build", "build", "--config", "bundles.json", "--out", str(out),
         "--only", "tiny-llama", "--alias", "staging", "--actor", "ci", "--quiet"],
        cwd=REPO, env=env, check=True, capture_output=True,
    )  # fmt: skip
    for actor in ("alice", "bob"):
        promote = ["promote", "tiny-llama", "production", "1.0", "--actor", actor]
        assert _run(capsys, *promote, "--registry", str(out))[0] == 0
    return out


READING = [
    ["aliases", "tiny-llama"],
    ["history", "tiny-llama", "production"],
    ["history", "tiny-llama", "staging", "--json"],
    ["verify", "tiny-llama@production"],
    ["verify", "tiny-llama@staging", "--target", "macos-arm64"],
]


@pytest.mark.parametrize("argv", READING, ids=[" ".join(a) for a in READING])
def test_reading_commands_answer_over_http_as_from_the_directory(
    site: Path,
    http_server: Callable[[Path], str],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    url = http_server(site)
    from_directory = _run(capsys, *argv, "--registry", str(site))
    assert _run(capsys, *argv, "--registry", url) == from_directory
    assert from_directory[0] == 0 and from_directory[2] == ""


def test_aliases_and_history_over_http_say_what_was_promoted(
    site: Path, http_server: Callable[[Path], str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = http_server(site)
    code, out, _ = _run(capsys, "aliases", "tiny-llama", "--registry", url)
    assert code == 0
    lines = [line.split("\t") for line in out.splitlines()]
    assert [(f[0], f[1], f[2], f[4]) for f in lines] == [
        ("production", "1.0", "record 2", "bob"),
        ("staging", "1.0", "record 1", "ci"),
    ]
    code, out, _ = _run(capsys, "history", "tiny-llama", "production", "--registry", url)
    assert code == 0
    lines = [line.split("\t") for line in out.splitlines()]
    assert [(f[0], f[2], f[3]) for f in lines] == [
        ("1", "- -> 1.0", "alice"),
        ("2", "1.0 -> 1.0", "bob"),
    ]


def test_a_lost_pointer_over_http_is_answered_from_the_view_and_the_records(
    site: Path, http_server: Callable[[Path], str], capsys: pytest.CaptureFixture[str]
) -> None:
    """No listing over HTTP: the alias is named by aliases/<id>/index.json, its records probed."""
    (site / "aliases/tiny-llama/production.json").unlink()
    url = http_server(site)
    code, out, err = _run(capsys, "aliases", "tiny-llama", "--registry", url)
    assert (code, err) == (0, "")
    assert out.startswith("production\t1.0\trecord 2\t")
    code, out, err = _run(capsys, "verify", "tiny-llama@production", "--registry", url)
    assert (code, err.splitlines()[1:]) == (
        1,
        ["  - aliases/tiny-llama/production.json: missing although 2 record(s) exist (the next "
         "promote restores it)"],
    )  # fmt: skip


def test_promote_over_http_says_it_needs_a_writable_location(
    site: Path, http_server: Callable[[Path], str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = http_server(site)
    code, out, err = _run(
        capsys, "promote", "tiny-llama", "production", "1.0", "--actor", "eve", "--registry", url
    )
    assert (code, out) == (1, "")
    assert err == (
        f"Error: {url} is read-only (HTTP): writing aliases/tiny-llama/production/3.json needs "
        "a writable location; use the directory or s3:// location it is served from\n"
    )
    assert not (site / "aliases/tiny-llama/production/3.json").exists()
