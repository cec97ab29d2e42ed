"""``registry-build publish``, ``verify``, ``reindex`` and ``gc`` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import blake3
import pytest
from support.sources import make_source

from registry_build.cli import main
from runtime.registry.wire import blob_key

MAIN = "import sys; from registry_build.cli import main; sys.exit(main())"


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
    assert err[0].startswith("uploaded 2 blobs (6 B), skipped 0, ")  # human units, not "0.0 MB"
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
        "would delete 1 blobs and 0 shards (6 B)\n",
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


def test_reindex_refuses_a_location_without_descriptors_and_init_starts_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "stie"
    assert main(["reindex", str(typo)]) == 1
    assert capsys.readouterr().err == (
        f"Error: {typo} holds no descriptors/ to rebuild an index from: check the location "
        "(reindexing a typo would start an empty registry there), or pass --init to start an "
        "empty registry on purpose\n"
    )
    assert not typo.exists()
    assert main(["reindex", str(typo), "--init", "--json"]) == 0
    written = json.loads(capsys.readouterr().out)["written"]
    assert "index.json" in written
    assert json.loads((typo / "index.json").read_bytes())["models"] == {}


def test_reindex_of_an_empty_bucket_prefix_is_refused(
    s3_bucket: str, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"s3://{s3_bucket}/nothing-here"
    assert main(["reindex", url, "--endpoint-url", moto_endpoint]) == 1
    assert capsys.readouterr().err.startswith(f"Error: {url} holds no descriptors/ to rebuild")


def test_reindex_without_aws_credentials_says_so(tmp_path: Path) -> None:
    # In a process of its own: boto3's default session keeps credentials it found once.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",  # no instance role to ask for
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    done = subprocess.run(
        [sys.executable, "-c", MAIN, "reindex", "s3://nobucket/x"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "Error: LIST s3://nobucket/x/descriptors/: no AWS credentials found; set "
        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run where a role applies\n"
    )


def test_reporting_commands_speak_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "site"
    assert main(["publish", "--json", str(_source(tmp_path)), str(dest), "--alias", "prod"]) == 0
    published = json.loads(capsys.readouterr().out)
    assert (len(published["uploaded"]), published["uploaded_bytes"]) == (2, 6)
    assert published["promoted"] == ["tiny@prod -> 1.10 (seq 1)"]
    assert main(["verify", "--json", str(dest)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "dest": str(dest), "checked": 2, "problems": [],
    }  # fmt: skip
    assert main(["gc", "--json", "--dry-run", str(dest)]) == 0
    assert json.loads(capsys.readouterr().out)["objects"] == []
    assert main(["reindex", "--json", str(dest)]) == 0
    assert isinstance(json.loads(capsys.readouterr().out)["written"], list)


def test_verify_json_failure_carries_the_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "site"
    assert main(["publish", "--quiet", str(_source(tmp_path)), str(dest)]) == 0
    digest = blake3.blake3(b"one").hexdigest()
    (dest / blob_key(digest)).unlink()
    capsys.readouterr()
    assert main(["verify", "--json", str(dest)]) == 1
    out, err = capsys.readouterr()
    failure = json.loads(out)
    assert (failure["kind"], failure["exit_code"], err) == ("VerifyFailed", 1, "")
    assert failure["error"] == f"verified 2 blobs in {dest}: 1 problem"
    assert failure["problems"] == [
        {"label": "tiny@1.9 (universal)", "key": blob_key(digest), "what": "is missing"}
    ]


def test_no_model_list_warns_what_openai_clients_lose_and_leaves_v1_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "site"
    assert main(["publish", "--quiet", str(_source(tmp_path)), str(dest)]) == 0
    kept = (dest / "v1" / "models").read_bytes()
    more = make_source(tmp_path / "more", [("tiny", "2.0", "universal", b"three")])
    capsys.readouterr()
    assert main(["publish", "--quiet", "--no-model-list", str(more), str(dest)]) == 0
    assert capsys.readouterr().err.splitlines()[0] == (
        "Warning: --no-model-list: `v1/models`, the OpenAI-style model list (GET /v1/models), "
        "and the browse page's model list (index.html, index-N.html) are not updated, so "
        "OpenAI-style clients and the list do not show the models published from now on (each "
        "model's own page is current, and the list's filter box finds it by name over http); "
        "publish without --no-model-list, or run `registry-build reindex`, to bring them back"
    )
    assert (dest / "v1" / "models").read_bytes() == kept
    index = json.loads((dest / "index.json").read_bytes())
    assert "v1/models" not in index["documents"] and index["models"]["tiny"]["latest"] == "2.0"
    assert main(["reindex", str(dest)]) == 0
    assert b'"2.0"' in (dest / "v1" / "models").read_bytes()


def test_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    for command, defaults in {
        "build": ["(default: bundles.json)", "(default: site)", "(default: 1)"],
        "list": ["bundles.json or .yaml to read (default: bundles.json)"],
        "clean": ["only what a build writes in it) (default: site)"],
        "serve": ["(default: site)", "(default: 8000)", "(default: 127.0.0.1)"],
        "gc": ["(default 7d)"],
    }.items():
        with pytest.raises(SystemExit):
            main([command, "--help"])
        shown = " ".join(capsys.readouterr().out.split())
        assert all(d in shown for d in defaults), (command, shown)
