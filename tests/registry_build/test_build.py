"""The build end to end: real files, real processes, the CLI as a user runs it."""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from support.sources import catalog_of

from registry_build.build import BuildOptions, build, state_dir
from registry_build.cli import main
from runtime.aliases import resolve_alias
from runtime.errors import ConfigError, ImmutableConflict
from runtime.registry.wire import blob_key, decode_descriptor, encode
from runtime.storage.atomic import is_temp_name
from runtime.storage.local import LocalStore
from runtime.storage.location import parse_location
from runtime.storage.s3 import S3Store


def write_config(root: Path, bundles: dict[str, Any], name: str = "bundles.json") -> Path:
    path = root / name
    path.write_text(json.dumps({"bundles": bundles}, indent=2))
    return path


def make_sources(root: Path) -> Path:
    """Three models: a single file, a multi-file dir (two platforms), a placeholder."""
    (root / "src" / "bert").mkdir(parents=True)
    (root / "src" / "tiny.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 64)
    (root / "src" / "bert" / "model.onnx").write_bytes(b"onnx" * 5000)
    (root / "src" / "bert" / "tok").mkdir()
    (root / "src" / "bert" / "tok" / "vocab.txt").write_text("[PAD]\n[CLS]\n")
    return write_config(
        root,
        {
            "tiny": {"model_id": "tiny", "version": "1.0", "description": "Tiny <b>LM</b>",
                     "metadata": {"license": "MIT", "parameter_count": 1000},
                     "targets": [{"platform": "universal", "model_file": "tiny.gguf",
                                  "model_type": "gguf", "source_path": "src/tiny.gguf"}]},
            "bert": {"model_id": "bert", "version": "2.1", "description": "Encoder",
                     "targets": [
                         {"platform": "linux-x86_64", "model_file": "model.onnx",
                          "model_type": "onnx", "source_dir": "src/bert"},
                         {"platform": "macos-arm64", "model_file": "model.onnx",
                          "model_type": "onnx", "source_dir": "src/bert"}]},
            "ghost": {"model_id": "ghost", "version": "0.1", "description": "Not trained yet",
                      "targets": [{"platform": "android-arm64", "model_file": "ghost.tflite",
                                   "model_type": "tflite", "source_path": "src/ghost.tflite",
                                   "fallback": "placeholder"}]},
        },
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def state_of(out: str | Path, endpoint_url: str | None = None) -> Path:
    """The build state directory of the output ``out``."""
    return state_dir(parse_location(str(out)), endpoint_url)


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.relative_to(root).as_posix().startswith(".")}  # fmt: skip


def test_build_writes_the_registry_layout(tmp_path: Path) -> None:
    config = make_sources(tmp_path)
    report = build(config, str(tmp_path / "site"))
    assert [r.status for r in report.results] == ["built"] * 4
    site = tmp_path / "site"
    index = catalog_of(LocalStore(site))[1]
    assert [(d.id, d.version, d.target) for d in index.bundles] == [
        ("bert", "2.1", "linux-x86_64"), ("bert", "2.1", "macos-arm64"),
        ("ghost", "0.1", "android-arm64"), ("tiny", "1.0", "universal"),
    ]  # fmt: skip
    for entry in index.bundles:
        blob = site / entry.location.url
        assert blob.stat().st_size == entry.size_bytes
        full = decode_descriptor(
            (site / f"descriptors/{entry.id}/{entry.version}/{entry.target}.json").read_bytes()
        )
        assert full.hash == entry.hash and full.files
    assert (site / "index").read_bytes() == encode(index.bundles)
    assert (site / "index.html").is_file()
    bert = decode_descriptor((site / "descriptors/bert/2.1/linux-x86_64.json").read_bytes())
    assert [f.path for f in bert.files] == ["model.onnx", "tok/vocab.txt"]
    ghost = decode_descriptor((site / "descriptors/ghost/0.1/android-arm64.json").read_bytes())
    assert ghost.metadata == {"placeholder": True}
    tiny = decode_descriptor((site / "descriptors/tiny/1.0/universal.json").read_bytes())
    assert tiny.metadata == {"license": "MIT", "parameter_count": 1000}
    # The two bert platforms carry identical files but different manifests: different blobs.
    assert len({d.hash for d in index.bundles}) == 4


def test_same_inputs_give_identical_bundles_anywhere(tmp_path: Path) -> None:
    first = tmp_path / "a"
    second = tmp_path / "b"
    make_sources(first)
    shutil.copytree(first, second)
    for path in (second / "src").rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
    build(first / "bundles.json", str(first / "site"))
    build(second / "bundles.json", str(second / "site"), BuildOptions(jobs=3))
    blobs_a = files_under(first / "site" / "blobs")
    assert blobs_a == files_under(second / "site" / "blobs")
    assert len(blobs_a) == 4


AUDIT = """
import sys
opened = []
def hook(event, args):
    if event == "open" and isinstance(args[0], str):
        opened.append(args[0])
sys.addaudithook(hook)
from registry_build.cli import main
code = main(sys.argv[1:])
src = sys.argv[-1]
print("\\n".join(p for p in opened if p.startswith(SRC)))
sys.exit(code)
"""


def rebuild_opening(tmp_path: Path) -> tuple[list[str], list[str]]:
    """Run a build in a fresh process; return the source files it opened and its stderr lines."""
    script = AUDIT.replace("SRC", repr(str(tmp_path / "src")))
    proc = subprocess.run(
        [sys.executable, "-c", script, "build", "--config", str(tmp_path / "bundles.json"),
         "--out", str(tmp_path / "site")],
        capture_output=True, text=True, env={**os.environ}, check=True,
    )  # fmt: skip
    return proc.stdout.split(), proc.stderr.splitlines()


def test_noop_rebuild_reads_no_source_and_writes_nothing(tmp_path: Path) -> None:
    make_sources(tmp_path)
    opened, _ = rebuild_opening(tmp_path)
    assert opened  # the first build did read the sources
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "site").rglob("*")}
    opened, stderr = rebuild_opening(tmp_path)
    assert opened == []
    assert after_equal(before, tmp_path / "site")
    assert stderr[-1] == f"4 bundles (0 built, 4 unchanged), 0 files written to {tmp_path / 'site'}"


