"""bundles.json validation: every problem at once, each with its key path and the fix."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from registry_build.config import load_config
from runtime.errors import ConfigError
from runtime.names import TARGETS

KNOWN = ", ".join(TARGETS)
NAME_RULE = (
    "is not a valid name: use 1-128 letters, digits, '.', '_' or '-', "
    "starting and ending with a letter or digit, without '..'"
)
VALID: dict[str, Any] = {
    "bundles": {
        "a": {
            "model_id": "tiny",
            "version": "1.0",
            "description": "A tiny model",
            "targets": [
                {
                    "platform": "universal",
                    "model_file": "model.bin",
                    "model_type": "onnx",
                    "source_path": "m.bin",
                    "fallback": "error",
                },
                {
                    "platform": "linux-x86_64",
                    "model_file": "model.onnx",
                    "model_type": "onnx",
                    "source_dir": "d",
                },
            ],
        }
    }
}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "m.bin").write_bytes(b"weights")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "d" / "vocab.txt").write_text("a\nb\n")
    (tmp_path / "meta.json").write_text(json.dumps({"files": ["model.onnx", "gone.txt"]}))
    (tmp_path / "bad-meta.json").write_text("{nope")
    (tmp_path / "meta-vocab.json").write_text(json.dumps({"files": ["vocab.txt"]}))
    (tmp_path / "meta-escape.json").write_text(json.dumps({"files": ["model.onnx", "../x"]}))
    return tmp_path


def edit(change: Any) -> Any:
    doc = copy.deepcopy(VALID)
    change(doc)
    return doc


def bundle(doc: Any) -> dict[str, Any]:
    return doc["bundles"]["a"]  # type: ignore[no-any-return]


def target(doc: Any, i: int = 0) -> dict[str, Any]:
    return bundle(doc)["targets"][i]  # type: ignore[no-any-return]


B = 'bundles.json: bundles["a"]'
T0 = f"{B}.targets[0]"

CASES: list[tuple[str, Any, list[str]]] = [
    ("not json", "{", ["bundles.json: line 1 column 2: invalid JSON: Expecting property name enclosed in double quotes"]),
    ("duplicate key", '{"bundles": {"a": {}, "a": {}}}', ["bundles.json: key 'a' appears twice in one object, and JSON keeps only the last: remove or rename one"]),
    ("lone surrogate", '{"bundles": {"a": {"description": "x\\ud800"}}}', ["bundles.json: a string holds \\ud800, half of a UTF-16 pair: fix that escape"]),
    ("top level array", [], ['bundles.json: top level: expected an object {"bundles": {...}}, got an array']),
    ("no bundles", {}, ["bundles.json: bundles: expected an object mapping a name to each bundle, got nothing"]),
    ("bundles array", {"bundles": []}, ["bundles.json: bundles: expected an object mapping a name to each bundle, got an array"]),
    ("bundles empty", {"bundles": {}}, ["bundles.json: bundles: is empty: define at least one bundle"]),
    ("bundle string", {"bundles": {"a": "tiny"}}, [f"{B}: expected an object with model_id, version and targets, got a string"]),
    ("model_id missing", edit(lambda d: bundle(d).pop("model_id")), [f"{B}.model_id: is missing: add it (a string)"]),
    ("model_id traversal", edit(lambda d: bundle(d).update(model_id="../evil")), [f"{B}.model_id: model_id '../evil' {NAME_RULE}"]),
    ("model_id space", edit(lambda d: bundle(d).update(model_id="my model")), [f"{B}.model_id: model_id 'my model' {NAME_RULE}"]),
    ("version number", edit(lambda d: bundle(d).update(version=1.0)), [f'{B}.version: expected a string, got the number 1.0: quote it exactly as you mean it, e.g. "1.0" (as a number, 1.10 reads as 1.1)']),
    ("version slash", edit(lambda d: bundle(d).update(version="1.0/2")), [f"{B}.version: version '1.0/2' {NAME_RULE}"]),
    ("version missing", edit(lambda d: bundle(d).pop("version")), [f"{B}.version: is missing: add it (a string)"]),
    ("description number", edit(lambda d: bundle(d).update(description=5)), [f"{B}.description: expected a string, got a number 5"]),
    ("targets missing", edit(lambda d: bundle(d).pop("targets")), [f"{B}.targets: expected a non-empty array of targets, got nothing"]),
    ("targets empty", edit(lambda d: bundle(d).update(targets=[])), [f"{B}.targets: expected a non-empty array of targets, got an empty array"]),
    ("target string", edit(lambda d: bundle(d).update(targets=["universal"])), [f"{T0}: expected an object with platform, model_file and a source, got a string"]),
    ("platform missing", edit(lambda d: target(d).pop("platform")), [f"{T0}.platform: is missing: add it (a string)"]),
    ("platform unknown", edit(lambda d: target(d).update(platform="ios-x64")), [f"{T0}.platform: 'ios-x64' is not a known platform (known: {KNOWN})"]),
    ("both sources", edit(lambda d: target(d).update(source_dir="d")), [f"{T0}: has both of source_path and source_dir: give exactly one"]),
    ("no source", edit(lambda d: target(d).pop("source_path")), [f"{T0}: has neither of source_path and source_dir: give exactly one"]),
    ("model_file missing", edit(lambda d: target(d).pop("model_file")), [f"{T0}.model_file: is missing: add it (a string)"]),
    ("model_file escapes", edit(lambda d: target(d).update(model_file="../x.bin")), [f"{T0}.model_file: '../x.bin' must be a relative path inside the bundle, without '..'"]),
    ("model_file absolute", edit(lambda d: target(d).update(model_file="/etc/passwd")), [f"{T0}.model_file: '/etc/passwd' must be a relative path inside the bundle, without '..'"]),
    ("metadata not finite", edit(lambda d: bundle(d).update(metadata={"scores": [1.0, float("inf")]})), [f"{B}.metadata.scores[1]: inf is not a number JSON can carry: write a finite number"]),
    ("model_file drive", edit(lambda d: target(d).update(model_file="C:/x.gguf")), [f"{T0}.model_file: 'C:/x.gguf' must be a relative path inside the bundle, without '..'"]),
    ("model_file spaces", edit(lambda d: target(d).update(model_file=" m.gguf")), [f"{T0}.model_file: ' m.gguf' has surrounding spaces or control characters: remove them"]),
    ("model_file reserved", edit(lambda d: target(d).update(model_file="model_metadata.json")), [f"{T0}.model_file: 'model_metadata.json' is a name the bundle reserves for itself (manifest.json, model_metadata.json): rename the model file"]),
    ("model_type missing", edit(lambda d: target(d).pop("model_type")), [f"{T0}.model_type: is missing: add it (a string)"]),
    ("fallback bad", edit(lambda d: target(d).update(fallback="maybe")), [f"{T0}.fallback: 'maybe' is not one of \"placeholder\", \"error\""]),
    ("source_path is dir", edit(lambda d: target(d).update(source_path="d")), [f"{T0}.source_path: 'd' is not a file; use source_dir instead"]),
    ("source_dir is file", edit(lambda d: target(d, 1).update(source_dir="m.bin")), [f"{B}.targets[1].source_dir: 'm.bin' is not a directory; use source_path instead"]),
    ("metadata array", edit(lambda d: bundle(d).update(metadata=[])), [f"{B}.metadata: expected an object, got an array"]),
    ("parameter_count text", edit(lambda d: bundle(d).update(metadata={"parameter_count": "1B"})), [f"{B}.metadata.parameter_count: expected a whole number, got a string '1B'"]),
    ("context_length negative", edit(lambda d: bundle(d).update(metadata={"context_length": -1})), [f"{B}.metadata.context_length: expected a whole number >= 0, got -1"]),
    ("tags not strings", edit(lambda d: bundle(d).update(metadata={"tags": ["asr", 1]})), [f"{B}.metadata.tags: expected an array of strings"]),
    ("license bool", edit(lambda d: bundle(d).update(metadata={"license": True})), [f"{B}.metadata.license: expected a string, got a boolean True"]),
    ("model_metadata bad json", edit(lambda d: bundle(d).update(model_metadata="bad-meta.json")), [f"{B}.model_metadata: 'bad-meta.json': line 1 column 2: invalid JSON: Expecting property name enclosed in double quotes"]),
    ("model_metadata not string", edit(lambda d: bundle(d).update(model_metadata=3)), [f"{B}.model_metadata: expected a path to a model_metadata.json, got a number"]),
    ("model_file not in dir", edit(lambda d: target(d, 1).update(model_file="nope.onnx")), [f"{B}.targets[1].model_file: 'nope.onnx' is not in source_dir {{tmp}}/d: fix model_file"]),
    ("model_file not listed", edit(lambda d: bundle(d).update(model_metadata="meta-vocab.json")), [f"{B}.targets[1].model_file: 'model.onnx' is not among the files model_metadata lists, so the bundle would lack its model: add it to \"files\" or fix model_file"]),
    ("listed file escapes", edit(lambda d: bundle(d).update(model_metadata="meta-escape.json")), [f"""{B}.model_metadata: 'meta-escape.json': "files": '../x' must be a relative path inside the bundle, without '..'"""]),
    ("listed file missing", edit(lambda d: bundle(d).update(model_metadata="meta.json")), [f"{B}.targets[1]: model_metadata lists 'gone.txt' but {{tmp}}/d/gone.txt does not exist"]),
    ("missing source, fallback error", edit(lambda d: target(d).update(source_path="gone.bin")), [f'{T0}.source_path: \'gone.bin\' does not exist (looked for {{tmp}}/gone.bin) and fallback is "error": add the file, fix the path, or set "fallback": "placeholder"']),
    ("missing source, default fallback", edit(lambda d: target(d, 1).update(source_dir="nodir")), [f'{B}.targets[1].source_dir: \'nodir\' does not exist (looked for {{tmp}}/nodir) and fallback is "error": add the file, fix the path, or set "fallback": "placeholder"']),
    ("duplicate within bundle", edit(lambda d: target(d, 1).update(platform="universal")), [f"{B}.targets[1]: tiny@1.0 for platform 'universal' is already defined at bundles[\"a\"].targets[0]: keep one definition per model_id, version and platform"]),
    (
        "duplicate across bundles via synonym",
        edit(lambda d: d["bundles"].update(b={**copy.deepcopy(bundle(d)), "targets": [{**target(d, 1), "platform": "LINUX-x86_64"}]})),
        ["bundles.json: bundles[\"b\"].targets[0]: tiny@1.0 for platform 'linux-x86_64' is already defined at bundles[\"a\"].targets[1]: keep one definition per model_id, version and platform"],
    ),
    ("default_model undefined", edit(lambda d: d.update(default_model="huge")), ["bundles.json: default_model: 'huge' is not a model_id defined here (defined: tiny): name one of them or remove the key"]),
    ("default_model not a string", edit(lambda d: d.update(default_model=["tiny"])), ["bundles.json: top level.default_model: expected a string, got an array ['tiny']"]),
    (
        "several problems at once",
        edit(lambda d: (bundle(d).update(version=2), target(d).update(platform="mars"), target(d, 1).pop("model_type"))),
        [
            f'{B}.version: expected a string, got the number 2: quote it exactly as you mean it, e.g. "2"',
            f"{T0}.platform: 'mars' is not a known platform (known: {KNOWN})",
            f"{B}.targets[1].model_type: is missing: add it (a string)",
        ],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_documents_report_every_problem(
    workdir: Path, doc: Any, expected: list[str]
) -> None:
    path = workdir / "bundles.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [m.replace("{tmp}", str(workdir)) for m in expected]


def test_message_counts_problems(workdir: Path) -> None:
    path = workdir / "bundles.json"
    path.write_text(json.dumps({"bundles": {"a": {"model_id": "x"}}}))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).splitlines() == [
        "2 problems in the configuration:",
        f"  - {B}.version: is missing: add it (a string)",
        f"  - {B}.targets: expected a non-empty array of targets, got nothing",
    ]


def test_unknown_keys_warn_and_fail_under_strict(workdir: Path) -> None:
    path = workdir / "bundles.json"
    path.write_text(json.dumps(edit(lambda d: target(d).update(platfrom="x"))))
    message = (
        f"{T0}: unknown key 'platfrom' (known: fallback, model_file, model_type, platform, "
        "source_dir, source_path); remove it or fix its spelling"
    )
    assert load_config(path).warnings == (message,)
    with pytest.raises(ConfigError) as info:
        load_config(path, strict=True)
    assert info.value.problems == [message]


def test_one_model_version_split_over_two_keys_must_agree(workdir: Path) -> None:
    doc = edit(lambda d: None)
    b = copy.deepcopy(bundle(doc))
    b["targets"] = [dict(target(doc), platform="macos-arm64")]
    doc["bundles"]["b"] = dict(b, description="Another text")
    path = workdir / "bundles.json"
    path.write_text(json.dumps(doc))
    assert load_config(path).warnings == (
        'bundles.json: bundles["b"].description: differs from bundles["a"], which defines '
        f"{bundle(doc)['model_id']}@{bundle(doc)['version']} too: the index shows one of them; "
        "make them the same",
    )


def test_xybrid_hf_repo_key_is_known(workdir: Path) -> None:
    path = workdir / "bundles.json"
    path.write_text(json.dumps(edit(lambda d: bundle(d).update(hf_repo="org/tiny"))))
    assert load_config(path, strict=True).warnings == ()


def test_valid_document_gives_typed_values(workdir: Path) -> None:
    path = workdir / "bundles.json"
    doc = edit(lambda d: target(d, 1).update(platform="linux-aarch64"))
    path.write_text(json.dumps(doc))
    config = load_config(path)
    (spec,) = config.bundles
    assert (spec.model_id, spec.version, spec.description) == ("tiny", "1.0", "A tiny model")
    assert [t.platform for t in spec.targets] == ["universal", "linux-arm64"]
    assert spec.targets[0].source_path == workdir / "m.bin"
    assert spec.targets[1].source_dir == workdir / "d"
    assert spec.targets[1].fallback == "error"


def test_missing_source_with_placeholder_fallback_is_marked(workdir: Path) -> None:
    path = workdir / "bundles.json"
    path.write_text(
        json.dumps(edit(lambda d: target(d).update(source_path="gone", fallback="placeholder")))
    )
    assert load_config(path).bundles[0].targets[0].missing is True


def test_yaml_document_is_equivalent(workdir: Path) -> None:
    import yaml

    (workdir / "bundles.json").write_text(json.dumps(VALID))
    (workdir / "bundles.yaml").write_text(yaml.safe_dump(VALID))
    assert (
        load_config(workdir / "bundles.yaml").bundles
        == load_config(workdir / "bundles.json").bundles
    )


def test_yaml_duplicate_key_names_line(workdir: Path) -> None:
    path = workdir / "bundles.yaml"
    path.write_text("bundles:\n  a:\n    model_id: a\n    model_id: b\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        "bundles.yaml: line 4 column 5: invalid YAML: key 'model_id' appears twice in one "
        "mapping: keep one"
    ]


def test_yaml_syntax_error_names_line(workdir: Path) -> None:
    path = workdir / "bundles.yaml"
    path.write_text("bundles:\n  a: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].startswith("bundles.yaml: line 3 column 1: invalid YAML: ")


def test_missing_config_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "bundles.json")
    assert info.value.problems == [
        f"{tmp_path}/bundles.json: no such file: create it, or pass --config PATH to the bundles.json to use"
    ]


def test_an_empty_model_file_warns(workdir: Path) -> None:
    (workdir / "m.bin").write_bytes(b"")
    path = workdir / "bundles.json"
    path.write_text(json.dumps(VALID))
    assert load_config(path).warnings == (
        f"bundles.json: {T0[len('bundles.json: ') :]}.source_path: {workdir / 'm.bin'} is empty "
        "(0 bytes): is it the model?",
    )


def laughs(levels: int) -> str:
    """A YAML alias bomb: each anchor an array of nine aliases of the one before."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{n}: &l{n} [{','.join([f'*l{n - 1}'] * 9)}]" for n in range(1, levels + 1)]
    return "\n".join(lines) + "\nbundles: {}\n"


