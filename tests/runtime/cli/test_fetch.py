"""``registry-runtime resolve | fetch | cache ls | cache prune``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from support.registries import publish, rename_shard, shard_path, write_index

from runtime.cli import main
from runtime.registry.wire import BundleDescriptor

Key = tuple[str, str, str]
Run = Callable[..., tuple[int, str, str]]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_resolve_plain_and_json(
    site: tuple[Path, dict[Key, BundleDescriptor]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, published = site
    want = published[("tiny", "1.2", "universal")]
    assert run(capsys, "resolve", "tiny@stable", "--target", "linux-arm64") == (
        0,
        f"tiny@1.2 universal {want.hash} {want.size_bytes}\n",
        "",
    )
    code, out, _ = run(capsys, "resolve", "tiny@1.2", "--target", "universal", "--json")
    assert code == 0
    assert json.loads(out)["hash"] == want.hash and "files" not in json.loads(out)


def test_fetch_prints_the_cached_path(
    site: tuple[Path, dict[Key, BundleDescriptor]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, published = site
    want = published[("tiny", "1.10", "universal")]
    expected = tmp_path / "xdg" / "bundle-registry" / "blobs" / f"{want.hash}.xyb"
    assert run(capsys, "fetch", "tiny", "--target", "universal") == (0, f"{expected}\n", "")
    custom = tmp_path / "elsewhere"
    code, out, _ = run(capsys, "fetch", "tiny", "--target", "universal", "--cache-dir", str(custom))
    assert (code, out) == (0, f"{custom / 'blobs' / want.hash}.xyb\n")


def test_fetch_pipeline(
    site: tuple[Path, dict[Key, BundleDescriptor]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, published = site
    monkeypatch.delenv("BUNDLE_REGISTRY")
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(f"registry: {root}\nstages:\n  - tiny@1.0\n  - mac-only@2.0\n")
    code, out, err = run(capsys, "fetch", "--pipeline", str(pipeline), "--target", "macos-arm64")
    assert (code, err) == (0, "")
    assert [Path(line).stem for line in out.splitlines()] == [
        published[("tiny", "1.0", "universal")].hash,
        published[("mac-only", "2.0", "macos-arm64")].hash,
    ]


def test_offline_says_so_on_stderr(
    site: tuple[Path, dict[Key, BundleDescriptor]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = site
    assert run(capsys, "fetch", "tiny@stable", "--target", "universal")[0] == 0
    code, out, err = run(capsys, "fetch", "tiny@stable", "--target", "universal", "--offline")
    assert code == 0 and out.endswith(".xyb\n")
    assert err.startswith(f"registry-runtime: offline: resolving from the cached index of {root}")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["resolve", "tiny", "--target", "ios-x64"],
            "Error: target 'ios-x64' is not a known target (known: macos-arm64, macos-x86_64, "
            "linux-x86_64, linux-arm64, ios-arm64, android-arm64, android-arm32, windows-x86_64, "
            "wasm-wgpu, universal); pass one of them with --target\n",
        ),
        (
            ["resolve", "ghost"],
            "Error: model 'ghost' is not in the index of {root} (models: mac-only, tiny)\n",
        ),
    ],
)
def test_user_errors(
    site: tuple[Path, dict[Key, BundleDescriptor]],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    assert run(capsys, *argv) == (1, "", message.format(root=site[0]))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tiny", "--pipeline", "p.yaml"], "fetch takes a REF or --pipeline FILE, not both"),
        (
            ["--pipeline", "p.yaml", "--local-dir", "d"],
            "--local-dir places the files of one bundle: give a REF, not --pipeline",
        ),
        (["tiny", "--force"], "--force replaces files in a --local-dir: give --local-dir DIR too"),
    ],
)
def test_fetch_options_that_do_not_go_together(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run(capsys, "fetch", *argv) == (2, "", f"registry-runtime fetch: error: {message}\n")


def test_no_registry(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUNDLE_REGISTRY", raising=False)
    assert run(capsys, "resolve", "tiny") == (
        1,
        "",
        "Error: no registry given: pass --registry URL|DIR|s3://BUCKET or set BUNDLE_REGISTRY\n",
    )


def test_cache_ls_and_prune(
    site: tuple[Path, dict[Key, BundleDescriptor]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, published = site
    root = tmp_path / "xdg" / "bundle-registry"
    assert run(capsys, "cache", "ls") == (0, f"no bundles cached in {root}\n", "")
    run(capsys, "fetch", "tiny@1.0", "--target", "universal")
    run(capsys, "fetch", "tiny@1.2", "--target", "macos-arm64", "--extract")
    old, new = published[("tiny", "1.0", "universal")], published[("tiny", "1.2", "macos-arm64")]
    os.utime(root / "blobs" / f"{old.hash}.xyb", (1, 1))
    os.utime(root / "blobs" / f"{new.hash}.xyb", (86400 * 365, 86400 * 365))
    assert run(capsys, "cache", "ls") == (
        0,
        "DIGEST            BUNDLE                 SIZE  LAST USED (UTC)   EXTRACTED\n"
        f"{new.hash[:16]}  tiny@1.2 macos-arm64  {new.size_bytes} B  1971-01-01 00:00  yes\n"
        f"{old.hash[:16]}  tiny@1.0 universal    {old.size_bytes} B  1970-01-01 00:00  no\n"
        f"2 bundles, {old.size_bytes + new.size_bytes} B, in {root}\n",
        "",
    )
    assert run(capsys, "cache", "prune", "--keep-days", "1") == (
        0,
        f"removed 2 bundle(s) ({old.size_bytes + new.size_bytes} B) and 0 abandoned partial "
        f"download(s) from {root}\n",
        "",
    )


def test_console_script_over_http(
    site: tuple[Path, dict[Key, BundleDescriptor]],
    tmp_path: Path,
    http_server: Callable[[Path], str],
) -> None:
    root, published = site
    url = http_server(root)
    done = subprocess.run(
        ["registry-runtime", "fetch", "tiny@stable", "--registry", url, "--target", "universal"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg2")},
    )
    want = published[("tiny", "1.2", "universal")]
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"{tmp_path / 'xdg2' / 'bundle-registry' / 'blobs' / want.hash}.xyb\n"


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for a directory)."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def test_the_issue_attack_writes_nothing_outside_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], http_server: Callable[[Path], str]
) -> None:
    """issue 10, as reported: a "hash" of "../../../../tmp/x/PWNED" in index.json and in the
    descriptor made `fetch --extract` write PWNED.json outside --cache-dir (and, with a wrong
    size_bytes, delete PWNED.xyb and rmtree PWNED beside it)."""
    root = tmp_path / "site"
    good = publish(root, "m", "1.0", "universal")
    write_index(root, [good])
    outside = tmp_path / "x"
    (outside / "PWNED").mkdir(parents=True)
    (outside / "PWNED.xyb").write_bytes(b"keep me")
    (outside / "PWNED" / "file").write_bytes(b"keep me too")
    cache = tmp_path / "cache" / "a" / "b"
    hostile = "../../../x/PWNED"  # from cache/a/b/descriptors: tmp_path/x/PWNED
    path = root / "descriptors/m/1.0/universal.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "hash": hostile, "size_bytes": 1}))
    shard = json.loads((root / shard_path(root, "m")).read_text())
    shard["bundles"][0].update(hash=hostile, size_bytes=1)
    key = rename_shard(root, "m", json.dumps(shard).encode())  # index.json names it: it verifies
    before = snapshot(outside)
    for registry in (str(root), http_server(root)):
        argv = ["fetch", "m@1.0", "--extract", "--registry", registry, "--cache-dir", str(cache)]
        code, out, err = run(capsys, *argv)
        assert (code, out) == (1, "")
        assert err == (
            f"Error: {registry}/{key}: $.bundles[0].hash: '{hostile}' is not a 64-character "
            "lowercase hex digest; the registry is corrupt or hostile: ask the publisher to "
            "rebuild the registry's index.json\n"
        )
    assert snapshot(outside) == before
    assert not (tmp_path / "x" / "PWNED.json").exists()


def test_resolve_answers_an_alias_from_index_json_with_its_pointer_gone(
    site: tuple[Path, dict[Key, BundleDescriptor]], capsys: pytest.CaptureFixture[str]
) -> None:
    """issue 10: `resolve m@prod` failed with "no alias 'prod'" and "aliases: prod" at once; a
    client now reads index.json's alias map, which the promotion wrote, and no pointer."""
    from runtime.aliases import promote
    from runtime.storage.local import LocalStore

    root, published = site
    store = LocalStore(root)
    promote(store, "tiny", "prod", "1.0", "ci", "")
    promote(store, "tiny", "prod", "1.2", "ci", "")
    (root / "aliases/tiny/prod.json").unlink()
    want = published[("tiny", "1.2", "universal")]
    assert run(capsys, "resolve", "tiny@prod", "--target", "universal") == (
        0,
        f"tiny@1.2 universal {want.hash} {want.size_bytes}\n",
        "",
    )


