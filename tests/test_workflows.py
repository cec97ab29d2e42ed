"""The GitHub Actions workflows pass actionlint (the binary from the ``test`` extra's wheel)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))

VALID = """\
name: publish
on:
  push:
    branches: [main]
permissions:
  id-token: write
jobs:
  publish:
    runs-on: ubuntu-latest
    steps:
      - uses: aws-actions/configure-aws-credentials@v6
        with:
          role-to-assume: ${{ vars.AWS_ROLE_ARN }}
          aws-region: ${{ vars.AWS_REGION }}
      - run: echo "$BUCKET"
        env:
          BUCKET: ${{ vars.REGISTRY_BUCKET }}
"""


def actionlint(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("actionlint")
    if binary is None:
        pytest.fail("actionlint is not on PATH: pip install -e '.[test]' installs it")
    command = [binary, "-no-color", "-oneline", *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


def test_the_workflows_exist() -> None:
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "publish.yml"]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_actionlint(workflow: Path) -> None:
    result = actionlint(workflow.relative_to(ROOT))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_valid_sample_passes(tmp_path: Path) -> None:
    # So that each broken sample below fails for its one mistake, not for something else.
    (tmp_path / "publish.yml").write_text(VALID)
    result = actionlint("publish.yml", cwd=tmp_path)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("id-token: write", "id-token: writ",
         'publish.yml:6:13: "writ" is invalid as permission of scope "id-token"'),
        ("role-to-assume:", "role-to-asume:",
         'publish.yml:13:11: input "role-to-asume" is not defined in action '
         '"aws-actions/configure-aws-credentials@v6"'),
        ("${{ vars.REGISTRY_BUCKET }}", "${{ vars.REGISTRY_BUCKET }",
         "publish.yml:17:45: got unexpected EOF while lexing end marker }}"),
        ("runs-on: ubuntu-latest", "runs_on: ubuntu-latest",
         'publish.yml:9:5: unexpected key "runs_on" for "job" section'),
        ('echo "$BUCKET"', "echo ${{ github.event.head_commit.message }}",
         'publish.yml:15:23: "github.event.head_commit.message" is potentially untrusted'),
    ],
    ids=["permission", "action-input", "expression", "job-key", "script-injection"],
)  # fmt: skip
def test_a_broken_workflow_is_flagged(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in VALID
    (tmp_path / "publish.yml").write_text(VALID.replace(old, new))
    result = actionlint("publish.yml", cwd=tmp_path)
    assert result.returncode == 1
    # The message goes on with lists (inputs, keys) that grow with actionlint's releases.
    assert any(line.startswith(expected) for line in result.stdout.splitlines()), result.stdout


def test_publish_runs_after_the_tests_promotes_by_ref_and_keeps_the_build_state() -> None:
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "publish.yml").read_text())
    jobs = workflow["jobs"]
    assert jobs["publish"]["needs"] == "test"
    assert "bash .ci/run" in [step.get("run") for step in jobs["test"]["steps"]]
    alias = jobs["publish"]["env"]["ALIAS"]
    assert alias == "${{ startsWith(github.ref, 'refs/tags/') && 'production' || 'staging' }}"
    build = next(
        s["run"] for s in jobs["publish"]["steps"] if s.get("name", "").startswith("Build")
    )
    assert build.count('--alias "$ALIAS"') == 2
    cache = next(
        s for s in jobs["publish"]["steps"] if s.get("uses", "").startswith("actions/cache")
    )
    assert cache["with"]["path"] == "${{ env.XDG_CACHE_HOME }}/bundle-registry/build"
    assert workflow["env"]["XDG_CACHE_HOME"] == "${{ github.workspace }}/.cache"
    assert "registry-build resign" in str(jobs["resign"]["steps"])