def after_equal(before: dict[Path, int], root: Path) -> bool:
    return before == {p: p.stat().st_mtime_ns for p in root.rglob("*")}


def test_changing_one_source_rebuilds_only_its_bundles(tmp_path: Path) -> None:
    config = make_sources(tmp_path)
    build(config, str(tmp_path / "site"))
    vocab = tmp_path / "src" / "bert" / "tok" / "vocab.txt"
    os.utime(vocab, (2_000_000, 2_000_000))  # touched, same content
    statuses = {
        (r.descriptor.id, r.descriptor.target): r.status
        for r in build(config, str(tmp_path / "site")).results
    }
    assert statuses == {
        ("bert", "linux-x86_64"): "built",
        ("bert", "macos-arm64"): "built",
        ("ghost", "android-arm64"): "unchanged",
        ("tiny", "universal"): "unchanged",
    }


def test_changed_content_without_new_version_is_refused(tmp_path: Path) -> None:
    config = make_sources(tmp_path)
    build(config, str(tmp_path / "site"))
    index_before = (tmp_path / "site" / "index.json").read_bytes()
    (tmp_path / "src" / "tiny.gguf").write_bytes(b"GGUF retrained")
    with pytest.raises(
        ImmutableConflict,
        match=r"tiny@1.0 for universal is already published with digest [0-9a-f]{64}; "
        r"this build produced [0-9a-f]{64}",
    ):
        build(config, str(tmp_path / "site"))
    assert (tmp_path / "site" / "index.json").read_bytes() == index_before


def test_new_version_accumulates_in_the_index(tmp_path: Path) -> None:
    config = make_sources(tmp_path)
    build(config, str(tmp_path / "site"))
    doc = json.loads(config.read_text())
    doc["bundles"]["tiny"]["version"] = "1.1"
    (tmp_path / "src" / "tiny.gguf").write_bytes(b"GGUF retrained")
    config.write_text(json.dumps(doc))
    report = build(config, str(tmp_path / "site"))
    assert [r.status for r in report.results].count("built") == 1
    index = catalog_of(LocalStore(tmp_path / "site"))[1]
    assert [d.version for d in index.bundles if d.id == "tiny"] == ["1.1", "1.0"]


