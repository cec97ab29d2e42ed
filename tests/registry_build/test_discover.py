"""``registry-build discover``: walking real trees, naming, proposing, merging, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from registry_build.config import load_config
from registry_build.discover import DiscoverError, discover, identify, sanitize, scan
from registry_build.formats import ModelHeader
from runtime.cli import build_parser, run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _header(name: str | None = None, version: str | None = None) -> ModelHeader:
    return ModelHeader("gguf", "gguf", {"format": "gguf"}, name=name, version=version)


@pytest.mark.parametrize(
    ("rel", "is_dir", "header", "expected"),
    [
        ("models/whisper-tiny/1.2/model.gguf", False, _header(), ("whisper-tiny", "1.2")),
        ("llama-3.2-1b-q4_k_m.gguf", False, _header(), ("llama-3.2-1b-q4_k_m", "1.0")),
        ("models/Whisper Tiny/v2/whisper-q8.gguf", False, _header(), ("whisper-q8", "2")),
        ("model.gguf", False, _header("Tiny Llama 3"), ("tiny-llama-3", "1.0")),
        ("qwen/model-00001-of-00002.safetensors", False, _header(), ("qwen", "1.0")),
        ("bar/2026-02-13_001.onnx", False, _header(), ("bar", "2026-02-13_001")),
        ("phi.gguf", False, _header(version="3.5"), ("phi", "3.5")),
        ("Llama-3.2-1B", True, _header(), ("llama-3.2-1b", "1.0")),
        ("bert/0.3", True, _header(), ("bert", "0.3")),
        ("Detector.mlpackage", True, _header(), ("detector", "1.0")),
        ("__weird__ (copy).gguf", False, _header(), ("weird-copy", "1.0")),
    ],
)
def test_identify_from_path_then_header(
    tmp_path: Path, rel: str, is_dir: bool, header: ModelHeader, expected: tuple[str, str]
) -> None:
    assert identify(tmp_path, tmp_path / rel, is_dir, header) == expected


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("My Model!", "my-model"),
        ("a..b", "a.b"),
        ("a._b", "a-b"),
        ("--x--", "x"),
        ("!!!", ""),
        ("é", ""),
    ],
)
def test_sanitize(text: str, name: str) -> None:
    assert sanitize(text) == name


def _gguf(path: Path, name: str = "Tiny") -> Path:
    import gguf
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(name)
    writer.add_file_type(7)
    writer.add_context_length(2048)
    writer.add_tensor("w", np.ones((4, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _tree(root: Path) -> Path:
    """A tree of models, other files, damaged files and a hidden directory."""
    for rel, text in [("README.md", "# models\n"), ("notes/a.txt", "x"), ("data.csv", "a,b\n")]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    _gguf(root / "models" / "whisper-tiny" / "1.2" / "model.gguf")
    _gguf(root / "llama-3.2-1b-q4_k_m.gguf")
    _gguf(root / ".git" / "hidden.gguf")
    shutil.copytree(EXAMPLES / "tiny-bert", root / "hf" / "tiny-bert")
    (root / "onnx").mkdir()
    shutil.copy(EXAMPLES / "tiny-linear.onnx", root / "onnx" / "classifier.onnx")
    (root / "broken.safetensors").write_bytes(struct.pack("<Q", 500) + b"{")
    cut = (EXAMPLES / "tiny-llama.gguf").read_bytes()[:300]
    (root / "models" / "cut.gguf").write_bytes(cut)
    return root


def test_scan_finds_models_and_reports_damaged_files_without_stopping(tmp_path: Path) -> None:
    found = scan(_tree(tmp_path / "tree"))
    ids = [
        (m.model_id, m.version, m.path.relative_to(tmp_path / "tree").as_posix())
        for m in found.models
    ]
    assert ids == [
        ("llama-3.2-1b-q4_k_m", "1.0", "llama-3.2-1b-q4_k_m.gguf"),
        ("tiny-bert", "0.1.0", "hf/tiny-bert"),
        ("whisper-tiny", "1.2", "models/whisper-tiny/1.2/model.gguf"),
        ("classifier", "1.0", "onnx/classifier.onnx"),
    ]
    stats = found.stats
    assert (stats.scanned, stats.found, len(stats.errors)) == (13, 4, 2)
    assert stats.errors == [
        "broken.safetensors: header length 500 is past the file end (9 bytes)",
        "models/cut.gguf: truncated: needs 25 bytes at offset 297 but the file ends at 300",
    ]
    assert stats.max_bytes_per_file <= 16 * 1024
    assert stats.files_read == 9  # tiny-bert: config, weights, README, model_metadata


def test_large_model_files_cost_at_most_one_budget_each(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "tiny-mlp.safetensors", tmp_path / "big.safetensors")
    os.truncate(tmp_path / "big.safetensors", 1 << 30)  # sparse: 1 GiB of "weights"
    found = scan(tmp_path)
    assert found.stats.found == 1
    assert found.models[0].header.metadata["parameter_count"] == 58
    assert found.stats.bytes_read == found.stats.max_bytes_per_file <= 16 * 1024


def test_same_id_and_version_get_a_format_suffix(tmp_path: Path) -> None:
    _gguf(tmp_path / "a" / "1.0" / "model.gguf")
    shutil.copy(EXAMPLES / "tiny-linear.onnx", tmp_path / "a" / "1.0" / "model.onnx")
    found = scan(tmp_path)
    assert [(m.model_id, m.version) for m in found.models] == [("a", "1.0"), ("a-onnx", "1.0")]


def _examples(tmp_path: Path) -> Path:
    root = tmp_path / "repo" / "examples"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return root


def test_written_document_passes_the_config_validator(tmp_path: Path) -> None:
    root = _examples(tmp_path)
    config = tmp_path / "repo" / "bundles.json"
    result = discover(root, write=config)
    assert (result.stats.added, result.stats.updated, result.changes) == (5, 0, ())
    loaded = load_config(config, strict=True)
    assert [(b.key, b.model_id, b.version) for b in loaded.bundles] == [
        ("tiny-classifier", "tiny-classifier", "1.0"),
        ("tiny-linear", "tiny-linear", "1.0"),
        ("tiny-llama", "tiny-llama", "1.0"),
        ("tiny-mlp", "tiny-mlp", "1.0"),
        ("tiny-bert", "tiny-bert", "0.1.0"),
    ]
    coreml = loaded.bundles[0]
    assert [t.platform for t in coreml.targets] == ["macos-arm64", "ios-arm64"]
    bert = loaded.bundles[4]
    assert bert.targets[0].source_dir == root / "tiny-bert"
    assert bert.metadata_files == ("config.json", "tokenizer.json", "model.safetensors")
    llama = json.loads(config.read_text())["bundles"]["tiny-llama"]
    assert llama["description"] == (
        "llama model (GGUF, F32, 920 parameters), discovered at examples/tiny-llama.gguf"
    )
    assert llama["targets"] == [
        {"platform": "universal", "model_file": "tiny-llama.gguf", "model_type": "gguf",
         "source_path": "examples/tiny-llama.gguf", "fallback": "error"},
    ]  # fmt: skip


def test_coreml_package_becomes_macos_and_ios_targets(tmp_path: Path) -> None:
    package = tmp_path / "models" / "Det.mlpackage"
    (package / "Data" / "com.apple.CoreML").mkdir(parents=True)
    (package / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(b"\x08\x05")
    manifest = {"itemInfoEntries": {"A": {"path": "com.apple.CoreML/model.mlmodel"}},
                "rootModelIdentifier": "A"}  # fmt: skip
    (package / "Manifest.json").write_text(json.dumps(manifest))
    config = tmp_path / "bundles.json"
    discover(tmp_path / "models", write=config)
    (spec,) = load_config(config).bundles
    assert (spec.model_id, spec.version) == ("det", "1.0")
    assert [(t.platform, t.model_file, t.source_dir) for t in spec.targets] == [
        ("macos-arm64", "Data/com.apple.CoreML/model.mlmodel", package),
        ("ios-arm64", "Data/com.apple.CoreML/model.mlmodel", package),
    ]


def _edit(config: Path) -> None:
    doc = json.loads(config.read_text())
    llama = doc["bundles"]["tiny-llama"]
    llama["model_id"] = "my-llama"  # renamed by a person: still matched by its source
    llama["description"] = "Our llama."
    llama["metadata"]["license"] = "proprietary"
    del llama["metadata"]["context_length"]
    del doc["bundles"]["tiny-mlp"]["metadata"]
    doc["bundles"]["tiny-bert"]["targets"][0]["platform"] = "linux-x86_64"
    config.write_text(json.dumps(doc, indent=2) + "\n")


def test_merge_adds_new_models_and_fills_gaps_without_overwriting_edits(tmp_path: Path) -> None:
    root = _examples(tmp_path)
    config = tmp_path / "repo" / "bundles.json"
    discover(root, write=config)
    _edit(config)
    _gguf(root / "extra" / "2.0" / "model.gguf")
    result = discover(root, merge_into=config)
    assert result.changes == (
        "updated tiny-llama: set metadata.context_length = 128",
        'updated tiny-mlp: set metadata.format = "safetensors"',
        "updated tiny-mlp: set metadata.parameter_count = 58",
        'updated tiny-mlp: set metadata.dtypes = ["F32"]',
        'updated tiny-mlp: set metadata.quantization = "F32"',
        'updated tiny-mlp: set metadata.safetensors_metadata = {"format": "pt", "license": "mit"}',
        'updated tiny-mlp: set metadata.license = "mit"',
        "added extra: extra@2.0",
    )
    assert (result.stats.added, result.stats.updated) == (1, 2)
    doc = json.loads(config.read_text())
    llama = doc["bundles"]["tiny-llama"]
    assert (llama["model_id"], llama["description"]) == ("my-llama", "Our llama.")
    assert llama["metadata"]["license"] == "proprietary"
    assert [t["platform"] for t in doc["bundles"]["tiny-bert"]["targets"]] == ["linux-x86_64"]
    assert list(doc["bundles"]) == [
        "tiny-classifier",
        "tiny-linear",
        "tiny-llama",
        "tiny-mlp",
        "tiny-bert",
        "extra",
    ]
    assert load_config(config, strict=True).bundles[-1].model_id == "extra"


def test_merge_with_nothing_new_leaves_the_file_alone(tmp_path: Path) -> None:
    root = _examples(tmp_path)
    config = tmp_path / "repo" / "bundles.json"
    discover(root, write=config)
    os.utime(config, (1_000_000_000, 1_000_000_000))
    before = config.read_bytes()
    result = discover(root, merge_into=config)
    assert (result.changes, result.stats.added, result.stats.updated) == ((), 0, 0)
    assert config.read_bytes() == before
    assert config.stat().st_mtime == 1_000_000_000


def test_merge_matches_by_model_id_and_version_and_adds_a_target(tmp_path: Path) -> None:
    root = _examples(tmp_path)
    config = tmp_path / "repo" / "bundles.json"
    person = {"model_id": "tiny-llama", "version": "1.0", "description": "Mine.",
              "targets": [{"platform": "linux-x86_64", "model_file": "m.gguf",
                           "model_type": "gguf", "source_path": "elsewhere/m.gguf",
                           "fallback": "placeholder"}]}  # fmt: skip
    config.write_text(json.dumps({"bundles": {"mine": person}}))
    result = discover(root, merge_into=config)
    assert "updated mine: added target universal (examples/tiny-llama.gguf)" in result.changes
    targets = json.loads(config.read_text())["bundles"]["mine"]["targets"]
    assert [t["platform"] for t in targets] == ["linux-x86_64", "universal"]


@pytest.mark.parametrize(
    ("setup", "kwargs", "message"),
    [
        (
            lambda p: (p / "bundles.json").write_text("{}"),
            {"write": "bundles.json"},
            "{d}/bundles.json already exists: use --merge {d}/bundles.json to add to it, "
            "or remove it first",
        ),
        (
            lambda p: None,
            {"write": "no/dir/bundles.json"},
            "{d}/no/dir/bundles.json: the directory {d}/no/dir does not exist: create it first",
        ),
        (
            lambda p: None,
            {"merge_into": "nope.json"},
            "{d}/nope.json: no such file: use --write {d}/nope.json to create it, or fix the path",
        ),
        (
            lambda p: (p / "b.json").write_text('{"models": {}}'),
            {"merge_into": "b.json"},
            '{d}/b.json: expected an object {{"bundles": {{...}}}}: merge into a bundles.json',
        ),
        (
            lambda p: (p / "b.json").write_text("{oops"),
            {"merge_into": "b.json"},
            "{d}/b.json: line 1 column 2: invalid JSON: Expecting property name enclosed in "
            "double quotes; fix the file",
        ),
        (
            lambda p: (p / "b.json").write_text(
                '{"bundles": ' + "[" * 200_000 + "]" * 200_000 + "}"
            ),
            {"merge_into": "b.json"},
            "{d}/b.json: line 1 column 76: nested more than 64 arrays or objects deep: flatten "
            "the document; fix the file",
        ),
        (
            lambda p: (p / "b.json").write_bytes(b'{"bundles": {"\xff": 1}}'),
            {"merge_into": "b.json"},
            "{d}/b.json: cannot be read as UTF-8 text ('utf-8' codec can't decode byte 0xff in "
            "position 14: invalid start byte): fix the file",
        ),
    ],
)
def test_unusable_output_files(
    tmp_path: Path, setup: Any, kwargs: dict[str, str], message: str
) -> None:
    setup(tmp_path)
    args = {k: tmp_path / v for k, v in kwargs.items()}
    with pytest.raises(DiscoverError) as caught:
        discover(EXAMPLES, **args)
    assert str(caught.value) == message.format(d=tmp_path)


def test_scanning_a_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DiscoverError) as caught:
        scan(EXAMPLES / "tiny-mlp.safetensors")
    assert str(caught.value) == (
        f"{EXAMPLES}/tiny-mlp.safetensors is not a directory: give the directory to scan for models"
    )


# --- CLI ----------------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    parser = build_parser("registry-build", "test", ("registry_build.cli.discover",))
    return run(parser, argv)


def test_cli_prints_the_proposed_document_and_stats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _examples(tmp_path)
    monkeypatch.chdir(tmp_path / "repo")
    (root / "junk.gguf").write_bytes(b"nope")
    assert _cli(["discover", "examples"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert list(doc["bundles"]) == [
        "tiny-classifier",
        "tiny-linear",
        "tiny-llama",
        "tiny-mlp",
        "tiny-bert",
    ]
    lines = err.splitlines()
    assert lines[0] == "error: junk.gguf: not a GGUF file: the first 4 bytes are not b'GGUF'"
    assert lines[1].startswith(
        "scanned 10 files, found 5 models, added 5, updated 0, errors 1; read "
    )


def test_cli_write_then_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _examples(tmp_path)
    config = tmp_path / "repo" / "bundles.json"
    assert _cli(["discover", str(root), "--write", str(config)]) == 0
    assert capsys.readouterr().out == f"wrote {config} (5 bundles)\n"
    assert _cli(["discover", str(root), "--merge", str(config)]) == 0
    assert capsys.readouterr().out == f"{config}: nothing to change\n"
    _gguf(root / "new.gguf")
    assert _cli(["discover", str(root), "--merge", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["changes"] == ["added new: new@1.0"]
    assert {k: report["stats"][k] for k in ("scanned", "found", "added", "updated", "errors")} == {
        "scanned": 10, "found": 6, "added": 1, "updated": 0, "errors": 0,
    }  # fmt: skip


def test_cli_user_error_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["discover", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err == (
        f"Error: {tmp_path}/missing is not a directory: give the directory to scan for models\n"
    )


def test_cli_write_and_merge_together_is_bad_usage(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        _cli(["discover", str(tmp_path), "--write", "a.json", "--merge", "b.json"])
    assert caught.value.code == 2


def test_model_file_is_one_that_model_metadata_lists(tmp_path: Path) -> None:
    model = tmp_path / "models" / "enc"
    shutil.copytree(EXAMPLES / "tiny-bert", model)
    shutil.copy(EXAMPLES / "tiny-linear.onnx", model / "model.onnx")
    listing = {"model_id": "enc", "version": "2.0", "files": ["config.json", "model.onnx"]}
    (model / "model_metadata.json").write_text(json.dumps(listing))
    config = tmp_path / "bundles.json"
    discover(tmp_path / "models", write=config)
    (spec,) = load_config(config).bundles
    assert (spec.model_id, spec.version, spec.targets[0].model_file) == ("enc", "2.0", "model.onnx")
    assert spec.metadata_files == ("config.json", "model.onnx")


def test_damaged_model_metadata_is_one_error_line(tmp_path: Path) -> None:
    model = tmp_path / "enc"
    shutil.copytree(EXAMPLES / "tiny-bert", model)
    (model / "model_metadata.json").write_text("[1,")
    found = scan(tmp_path)
    assert found.models == ()
    assert found.stats.errors == [
        "enc: model_metadata.json is not valid JSON (Expecting value: line 1 column 4 (char 3))"
    ]


def test_console_command_end_to_end(tmp_path: Path) -> None:
    root = _examples(tmp_path)
    config = tmp_path / "repo" / "bundles.json"
    entry = "import sys; from registry_build.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", entry, "discover", str(root)]
    done = subprocess.run([*command, "--write", str(config)], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, f"wrote {config} (5 bundles)\n")
    done = subprocess.run([*command, "--write", str(config)], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"Error: {config} already exists: use --merge {config} to add to it, or remove it first\n"
    )
