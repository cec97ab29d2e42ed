"""``registry-runtime resolve | fetch | cache ls | cache prune``."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from fetch_support import demo_registry

from runtime.cli import main
from runtime.wire import BundleDescriptor

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
            "Error: ghost: no model 'ghost' in {root} (models: mac-only, tiny)\n",
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