def test_failed_validation_writes_nothing(tmp_path: Path) -> None:
    config = make_sources(tmp_path)
    doc = json.loads(config.read_text())
    doc["bundles"]["tiny"]["targets"][0]["source_path"] = "src/missing.gguf"
    config.write_text(json.dumps(doc))
    with pytest.raises(ConfigError):
        build(config, str(tmp_path / "site"))
    assert not (tmp_path / "site").exists()
    assert not state_of(tmp_path / "site").exists()


def test_cli_exit_codes_and_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = make_sources(tmp_path)
    out = str(tmp_path / "site")
    assert main(["build", "--config", str(config), "--out", out, "--only", "tiny", "--quiet"]) == 0
    assert catalog_of(LocalStore(tmp_path / "site"))[0].models.keys() == {"tiny"}
    assert main(["build", "--config", str(config), "--out", out, "--only", "nope"]) == 1
    assert capsys.readouterr().err == (
        "Error: --only names 'nope', not defined in bundles.json (defined: bert, ghost, tiny)\n"
    )
    with pytest.raises(SystemExit) as info:
        main(["build", "--jobs", "0"])
    assert info.value.code == 2
    assert "argument --jobs: must be at least 1, got 0" in capsys.readouterr().err
    (tmp_path / "src" / "tiny.gguf").unlink()
    assert main(["build", "--config", str(config), "--out", out]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "Error: 1 problem in the configuration:\n  - bundles.json: "
        "bundles[\"tiny\"].targets[0].source_path: 'src/tiny.gguf' does not exist"
    )


