"""A missing extra is one line, checked before any work starts (:mod:`runtime.extras`): each
command run in a real subprocess with the extra's modules hidden, as after a bare
``pip install bundle-registry``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from support.service import free_port

from runtime.extras import EXTRAS, installed

Run = Callable[..., tuple[int, str, str]]
PORT = str(free_port())  # never bound: each command stops before it listens
S3 = "Error: s3:// needs boto3: pip install 'bundle-registry[s3]'\n"
SERVER = (
    "Error: serve needs starlette, uvicorn and prometheus_client: "
    "pip install 'bundle-registry[server]'\n"
)
TRUST = "needs python-tuf and securesystemslib: pip install 'bundle-registry[trust]'\n"
S3_COMMANDS = [
    ["resolve", "tiny"],
    ["fetch", "tiny"],
    ["list"],
    ["show", "tiny"],
    ["cache", "rm", "tiny"],
    ["aliases", "tiny"],
    ["history", "tiny", "production"],
    ["verify", "tiny"],
    ["promote", "tiny", "production", "1.0", "--actor", "ci"],
]


@pytest.mark.parametrize("argv", S3_COMMANDS, ids=lambda argv: " ".join(argv[:2]))
def test_an_s3_registry_without_boto3(argv: list[str], command: Run, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with_flag = [*argv, "--registry", "s3://bucket/prefix"]
    assert command("registry-runtime", *with_flag, hide="boto3") == (1, "", S3)
    env = {"BUNDLE_REGISTRY": "s3://bucket/prefix", "BUNDLE_REGISTRY_CACHE": str(cache)}
    assert command("registry-runtime", *argv, hide="boto3", env=env) == (1, "", S3)
    assert not cache.exists()  # refused before any work


def test_a_missing_extra_under_json(command: Run) -> None:
    code, out, err = command(
        "registry-runtime", "resolve", "tiny", "--registry", "s3://b/p", "--json", hide="botocore"
    )
    assert (code, err) == (1, "")
    assert json.loads(out) == {
        "error": "s3:// needs boto3: pip install 'bundle-registry[s3]'",
        "kind": "MissingExtra",
        "exit_code": 1,
    }


@pytest.mark.parametrize("hidden", ["starlette", "uvicorn", "prometheus_client"])
def test_serve_without_the_server_extra(hidden: str, command: Run, tmp_path: Path) -> None:
    assert command("registry-runtime", "serve", "--port", PORT, hide=hidden) == (1, "", SERVER)
    assert list(tmp_path.iterdir()) == []  # no database, no token file


@pytest.mark.parametrize(
    ("argv", "hidden", "line"),
    [
        (["serve", "--port", PORT, "--state", "redis://127.0.0.1:1/0"], "redis",
         "Error: --state redis:// needs redis-py: pip install 'bundle-registry[redis]'\n"),
        (["serve", "--port", PORT, "--registry", "s3://b/p"], "boto3", S3),
        (["resolve", "tiny", "--registry", "site", "--trust", "root.json"], "tuf",
         f"Error: --trust {TRUST}"),
        (["verify", "tiny", "--registry", "site", "--trust", "root.json"], "securesystemslib",
         f"Error: --trust {TRUST}"),
        (["promote", "tiny", "production", "1.0", "--registry", "site", "--signing-key", "k"],
         "tuf", f"Error: --signing-key {TRUST}"),
    ],
)  # fmt: skip
def test_other_extras(argv: list[str], hidden: str, line: str, command: Run) -> None:
    assert command("registry-runtime", *argv, hide=hidden) == (1, "", line)


def test_a_trust_root_from_the_environment(command: Run) -> None:
    env = {"BUNDLE_REGISTRY": "site", "BUNDLE_REGISTRY_TRUST": "root.json"}
    assert command("registry-runtime", "fetch", "tiny", hide="tuf", env=env) == (
        1, "", f"Error: $BUNDLE_REGISTRY_TRUST {TRUST}"
    )  # fmt: skip


def test_every_extra_is_installed_here() -> None:
    """The tests above hide what is installed; were a module absent here, they would pass for
    the wrong reason."""
    absent = [m for extra in EXTRAS.values() for m in extra.modules if not installed(m)]
    assert absent == []