@pytest.mark.parametrize(
    ("option", "env", "expected"),
    [
        (None, None, None),
        ("200GiB", None, 200 * 1024**3),
        ("12345", "1TiB", 12345),
        (None, "512 MiB", 512 * 1024**2),
    ],
)
def test_the_extraction_ceiling_comes_from_the_option_then_the_environment(
    monkeypatch: pytest.MonkeyPatch, option: str | None, env: str | None, expected: int | None
) -> None:
    import argparse

    from runtime.cli.fetch import _max_extract, _size

    if env is not None:
        monkeypatch.setenv("BUNDLE_MAX_EXTRACT", env)
    args = argparse.Namespace(max_extract=None if option is None else _size(option))
    assert _max_extract(args) == expected


SIZE_HELP = (
    "is not a size: write a positive number of bytes, or one followed by KiB, MiB, GiB or TiB "
    "(e.g. 200GiB)"
)


@pytest.mark.parametrize("value", ["lots", "0", "5 GB", "1.5GiB"])
def test_a_bad_ceiling_option_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["fetch", "tiny@1.0", "--extract", "--max-extract", value])
    assert caught.value.code == 2
    assert capsys.readouterr().err.endswith(
        f"registry-runtime fetch: error: argument --max-extract: {value!r} {SIZE_HELP}\n"
    )