HOSTILE_DOCUMENTS: list[tuple[str, str, str, str]] = [
    ("yaml alias bomb", "bundles.yaml", laughs(4), "bundles.yaml: line 1 column 5: YAML anchors and aliases (&l0, *l0) are not accepted, as they can expand without bound: write the value out in full"),
    ("yaml python tag", "bundles.yaml", "bundles: !!python/object/apply:os.system [id]\n", "bundles.yaml: line 1 column 10: the YAML tag tag:yaml.org,2002:python/object/apply:os.system is not accepted: write a plain value"),
    ("json 200,000 brackets", "bundles.json", "[" * 200_000, "bundles.json: line 1 column 65: nested more than 64 arrays or objects deep: flatten the document"),
    ("yaml 200,000 brackets", "bundles.yaml", "[" * 200_000, "bundles.yaml: line 1 column 65: nested more than 64 arrays or objects deep: flatten the document"),
    ("deep metadata", "bundles.json", '{"bundles": {"a": {"metadata": {"x": ' + "[" * 70 + "]" * 70 + "}}}}", "bundles.json: line 1 column 98: nested more than 64 arrays or objects deep: flatten the document"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [c[1:] for c in HOSTILE_DOCUMENTS],
    ids=[c[0] for c in HOSTILE_DOCUMENTS],
)
def test_hostile_documents_are_refused_before_they_expand(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [expected]


def test_huge_values_are_cut_in_messages(workdir: Path) -> None:
    long = "m" * 100_000
    doc = edit(lambda d: bundle(d).update(model_id=long, description=["x" * 100_000]))
    doc["bundles"][long] = doc["bundles"].pop("a")
    path = workdir / "bundles.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    where = f'bundles.json: bundles["{"m" * 59}... (100002 characters)]'
    assert info.value.problems == [
        f"{where}.model_id: model_id '{'m' * 59}... (100000 characters) {NAME_RULE}",
        f"{where}.description: expected a string, got an array ['{'x' * 58}... (100004 characters)",
    ]
    assert len(str(info.value)) < 700  # not 200,000


def make_tree(root: Path, entries: dict[str, str]) -> None:
    """Create ``entries`` under ``root``: "file", "dir", "fifo" or "-> TARGET" (a symlink)."""
    for name, kind in entries.items():
        path = root / os.fsdecode(name.encode("utf-8", "surrogateescape"))
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind.startswith("-> "):
            path.symlink_to(kind[3:])
        elif kind == "dir":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            path.write_bytes(b"x")


D = f"{B}.targets[1].source_dir"
FIX = "replace the link with a copy of what it points to, or remove it"


def test_every_entry_of_a_source_dir_that_cannot_be_packed_is_named(workdir: Path) -> None:
    """Links (out of the directory or in it), names a bundle cannot hold and special files: all
    reported at once, with the config key, before anything is packed."""
    make_tree(workdir / "d", {
        "passwd": "-> /etc/passwd", "inside.bin": "-> model.onnx", "etc": "-> /etc",
        "bad\udcff.bin": "file", "sub/new\nline.bin": "file", "a\\b.bin": "file",
        "manifest.json": "file", "fifo": "fifo", ".hidden-link": "-> /etc/shadow",
        "sub/ok.bin": "file",
    })  # fmt: skip
    path = workdir / "bundles.json"
    path.write_text(json.dumps(VALID))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        f"{D}: 'a\\\\b.bin' contains a backslash or NUL: rename it",
        f"{D}: b'bad\\xff.bin' is not a valid UTF-8 name: rename it",
        f"{D}: 'etc' is a symbolic link to '/etc', outside the directory: links are not packed; {FIX}",
        f"{D}: 'fifo' is not a regular file or directory: remove it",
        f"{D}: 'inside.bin' is a symbolic link to 'model.onnx', inside the directory: links are not packed, even there; {FIX}",
        f"{D}: 'manifest.json' is the name the bundle keeps for its manifest: rename it",
        f"{D}: 'passwd' is a symbolic link to '/etc/passwd', outside the directory: links are not packed; {FIX}",
        f"{D}: 'sub/new\\nline.bin' contains a control character: rename it",
    ]


