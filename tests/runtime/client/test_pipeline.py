"""Xybrid pipeline files: parsing, every problem reported, fetching each stage."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.registries import demo_registry

from runtime.client.cache import Cache
from runtime.client.pipeline import Pipeline, Stage, fetch_pipeline, load_pipeline
from runtime.client.registry import Registry
from runtime.errors import ConfigError
from runtime.storage.location import parse_location


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_strings_and_objects(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name: voice
registry: http://127.0.0.1:8000
stages:
  - tiny@1.2
  - model: tiny
    version: stable
    target: macos-arm64
  - model: tiny@1.0
  - {model: mac-only, target: macos-aarch64, input: audio}
""",
    )
    assert load_pipeline(path) == Pipeline(
        path,
        parse_location("http://127.0.0.1:8000"),
        (
            Stage("tiny@1.2"),
            Stage("tiny@stable", "macos-arm64"),
            Stage("tiny@1.0"),
            Stage("mac-only", "macos-aarch64"),
        ),
    )


def test_every_problem_is_reported_with_its_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
registry: 5
stages:
  - tiny@
  - model: tiny
    version: 1.10
  - model: tiny@1.0
    version: "1.2"
  - model: tiny
    target: ios-x64
  - [nonsense]
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_pipeline(path)
    assert caught.value.problems == [
        f"{path}: registry: expected a URL, directory or s3:// location",
        f"{path}: stages[0]: ref 'tiny@' has nothing after '@': write tiny@VERSION, "
        "tiny@ALIAS, or just tiny for the highest version",
        f"{path}: stages[1].version: 1.1 is not a string: quote it (YAML reads 1.10 as 1.1)",
        f"{path}: stages[2].version: 'tiny@1.0' already names a version; give it once",
        f"{path}: stages[3].target: 'ios-x64' is not a known target (known: macos-arm64, "
        "macos-x86_64, linux-x86_64, linux-arm64, ios-arm64, android-arm64, android-arm32, "
        "windows-x86_64, wasm-wgpu, universal)",
        f"{path}: stages[4]: expected \"model@version\" or an object with a 'model' string",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("stages: []", "stages: expected a non-empty list of refs or {model, target}"),
        ("- a", "expected a mapping with 'stages:' at the top level"),
        ("stages: [", "line 1 column 10: invalid YAML: expected the node content"),
        ("registry: gs://b\nstages: [a]", "registry: 'gs://b' is not a registry location: write"),
    ],
)
def test_bad_shapes(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_pipeline(path)
    assert caught.value.problems[0].startswith(f"{path}: {problem}")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_pipeline(tmp_path / "nope.yaml")
    assert caught.value.problems == [
        f"{tmp_path / 'nope.yaml'}: no such file; pass the path of a pipeline.yaml"
    ]


def test_fetch_every_stage(tmp_path: Path) -> None:
    site = tmp_path / "site"
    published = demo_registry(site)
    path = write(tmp_path, "stages:\n  - tiny@stable\n  - {model: mac-only, target: macos-arm64}\n")
    registry = Registry(str(site), cache=Cache(tmp_path / "cache"), progress=False)
    paths = fetch_pipeline(load_pipeline(path), registry, target="linux-x86_64")
    assert [p.name for p in paths] == [
        f"{published[('tiny', '1.2', 'linux-x86_64')].hash}.xyb",
        f"{published[('mac-only', '2.0', 'macos-arm64')].hash}.xyb",
    ]


def test_every_bad_stage_is_reported_before_any_download(tmp_path: Path) -> None:
    demo_registry(tmp_path / "site")
    path = write(tmp_path, "registry: site\nstages:\n  - tiny@stable\n  - nope\n  - tiny@9.9\n")
    pipeline = load_pipeline(path)
    assert pipeline.registry is not None
    assert pipeline.registry.directory == tmp_path / "site"  # relative to the file
    cache = Cache(tmp_path / "cache")
    registry = Registry(pipeline.registry, cache=cache, progress=False)
    with pytest.raises(ConfigError) as caught:
        fetch_pipeline(pipeline, registry, target="linux-x86_64")
    assert [p.split(": ")[1] for p in caught.value.problems] == ["stages[1]", "stages[2]"]
    assert cache.entries() == []  # nothing fetched for a pipeline that cannot run


def test_a_binary_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="cannot be read as a UTF-8 text file"):
        load_pipeline(path)


def test_anchors_are_refused_before_they_expand(tmp_path: Path) -> None:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{n}: &l{n} [{','.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 10)]
    path = write(tmp_path, "\n".join(lines) + "\nstages: [*l9]\n")
    with pytest.raises(ConfigError) as caught:
        load_pipeline(path)
    assert caught.value.problems == [
        f"{path}: line 1 column 5: YAML anchors and aliases (&l0, *l0) are not accepted, as they "
        "can expand without bound: write the value out in full"
    ]


def test_deep_nesting_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "stages: " + "[" * 200_000)
    with pytest.raises(ConfigError) as caught:
        load_pipeline(path)
    assert caught.value.problems == [
        f"{path}: line 1 column 72: nested more than 64 arrays or objects deep: "
        "flatten the document"
    ]
