"""``registry-runtime resolve | fetch | cache ls | cache prune``."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from support.registries import demo_registry, publish, rename_shard, shard_path, write_index

from runtime.cli import main
from runtime.registry.wire import BundleDescriptor

Key = tuple[str, str, str]


@pytest.fixture
def site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, dict[Key, BundleDescriptor]]:
    root = tmp_path / "site"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("BUNDLE_REGISTRY", str(root))
    return root, demo_registry(root)


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


def test_fetch_needs_a_ref_or_a_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "fetch") == (
        2,
        "",
        "registry-runtime fetch: error: fetch needs exactly one of REF or --pipeline FILE\n",
    )


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
    want = published[("tiny", "1.0", "universal")]
    code, out, _ = run(capsys, "cache", "ls")
    assert code == 0
    assert out.startswith(f"{want.hash[:16]}  tiny@1.0 universal")
    assert f" {want.size_bytes:>12}  " in out and out.endswith(" UTC  -\n")
    os.utime(root / "blobs" / f"{want.hash}.xyb", (1, 1))
    assert run(capsys, "cache", "prune", "--keep-days", "1") == (
        0,
        f"removed 1 bundle(s) ({want.size_bytes} bytes) and 0 abandoned partial download(s) "
        f"from {root}\n",
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
