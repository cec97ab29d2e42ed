"""``registry-build publish``, ``verify``, ``reindex`` and ``gc`` as a user runs them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import blake3
import pytest
from support.sources import make_source

from registry_build.cli import main
from runtime.registry.wire import blob_key


def _source(tmp_path: Path) -> Path:
    return make_source(
        tmp_path / "src",
        [("tiny", "1.9", "universal", b"one"), ("tiny", "1.10", "universal", b"two")],
    )


def test_publish_with_alias_then_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_SHA", "abc123")
    dest = tmp_path / "site"
    argv = ["publish", str(_source(tmp_path)), str(dest), "--alias", "production", "--actor", "ci"]
    assert main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("uploaded 2 blobs (0.0 MB), skipped 0, ")
    assert err[1] == "promoted tiny@production -> 1.10 (seq 1)"
    pointer = json.loads((dest / "aliases" / "tiny" / "production.json").read_text())
    assert pointer["version"] == "1.10"
    record = json.loads((dest / "aliases" / "tiny" / "production" / "1.json").read_text())
    assert (record["actor"], record["reason"]) == ("ci", "registry-build publish at commit abc123")
    assert "production" in (dest / "index.html").read_text()

    assert main(["verify", str(dest)]) == 0
    assert capsys.readouterr().err == f"verified 2 blobs in {dest}: 0 problems\n"


def test_verify_names_a_corrupt_blob_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "site"
    assert main(["publish", "--quiet", str(_source(tmp_path)), str(dest)]) == 0
    digest = blake3.blake3(b"one").hexdigest()
    (dest / blob_key(digest)).write_bytes(b"ONE")
    capsys.readouterr()
    assert main(["verify", str(dest)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"tiny@1.9 (universal): {blob_key(digest)} has BLAKE3 "
        f"{blake3.blake3(b'ONE').hexdigest()}, the index names {digest}",
        f"verified 2 blobs in {dest}: 1 problem",
    ]


def test_publish_refuses_a_bad_alias_before_sending_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "site"
    assert main(["publish", str(_source(tmp_path)), str(dest), "--alias", "no way"]) == 1
    assert capsys.readouterr().err.startswith("Error: ")
    assert not dest.exists()


def test_gc_dry_run_lists_then_gc_deletes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "site"
    assert main(["publish", "--quiet", str(_source(tmp_path)), str(dest)]) == 0
    orphan = dest / blob_key(blake3.blake3(b"orphan").hexdigest())
    orphan.write_bytes(b"orphan")
    os.utime(orphan, (1, 1))  # long past any grace period
    capsys.readouterr()
    assert main(["gc", str(dest), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (
        f"{orphan.relative_to(dest)}\t6\n",
        "would delete 1 blobs and 0 shards (0.0 MB)\n",
    )
    assert orphan.exists()
    assert main(["gc", str(dest), "--grace", "1h"]) == 0
    assert not orphan.exists()
    assert main(["verify", str(dest)]) == 0


def test_reindex_rebuilds_a_lost_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "site"
    assert main(["publish", "--quiet", str(_source(tmp_path)), str(dest)]) == 0
    before = (dest / "index.json").read_bytes()
    (dest / "index.json").unlink()
    assert main(["reindex", str(dest)]) == 0
    assert (dest / "index.json").read_bytes() == before
    assert "reindexed" in capsys.readouterr().err


def test_no_index_warns_what_xybrid_loses_and_leaves_index_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "site"
    assert main(["publish", "--quiet", str(_source(tmp_path)), str(dest)]) == 0
    kept = (dest / "index").read_bytes()
    more = make_source(tmp_path / "more", [("tiny", "2.0", "universal", b"three")])
    capsys.readouterr()
    assert main(["publish", "--quiet", "--no-index", str(more), str(dest)]) == 0
    assert capsys.readouterr().err.splitlines()[0] == (
        "Warning: --no-index: `index`, the bare array that Xybrid's GET /index reads, is not "
        "updated, so Xybrid clients do not see the bundles published from now on (the copy there "
        "stays as it was); publish without --no-index, or run `registry-build reindex`, to bring "
        "it back"
    )
    assert (dest / "index").read_bytes() == kept
    assert b'"2.0"' in (dest / "v1" / "models").read_bytes()
    assert main(["reindex", str(dest)]) == 0
    assert b'"2.0"' in (dest / "index").read_bytes()


def test_a_bad_grace_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["gc", "site", "--grace", "soon"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "'soon' is not a duration: write a number with s, m, h, d or w" in err


def test_gc_touches_only_blob_files_and_needs_a_unit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "site"
    assert main(["publish", "--quiet", str(_source(tmp_path)), str(dest)]) == 0
    readme = dest / "blobs" / "README"
    readme.write_text("not a blob")
    os.utime(readme, (1, 1))
    assert main(["gc", str(dest), "--grace", "0s"]) == 0
    assert readme.exists()
    with pytest.raises(SystemExit):
        main(["gc", str(dest), "--grace", "7"])
    assert "'7' is not a duration" in capsys.readouterr().err


def test_verify_and_gc_name_a_broken_document_instead_of_crashing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "site"
    assert main(["publish", "--quiet", str(_source(tmp_path)), str(dest)]) == 0
    bad = dest / "descriptors" / "zzz" / "1" / "universal.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"x": 1}')
    capsys.readouterr()
    assert main(["gc", str(dest), "--dry-run"]) == 1
    assert capsys.readouterr().err == (
        f"Error: {dest}/descriptors/zzz/1/universal.json: $: object missing required field `id`; "
        "the registry is corrupt or hostile: fix or remove it, then run the command again\n"
    )
    (dest / "index.json").write_text("{bad")
    assert main(["verify", str(dest)]) == 1
    assert capsys.readouterr().err.startswith(f"Error: {dest}/index.json is not valid JSON")


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_publishing_into_the_source_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scheme: str
) -> None:
    src = _source(tmp_path)
    assert main(["publish", str(src), f"{scheme}{src / 'sub'}"]) == 1
    assert capsys.readouterr().err == (
        f"Error: {src / 'sub'} is inside {src}: publish to another place\n"
    )
    assert not (src / "sub").exists()
