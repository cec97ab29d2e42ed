"""Registries for the command-line tests: the demo registry, and one with a default model and a
placeholder bundle; each with the client's environment pointing at it and at a fresh cache. And
the commands run in this process (``cli``) or in a real subprocess (``command``), where modules
can be hidden as if their extra were not installed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from support.registries import demo_registry, publish, write_index

from runtime.cli import main
from runtime.registry.wire import BundleDescriptor, Index, descriptor_key, encode, encode_pretty

Key = tuple[str, str, str]
Site = tuple[Path, dict[Key, BundleDescriptor]]
Run = Callable[..., tuple[int, str, str]]
CLIENT_ENV = ("BUNDLE_REGISTRY_CACHE", "BUNDLE_REGISTRY_OFFLINE", "BUNDLE_REGISTRY_TRUST")
REPO = Path(__file__).resolve().parents[3]
ENTRY_POINTS = {"registry-runtime": "runtime.cli", "registry-build": "registry_build.cli"}
# python -c LAUNCHER HIDDEN ARGV...: the command's main() with the top-level modules named in
# HIDDEN (comma-separated) unimportable, as on an installation without their extra.
LAUNCHER = """
import sys

class Hidden:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

HIDDEN = set(sys.argv.pop(1).split(",")) - {""}
sys.meta_path.insert(0, Hidden())
from %s import main
sys.exit(main())
"""


@pytest.fixture
def client_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No client variable set but ``$XDG_CACHE_HOME``; returns the cache directory it names."""
    for name in CLIENT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "bundle-registry"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client_env: Path) -> Site:
    """:func:`demo_registry` as ``$BUNDLE_REGISTRY``."""
    root = tmp_path / "site"
    monkeypatch.setenv("BUNDLE_REGISTRY", str(root))
    return root, demo_registry(root)


@pytest.fixture
def stub_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client_env: Path) -> Site:
    """``real`` 1.0 (universal, the default model) and ``stub`` 0.1 (universal, a placeholder)
    and 0.2 (universal, real), as ``$BUNDLE_REGISTRY``."""
    root = tmp_path / "stub-site"
    monkeypatch.setenv("BUNDLE_REGISTRY", str(root))
    published = [
        publish(root, "real", "1.0", "universal"),
        as_placeholder(root, publish(root, "stub", "0.1", "universal")),
        publish(root, "stub", "0.2", "universal"),
    ]
    write_index(root, published)
    set_default(root, "real")
    return root, {d.key: d for d in published}


def as_placeholder(root: Path, descriptor: BundleDescriptor) -> BundleDescriptor:
    """``descriptor`` marked as a placeholder, in its descriptor file too."""
    marked = msgspec.structs.replace(descriptor, placeholder=True)
    (root / descriptor_key(*descriptor.key)).write_bytes(encode_pretty(marked))
    return marked


def set_default(root: Path, model: str) -> None:
    """Name ``model`` the default model in ``root``'s ``index.json``."""
    index = msgspec.json.decode((root / "index.json").read_bytes(), type=Index)
    (root / "index.json").write_bytes(encode(msgspec.structs.replace(index, default=model)))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Run:
    """``registry-runtime ARGV...`` in this process: (exit code, stdout, stderr)."""

    def invoke(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.fixture
def command(tmp_path: Path) -> Run:
    """``PROGRAM ARGV...`` in a subprocess (cwd ``tmp_path``; ``hide=`` modules as missing,
    ``env=`` variables added): (exit code, stdout, stderr)."""

    def invoke(
        program: str, *argv: str, hide: str = "", env: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        paths = [str(REPO), os.environ.get("PYTHONPATH", "")]
        environment = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(paths)}
        code = LAUNCHER % ENTRY_POINTS[program]
        done = subprocess.run(
            [sys.executable, "-c", code, hide, *argv],
            capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=120,
        )  # fmt: skip
        return done.returncode, done.stdout, done.stderr

    return invoke
