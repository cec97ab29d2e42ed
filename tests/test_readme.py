"""The README's shell blocks, run in order as a new user would: on a fresh copy of bundles.json
and examples/ in a temporary directory, each command line in its own shell, every one exiting 0.

Only what must be is substituted: ``s3://bucket/...`` names a bucket on the moto server
(``AWS_ENDPOINT_URL`` points there). Lines are left out only for a stated reason (:data:`SKIPS`):
installing (the tests run in the installed package), the test command itself, and long-running
servers (their own tests start them on free loopback ports). ``export`` lines set the environment
of the lines after them, as they would in a terminal.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
SKIPS = (
    ("pip install ", "installs the package: the tests run in the installed one"),
    ("python -m pytest", "the test command: this is one of its tests"),
    ("registry-build serve", "serves until stopped: tests/registry_build/test_preview.py"),
    ("registry-runtime serve", "serves until stopped: tests/runtime/service run it"),
    ("registry-runtime agent", "needs a running service: tests/runtime/service run it"),
    ("curl ", "asks a running service: tests/runtime/service do"),
)
# What some commands (as written, without their comment) must print on stdout, so that a line
# that "works" also does its job.
EXPECTED = {
    "registry-build list": "tiny-llama@1.0",
    "registry-runtime list": "tiny-llama (default)",
    "registry-runtime resolve tiny-llama@production --json": '"version": "1.0"',
    "registry-runtime resolve": "tiny-llama@1.0",  # the default model
    "registry-runtime aliases tiny-llama": "production\t1.0",
    "registry-runtime history tiny-llama production --json": '"actor": "alice"',
    "registry-runtime verify tiny-llama@production": "chain intact",
}
# The alias sequence, which must not be skipped or dropped from the README.
REQUIRED = (
    "registry-build build",
    "registry-runtime promote tiny-llama production 1.0",
    "registry-runtime resolve tiny-llama@production --json",
    "registry-runtime verify tiny-llama@production",
    "registry-build publish site s3://",
    "registry-build reindex s3://",
)


def commands(readme: str) -> list[str]:
    """Every command line of the README's ``sh`` blocks, in order, continuations joined."""
    lines = []
    for block in BLOCK.findall(readme):
        lines += [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return lines


def skip_reason(line: str) -> str | None:
    """Why ``line`` is not run, or None (a ``pip install ... && COMMAND`` runs the command)."""
    if line.startswith("pip install ") and "&&" in line:
        return skip_reason(line.split("&&", 1)[1].strip())
    return next((why for start, why in SKIPS if line.startswith(start)), None)


def runnable(line: str, bucket: str) -> str:
    """The line as run: the part after ``pip install ... &&``, the README's bucket replaced."""
    if line.startswith("pip install ") and "&&" in line:
        line = line.split("&&", 1)[1].strip()
    return line.replace("s3://bucket/", f"s3://{bucket}/")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh checkout's worth of inputs: bundles.json and examples/."""
    work = tmp_path / "clone"
    work.mkdir()
    shutil.copy(REPO / "bundles.json", work / "bundles.json")
    shutil.copytree(REPO / "examples", work / "examples")
    return work


def environment(tmp_path: Path, moto_endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUNDLE_", "GITHUB_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(REPO),  # the checkout under test, however the package was installed
        XDG_CACHE_HOME=str(tmp_path / "xdg"),
        BUNDLE_REGISTRY_CACHE=str(tmp_path / "cache"),
        AWS_ENDPOINT_URL=moto_endpoint,
    )
    return env


@pytest.mark.slow
def test_every_readme_command_runs_in_order(
    workdir: Path, tmp_path: Path, moto_endpoint: str, s3_bucket: str
) -> None:
    env = environment(tmp_path, moto_endpoint)
    ran, skipped = [], []
    for line in commands((REPO / "README.md").read_text()):
        reason = skip_reason(line)
        if reason is not None:
            skipped.append((line, reason))
            continue
        command = runnable(line, s3_bucket)
        if command.startswith("export "):
            name, _, value = shlex.split(command, comments=True)[1].partition("=")
            env[name] = value
            continue
        done = subprocess.run(
            ["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        assert EXPECTED.get(command.split(" #")[0].strip(), "") in done.stdout, command
        ran.append(command)
    assert all(any(c.startswith(r) for c in ran) for r in REQUIRED), ran
    assert {why for _, why in skipped} <= {why for _, why in SKIPS}
    assert (workdir / "tiny-llama" / "tiny-llama.gguf").is_file()  # fetch --local-dir
    index = json.loads((workdir / "site" / "index.json").read_bytes())
    assert index["default"] == "tiny-llama"


def test_readme_links_only_files_of_the_repository() -> None:
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    assert "docs/design.md" in links
    assert all((REPO / link).is_file() for link in links if "://" not in link), links
    assert "../shared" not in readme