LINKED_SOURCES: list[tuple[str, dict[str, str], Any, str]] = [
    ("source_path is a link", {"evil.bin": "-> /etc/passwd"}, lambda d: target(d).update(source_path="evil.bin"),
     f"{T0}.source_path: 'evil.bin' is a symbolic link to '/etc/passwd': links are not followed; point source_path at the file itself"),
    ("source_dir is a link", {"linked": "-> /etc"}, lambda d: target(d, 1).update(source_dir="linked"),
     f"{D}: 'linked' is a symbolic link to '/etc': links are not followed; point source_dir at the directory itself"),
    ("model_metadata is a link", {"meta-link.json": "-> meta-vocab.json"}, lambda d: bundle(d).update(model_metadata="meta-link.json"),
     f"{B}.model_metadata: 'meta-link.json' is a symbolic link to 'meta-vocab.json': links are not followed; point model_metadata at the file itself"),
    ("listed file under a linked dir", {"d/tok": "-> /etc", "listed.json": '{"files": ["model.onnx", "tok/passwd"]}'}, lambda d: bundle(d).update(model_metadata="listed.json"),
     f"{D}: 'tok' is a symbolic link to '/etc': links are not followed; {FIX}"),
    ("listed file is a link", {"d/pw": "-> /etc/passwd", "listed.json": '{"files": ["model.onnx", "pw"]}'}, lambda d: bundle(d).update(model_metadata="listed.json"),
     f"{D}: 'pw' is a symbolic link to '/etc/passwd': links are not followed; {FIX}"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("entries", "change", "expected"),
    [c[1:] for c in LINKED_SOURCES],
    ids=[c[0] for c in LINKED_SOURCES],
)
def test_a_source_that_is_a_link_is_refused(
    workdir: Path, entries: dict[str, str], change: Any, expected: str
) -> None:
    for name, kind in entries.items():
        if kind.startswith("{"):
            (workdir / name).write_text(kind)
        else:
            make_tree(workdir, {name: kind})
    path = workdir / "bundles.json"
    path.write_text(json.dumps(edit(change)))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [expected]


def test_the_directories_leading_to_a_source_may_be_links(workdir: Path) -> None:
    (workdir / "models").symlink_to(workdir)
    (workdir / "d" / ".git").mkdir()
    (workdir / "d" / ".git" / "HEAD").write_text("ref")
    (workdir / "d" / "tok").mkdir()
    (workdir / "d" / "tok" / "merges.txt").write_text("a b")
    path = workdir / "bundles.json"
    path.write_text(json.dumps(edit(lambda d: target(d, 1).update(source_dir="models/d"))))
    spec = load_config(path).bundles[0].targets[1]
    root = workdir / "models" / "d"
    assert spec.files == (
        ("model.onnx", root / "model.onnx"),
        ("tok/merges.txt", root / "tok" / "merges.txt"),
        ("vocab.txt", root / "vocab.txt"),
    )
    assert spec.beneath == workdir / "models"


def test_default_model_names_a_defined_model(workdir: Path) -> None:
    path = workdir / "bundles.json"
    path.write_text(json.dumps(edit(lambda d: d.update(default_model="tiny"))))
    assert load_config(path).default_model == "tiny"
    path.write_text(json.dumps(VALID))
    assert load_config(path).default_model is None