def test_cli_json_report_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = make_sources(tmp_path)
    assert main(["build", "--config", str(config), "--out", str(tmp_path / "site"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {b["descriptor"]["id"] for b in report["bundles"]} == {"tiny", "bert", "ghost"}
    assert [b["placeholder"] for b in report["bundles"]] == [False, False, False, True]
    assert main(["list", "--config", str(config), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["model_id"], r["platform"], r["source_missing"]) for r in rows] == [
        ("tiny", "universal", False), ("bert", "linux-x86_64", False),
        ("bert", "macos-arm64", False), ("ghost", "android-arm64", True),
    ]  # fmt: skip


def test_clean_refuses_a_directory_that_is_not_a_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("...")
    assert main(["clean", "--out", str(tmp_path / "precious")]) == 1
    assert (tmp_path / "precious" / "thesis.tex").exists()
    assert "does not look like a registry" in capsys.readouterr().err
    config = make_sources(tmp_path)
    build(config, str(tmp_path / "site"))
    assert main(["clean", "--out", str(tmp_path / "site")]) == 0
    assert not (tmp_path / "site").exists()
    build(config, str(tmp_path / "site"))
    (tmp_path / "site" / "CNAME").write_text("models.example.com")  # the user's own file
    assert main(["clean", "--out", str(tmp_path / "site")]) == 0
    assert [p.name for p in (tmp_path / "site").iterdir()] == ["CNAME"]


def test_alias_points_at_each_built_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_sources(tmp_path)
    out = str(tmp_path / "site")
    assert (
        main(["build", "--config", str(config), "--out", out, "--alias", "latest", "--actor", "ci"])
        == 0
    )
    err = capsys.readouterr().err
    assert "promoted  bert@latest -> 2.1 (seq 1)" in err
    pointer = json.loads((tmp_path / "site/aliases/tiny/latest.json").read_text())
    assert (pointer["version"], pointer["seq"]) == ("1.0", 1)
    record = json.loads((tmp_path / "site/aliases/tiny/latest/1.json").read_text())
    assert (record["actor"], record["reason"]) == ("ci", "registry-build build")
    assert ">latest<" in (tmp_path / "site/index.html").read_text()  # small registry: one page
    assert not (tmp_path / "site/aliases/ghost").exists()  # a placeholder is not promoted
    assert (
        main(["build", "--config", str(config), "--out", out, "--alias", "latest", "--actor", "ci"])
        == 0
    )
    assert "promoted  bert@latest -> 2.1 (already)" in capsys.readouterr().err
    assert not (tmp_path / "site/aliases/tiny/latest/2.json").exists()  # no record per build
    assert main(["build", "--config", str(config), "--out", out, "--alias", "../x"]) == 1
    assert "alias '../x' is not a valid name" in capsys.readouterr().err


def test_build_to_s3_publishes_and_rebuilds_incrementally(
    tmp_path: Path, moto_endpoint: str, s3_bucket: str
) -> None:
    import boto3

    config = make_sources(tmp_path)
    out = f"s3://{s3_bucket}/reg"
    first = build(config, out, BuildOptions(endpoint_url=moto_endpoint))
    assert [r.status for r in first.results] == ["built"] * 4
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    index = catalog_of(S3Store.from_url(out, endpoint_url=moto_endpoint))[1]
    for entry in index.bundles:
        head = s3.head_object(Bucket=s3_bucket, Key=f"reg/{entry.location.url}")
        assert head["ContentLength"] == entry.size_bytes
    again = build(config, out, BuildOptions(endpoint_url=moto_endpoint))
    assert [r.status for r in again.results] == ["unchanged"] * 4
    assert again.written == []


def test_an_s3_build_publishes_and_promotes_as_publish_does(
    tmp_path: Path, moto_endpoint: str, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_sources(tmp_path)
    out = f"s3://{s3_bucket}/promoted"
    argv = ["build", "--config", str(config), "--out", out, "--endpoint-url", moto_endpoint]
    assert main([*argv, "--alias", "latest", "--actor", "ci"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert "promoted  bert@latest -> 2.1 (seq 1)" in err
    assert any(line.startswith("uploaded 4 blobs (") for line in err)
    bucket = S3Store.from_url(out, endpoint_url=moto_endpoint)
    assert resolve_alias(bucket, "tiny", "latest").version == "1.0"
    assert resolve_alias(bucket, "bert", "latest").version == "2.1"
    assert ">latest<" in bucket.get("index.html")[0].decode()  # the pages show the alias
    assert not list(bucket.list("aliases/ghost/"))  # a placeholder is not promoted
    mirror = state_of(out, moto_endpoint) / "site"
    assert not (mirror / "aliases").exists()  # promoted in the bucket, not in the mirror


def test_an_s3_build_publishes_only_what_it_built(
    tmp_path: Path, moto_endpoint: str, s3_bucket: str
) -> None:
    """The local mirror of an s3:// output keeps earlier builds; a build with another config
    must not publish them, nor bring back a model deleted from the bucket."""
    import boto3

    first = make_sources(tmp_path)
    out = f"s3://{s3_bucket}/mirror"
    build(first, out, BuildOptions(endpoint_url=moto_endpoint))
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=s3_bucket, Prefix="mirror/descriptors/bert/"
    ):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=s3_bucket, Key=item["Key"])
    assert main(["reindex", out, "--endpoint-url", moto_endpoint]) == 0
    other = write_config(
        tmp_path,
        {"solo": {"model_id": "solo", "version": "1.0", "targets": [
            {"platform": "universal", "model_file": "tiny.gguf", "model_type": "gguf",
             "source_path": "src/tiny.gguf"}]}},
        name="other.json",
    )  # fmt: skip
    build(other, out, BuildOptions(endpoint_url=moto_endpoint))
    index = catalog_of(S3Store.from_url(out, endpoint_url=moto_endpoint))[0]
    assert index.models.keys() == {"ghost", "solo", "tiny"}  # bert stays deleted


def test_the_build_state_of_an_s3_output_is_per_endpoint() -> None:
    assert state_of("s3://b/p", "http://a:1") != state_of("s3://b/p", "http://b:2")
    assert state_of("s3://b/p", "http://a:1") == state_of("s3://b/p/", "http://a:1")


def test_an_output_that_is_a_file_is_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_sources(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["build", "--config", str(config), "--out", str(afile / "sub")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: Not a directory (")
    assert err.endswith(": check the path and its permissions\n")
    assert main(["clean", "--out", "s3://bucket/prefix"]) == 1
    assert capsys.readouterr().err.startswith("Error: clean removes a local registry directory")


def test_a_lost_or_truncated_blob_is_rebuilt(tmp_path: Path) -> None:
    config = make_sources(tmp_path)
    site = tmp_path / "site"
    first = {r.descriptor.id: r.descriptor for r in build(config, str(site)).results}
    blob = site / blob_key(first["tiny"].hash)
    blob.write_bytes(blob.read_bytes()[:10])
    (site / blob_key(first["ghost"].hash)).unlink()
    again = {
        (r.descriptor.id, r.descriptor.target): r.status for r in build(config, str(site)).results
    }
    assert again[("tiny", "universal")] == again[("ghost", "android-arm64")] == "built"
    assert blob.stat().st_size == first["tiny"].size_bytes
    assert main(["verify", str(site)]) == 0


def test_an_unchanged_build_still_renders_a_promotion_made_meanwhile(tmp_path: Path) -> None:
    from runtime.aliases import promote

    config = make_sources(tmp_path)
    site = tmp_path / "site"
    build(config, str(site))
    assert build(config, str(site)).written == []  # a no-op: nothing rendered or written
    promote(LocalStore(site), "tiny", "prod", "1.0", "ops", "ok")  # writes no page
    assert "index.html" in build(config, str(site)).written
    assert ">prod<" in (site / "index.html").read_text()


def site_leftovers(site: Path) -> list[str]:
    """Hidden names anywhere in the site: staging directories and temporaries."""
    return sorted(p.relative_to(site).as_posix() for p in site.rglob(".*"))


def test_a_link_out_of_a_source_dir_fails_the_build_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_sources(tmp_path)
    (tmp_path / "src" / "bert" / "passwd").symlink_to("/etc/passwd")
    assert main(["build", "--config", str(config), "--out", str(tmp_path / "site")]) == 1
    assert capsys.readouterr().err == (
        "Error: 2 problems in the configuration:\n"
        "  - bundles.json: bundles[\"bert\"].targets[0].source_dir: 'passwd' is a symbolic link "
        "to '/etc/passwd', outside the directory: links are not packed; replace the link with a "
        "copy of what it points to, or remove it\n"
        "  - bundles.json: bundles[\"bert\"].targets[1].source_dir: 'passwd' is a symbolic link "
        "to '/etc/passwd', outside the directory: links are not packed; replace the link with a "
        "copy of what it points to, or remove it\n"
    )
    assert not (tmp_path / "site").exists()


def test_no_staging_in_the_site_after_a_build_or_a_failed_one(tmp_path: Path) -> None:
    config = make_sources(tmp_path)
    site = tmp_path / "site"
    build(config, str(site))
    assert site_leftovers(site) == []
    (tmp_path / "src" / "tiny.gguf").write_bytes(b"GGUF retrained")  # same version: refused
    with pytest.raises(ImmutableConflict):
        build(config, str(site))
    assert site_leftovers(site) == []
    assert list((state_of(site) / "staging").iterdir()) == []


def test_leftovers_of_killed_builds_are_swept_when_no_build_runs(tmp_path: Path) -> None:
    config = make_sources(tmp_path)
    site = tmp_path / "site"
    build(config, str(site))
    staging = state_of(site) / "staging"
    (staging / "0123abcd.xyb").write_bytes(b"half a bundle")
    (site / ".staging").mkdir()  # where earlier versions packed, inside the site
    (site / ".staging" / ".pack-x1.xyb").write_bytes(b"half a bundle")
    stale, fresh = site / "blobs" / ".a.xyb.tmp-1-aa", site / "blobs" / ".b.xyb.tmp-2-bb"
    stale.write_bytes(b"copy of a dead build")
    fresh.write_bytes(b"a copy going on now")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    with open(state_of(site) / "staging.lock", "rb") as other:  # another build is running
        fcntl.flock(other.fileno(), fcntl.LOCK_SH)
        build(config, str(site))
        assert (staging / "0123abcd.xyb").exists() and (site / ".staging").exists()
    build(config, str(site))
    assert list(staging.iterdir()) == []
    assert site_leftovers(site) == ["blobs/.b.xyb.tmp-2-bb"]


KILLED_BUILD = "import sys; from registry_build.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.slow
def test_a_build_killed_mid_pack_leaves_nothing_in_the_site(tmp_path: Path) -> None:
    config = make_sources(tmp_path)
    site = tmp_path / "site"
    build(config, str(site))
    doc = json.loads(config.read_text())
    doc["bundles"]["tiny"]["version"] = "2.0"
    config.write_text(json.dumps(doc))
    (tmp_path / "src" / "tiny.gguf").write_bytes(os.urandom(16 << 20))  # ~5 s at level 19
    staging = state_of(site) / "staging"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_BUILD, "build", "--config", str(config),
         "--out", str(site), "--level", "19", "--quiet"],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not any(staging.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # well into the pack
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    (leftover,) = staging.iterdir()  # killed mid-pack: its temporary is outside the site
    assert is_temp_name(leftover.name)
    assert site_leftovers(site) == []
    report = build(config, str(site))
    assert [r.status for r in report.results].count("built") == 1
    assert list(staging.iterdir()) == []
    assert site_leftovers(site) == []
    assert main(["verify", str(site)]) == 0


def test_a_cache_on_another_filesystem_copies_the_bundle_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temporary directory")
    cache = Path(tempfile.mkdtemp(dir=shm))
    try:
        monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
        config = make_sources(tmp_path)
        report = build(config, str(tmp_path / "site"))
        assert [r.status for r in report.results] == ["built"] * 4
        assert list((state_of(tmp_path / "site") / "staging").iterdir()) == []
        assert site_leftovers(tmp_path / "site") == []
        assert main(["verify", str(tmp_path / "site")]) == 0
    finally:
        shutil.rmtree(cache)


def test_a_placeholder_is_marked_in_shards_index_and_page(tmp_path: Path) -> None:
    config = make_sources(tmp_path)
    build(config, str(tmp_path / "site"))
    catalog = catalog_of(LocalStore(tmp_path / "site"))[1]
    marked = {d.id: d.placeholder for d in catalog.bundles}
    assert marked == {"bert": False, "ghost": True, "tiny": False}
    entries = json.loads((tmp_path / "site" / "index").read_bytes())
    assert [e.get("placeholder", False) for e in entries if e["id"] == "ghost"] == [True]
    assert all("placeholder" not in e for e in entries if e["id"] != "ghost")  # absent: false
    page = (tmp_path / "site" / "index.html").read_text()
    assert page.count('<span class="flag"') == 1


def test_default_model_is_named_in_index_json_v1_models_and_the_page(tmp_path: Path) -> None:
    config = make_sources(tmp_path)
    doc = json.loads(config.read_text())
    config.write_text(json.dumps({**doc, "default_model": "bert"}))
    site = tmp_path / "site"
    build(config, str(site))
    assert json.loads((site / "index.json").read_bytes())["default"] == "bert"
    cards = json.loads((site / "v1" / "models").read_bytes())["data"]
    assert {c["id"]: c.get("default") for c in cards} == {"bert": True, "ghost": None, "tiny": None}
    assert '<span class="default"' in (site / "index.html").read_text()
    config.write_text(json.dumps(doc))  # no default any more: nothing names one
    build(config, str(site))
    assert "default" not in json.loads((site / "index.json").read_bytes())
    assert b'"default"' not in (site / "v1" / "models").read_bytes()


def test_build_without_jinja2_says_so_before_packing_anything(tmp_path: Path) -> None:
    config = make_sources(tmp_path)
    hide = "import sys; sys.modules['jinja2'] = None; from registry_build.cli import main; "
    done = subprocess.run(
        [sys.executable, "-c", hide + "sys.exit(main())", "build", "--config", str(config),
         "--out", str(tmp_path / "site")],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "Error: registry-build build needs Jinja2: pip install 'bundle-registry[build]'\n"
    )
    assert not (tmp_path / "site").exists()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_build_progress_on_a_terminal_counts_bundles_and_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_sources(tmp_path)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["build", "--config", str(config), "--out", str(tmp_path / "site")]) == 0
    shown = terminal.getvalue()
    total = 4 + 256 * 64 + 2 * (4 * 5000 + len("[PAD]\n[CLS]\n"))  # tiny, bert twice, no ghost
    assert "build 0/4 bundles:   0%" in shown
    assert "build 4/4 bundles: 100%" in shown
    assert f"{total / 1024:.1f}k/{total / 1024:.1f}k" in shown


def test_publish_carries_the_default_model_of_the_built_site(tmp_path: Path) -> None:
    config = make_sources(tmp_path)
    config.write_text(json.dumps({**json.loads(config.read_text()), "default_model": "tiny"}))
    build(config, str(tmp_path / "site"))
    assert main(["publish", "--quiet", str(tmp_path / "site"), str(tmp_path / "dest")]) == 0
    assert json.loads((tmp_path / "dest" / "index.json").read_bytes())["default"] == "tiny"