def test_a_bad_ceiling_in_the_environment_is_a_usage_error(
    site: tuple[Path, dict[Key, BundleDescriptor]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BUNDLE_MAX_EXTRACT", "5 GB")
    assert run(capsys, "fetch", "tiny@1.0", "--extract") == (
        2,
        "",
        f"registry-runtime fetch: error: $BUNDLE_MAX_EXTRACT: '5 GB' {SIZE_HELP}\n",
    )


def test_fetch_extract_honours_the_ceiling(
    site: tuple[Path, dict[Key, BundleDescriptor]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "fetch", "tiny@1.0", "--target", "universal", "--extract", "--max-extract", "10"
    )
    assert (code, out) == (1, "")
    assert err.startswith("Error: ") and err.count("\n") == 1
    assert err.endswith(
        "over the extraction ceiling of 10 bytes; if you trust this bundle, raise the ceiling "
        "(--max-extract or BUNDLE_MAX_EXTRACT)\n"
    )


PLACEHOLDER_NOTICE = (
    "registry-runtime: stub@0.1 (universal) is a placeholder: its source was missing when the "
    "registry was built, so it holds a stand-in, not the model; ask the publisher to add the "
    "source and rebuild\n"
)


def test_no_ref_means_the_default_model(
    stub_site: tuple[Path, dict[Key, BundleDescriptor]], client_env: Path, cli: Run
) -> None:
    _, published = stub_site
    real = published[("real", "1.0", "universal")]
    assert cli("resolve") == (0, f"real@1.0 universal {real.hash} {real.size_bytes}\n", "")
    assert cli("fetch") == (0, f"{client_env / 'blobs' / real.hash}.xyb\n", "")


def test_no_ref_and_no_default_model(
    site: tuple[Path, dict[Key, BundleDescriptor]], cli: Run
) -> None:
    said = (
        f"Error: no model given, and {site[0]}/index.json names no default model: name one "
        "(models: mac-only, tiny)\n"
    )
    assert cli("resolve") == (1, "", said)
    assert cli("fetch", "--extract") == (1, "", said)


def test_fetching_a_placeholder_warns_once(
    stub_site: tuple[Path, dict[Key, BundleDescriptor]], tmp_path: Path, cli: Run
) -> None:
    root, _ = stub_site
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(f"registry: {root}\nstages:\n  - stub@0.1\n  - real\n  - stub@0.1\n")
    code, out, err = cli("fetch", "--pipeline", str(pipeline))
    assert (code, len(out.splitlines()), err) == (0, 3, PLACEHOLDER_NOTICE)
    assert cli("fetch", "stub@0.2")[2] == ""
    code, out, err = cli("fetch", "stub@0.1", "--json")
    assert (json.loads(out)["bundles"][0]["placeholder"], err) == (True, PLACEHOLDER_NOTICE)


def _files(out: str) -> list[dict[str, str]]:
    files: list[dict[str, str]] = json.loads(out)["bundles"][0]["files"]
    return files


def test_local_dir_links_on_the_cache_file_system(
    stub_site: tuple[Path, dict[Key, BundleDescriptor]], tmp_path: Path, client_env: Path, cli: Run
) -> None:
    real = stub_site[1][("real", "1.0", "universal")]
    target, cached = tmp_path / "model", client_env / "trees" / real.hash / "model.bin"
    assert cli("fetch", "real", "--local-dir", str(target)) == (0, f"{target}\n", "")
    placed = target / "model.bin"
    assert (placed.read_bytes(), placed.is_symlink()) == (b"real 1.0 universal", False)
    assert os.path.samefile(placed, cached) and stat.S_IMODE(placed.stat().st_mode) == 0o444
    code, out, _ = cli("fetch", "real", "--local-dir", str(target), "--json")
    assert (code, _files(out)) == (0, [{"path": "model.bin", "how": "unchanged"}])

    placed.unlink()  # the user's own file in its place, as an editor saving by rename leaves it
    placed.write_bytes(b"mine")
    assert cli("fetch", "real", "--local-dir", str(target)) == (
        1, "", f"Error: --local-dir {target}: these files exist and differ from the bundle's: "
        "model.bin; pass --force to replace them, or choose another directory\n",
    )  # fmt: skip
    assert placed.read_bytes() == b"mine"
    code, out, _ = cli("fetch", "real", "--local-dir", str(target), "--force", "--json")
    assert (code, _files(out), placed.read_bytes()) == (
        0, [{"path": "model.bin", "how": "linked"}], b"real 1.0 universal"
    )  # fmt: skip
    assert cached.read_bytes() == b"real 1.0 universal"
    assert cli("cache", "rm", "real")[0] == 0
    assert placed.read_bytes() == b"real 1.0 universal"  # a hard link outlives the cache's copy


def _other_file_system(near: Path) -> Path | None:
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        return None
    return shm if shm.stat().st_dev != near.stat().st_dev else None


def test_local_dir_copies_to_another_file_system(
    stub_site: tuple[Path, dict[Key, BundleDescriptor]], tmp_path: Path, client_env: Path, cli: Run
) -> None:
    elsewhere = _other_file_system(tmp_path)
    if elsewhere is None:
        pytest.skip("no writable /dev/shm on another file system than the tests' directory")
    with tempfile.TemporaryDirectory(dir=elsewhere) as folder:
        target = Path(folder) / "model"
        code, out, err = cli("fetch", "real", "--local-dir", str(target), "--json")
        assert (code, err, _files(out)) == (0, "", [{"path": "model.bin", "how": "copied"}])
        placed = target / "model.bin"
        assert placed.read_bytes() == b"real 1.0 universal"
        assert placed.stat().st_mode & stat.S_IWUSR  # a copy is the user's own
        assert placed.stat().st_dev != client_env.stat().st_dev


def test_local_dir_with_a_folder_in_the_way(
    stub_site: tuple[Path, dict[Key, BundleDescriptor]], tmp_path: Path, cli: Run
) -> None:
    (tmp_path / "model" / "model.bin").mkdir(parents=True)
    assert cli("fetch", "real", "--local-dir", str(tmp_path / "model"), "--force") == (
        1, "", f"Error: --local-dir {tmp_path / 'model'}: these paths are in the way of the "
        "bundle's files (a directory, or a file where the bundle has a folder): model.bin; move "
        "them, or choose another directory\n",
    )  # fmt: skip


def test_local_dir_that_is_a_file(
    stub_site: tuple[Path, dict[Key, BundleDescriptor]], tmp_path: Path, cli: Run
) -> None:
    (tmp_path / "model").write_text("notes")
    assert cli("fetch", "real", "--local-dir", str(tmp_path / "model")) == (
        1, "", f"Error: --local-dir {tmp_path / 'model'} is a file, not a directory: choose a "
        "directory (it is made when missing)\n",
    )  # fmt: skip
    assert (tmp_path / "model").read_text() == "notes"


def test_cache_rm_without_the_network(
    stub_site: tuple[Path, dict[Key, BundleDescriptor]], tmp_path: Path, client_env: Path, cli: Run
) -> None:
    root, published = stub_site
    real = published[("real", "1.0", "universal")]
    assert cli("fetch", "real@1.0", "--extract")[0] == 0
    root.rename(tmp_path / "gone")  # the registry cannot be reached: rm needs only the cache
    assert cli("cache", "rm", "real@1.0") == (
        0, f"removed real@1.0 universal ({real.size_bytes} B) from {client_env}\n", ""
    )  # fmt: skip
    assert [p.name for p in client_env.glob(f"*/{real.hash}*")] == []  # blob, tree, descriptor
    assert cli("cache", "rm", "real@1.0") == (
        1, "", f"Error: real@1.0 (universal) is not in the cache {client_env}: nothing to remove "
        "(`registry-runtime cache ls` lists it)\n",
    )  # fmt: skip


def test_cache_rm_as_json(
    stub_site: tuple[Path, dict[Key, BundleDescriptor]], client_env: Path, cli: Run
) -> None:
    real = stub_site[1][("real", "1.0", "universal")]
    cli("fetch", "real")
    code, out, _ = cli("cache", "rm", "real", "--json")
    assert (code, json.loads(out)) == (0, {
        "cache": str(client_env),
        "removed": {
            "digest": real.hash, "id": "real", "version": "1.0", "target": "universal",
            "size_bytes": real.size_bytes, "extracted": False,
        },
    })  # fmt: skip


def test_the_cache_directory_from_the_environment(
    stub_site: tuple[Path, dict[Key, BundleDescriptor]],
    tmp_path: Path,
    cli: Run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = stub_site[1][("real", "1.0", "universal")]
    monkeypatch.setenv("BUNDLE_REGISTRY_CACHE", str(tmp_path / "mine"))
    assert cli("fetch", "real") == (0, f"{tmp_path / 'mine' / 'blobs' / real.hash}.xyb\n", "")
    assert cli("cache", "ls")[1].endswith(
        f"1 bundle, {real.size_bytes} B, in {tmp_path / 'mine'}\n"
    )
    assert cli("fetch", "real", "--cache-dir", str(tmp_path / "flag"))[1].startswith(
        f"{tmp_path / 'flag' / 'blobs'}"
    )


def test_offline_from_the_environment(
    stub_site: tuple[Path, dict[Key, BundleDescriptor]],
    client_env: Path,
    cli: Run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, _ = stub_site
    monkeypatch.setenv("BUNDLE_REGISTRY_OFFLINE", "1")
    assert cli("resolve", "real") == (
        1, "", f"Error: offline, and the cache {client_env} holds no index of {root}: fetch once "
        "while the registry is reachable\n",
    )  # fmt: skip
    monkeypatch.setenv("BUNDLE_REGISTRY_OFFLINE", "0")
    assert cli("fetch", "real")[::2] == (0, "")
    monkeypatch.setenv("BUNDLE_REGISTRY_OFFLINE", "TRUE")
    code, _, err = cli("fetch", "real")
    assert (code, err.split(" (saved ")[0]) == (
        0, f"registry-runtime: offline: resolving from the cached index of {root}"
    )  # fmt: skip
    monkeypatch.setenv("BUNDLE_REGISTRY_OFFLINE", "maybe")
    assert cli("resolve", "real") == (
        2, "", "registry-runtime resolve: error: $BUNDLE_REGISTRY_OFFLINE is 'maybe': set it to 1 "
        "(offline) or 0 (online), or unset it\n",
    )  # fmt: skip
