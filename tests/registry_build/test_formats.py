"""Format readers against real files: written by the formats' own tools or byte by byte per spec."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import onnx
import pytest
import safetensors.numpy
from onnx import TensorProto, helper, numpy_helper

from registry_build.formats import FormatError, ReadMeter, read_dir, read_file

MiB = 1 << 20


def _gguf(path: Path, tensors: dict[str, Any], tokens: int = 0, **kv: Any) -> Path:
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(kv.get("name", "Test Llama"))
    writer.add_file_type(kv.get("file_type", 15))
    writer.add_context_length(kv.get("context", 4096))
    writer.add_license(kv.get("license", "apache-2.0"))
    if tokens:
        writer.add_token_list([f"token-number-{i}" for i in range(tokens)])
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _small_gguf(path: Path) -> Path:
    f32 = np.float32
    tensors = {"token_embd.weight": np.ones((4, 8), f32), "output_norm.weight": np.ones(16, f32)}
    return _gguf(path, tensors)


def _read(path: Path, budget: int = MiB) -> tuple[Any, ReadMeter]:
    meter = ReadMeter(budget)
    return read_file(path, meter), meter


def _error(path: Path) -> str:
    with pytest.raises(FormatError) as caught:
        read_file(path, ReadMeter())
    return str(caught.value)


# --- GGUF ---------------------------------------------------------------------------------------


def test_gguf_header_gives_architecture_quantization_size_context_name_license(
    tmp_path: Path,
) -> None:
    header, _ = _read(_small_gguf(tmp_path / "m.gguf"))
    assert header.format == header.model_type == "gguf"
    assert header.name == "Test Llama"
    assert header.metadata == {
        "format": "gguf", "architecture": "llama", "context_length": 4096,
        "quantization": "Q4_K_M", "license": "apache-2.0", "parameter_count": 48,
    }  # fmt: skip
    assert header.notes == ()


def test_gguf_weights_are_never_read(tmp_path: Path) -> None:
    big = np.zeros((1024, 1024), np.float32)  # 4 MiB of weights after the header
    path = _gguf(tmp_path / "big.gguf", {"w": big})
    header, meter = _read(path)
    assert header.metadata["parameter_count"] == 1024 * 1024
    assert path.stat().st_size > 4 * MiB
    assert meter.largest <= 16 * 1024


def test_gguf_header_past_the_budget_keeps_metadata_and_leaves_out_the_count(
    tmp_path: Path,
) -> None:
    path = _gguf(tmp_path / "vocab.gguf", {"w": np.ones(8, np.float32)}, tokens=5000)
    header, meter = _read(path, budget=32 * 1024)
    assert header.metadata["architecture"] == "llama"
    assert header.metadata["context_length"] == 4096
    assert "parameter_count" not in header.metadata
    assert header.notes == ("header runs past the read budget: parameter_count left out",)
    assert meter.largest <= 32 * 1024
    full, _ = _read(path)
    assert full.metadata["parameter_count"] == 8


def _cut(path: Path, size: int) -> Path:
    data = path.read_bytes()[:size]
    path.write_bytes(data)
    return path


def test_gguf_truncated_inside_the_key_values(tmp_path: Path) -> None:
    path = _small_gguf(tmp_path / "m.gguf")
    at = path.read_bytes().index(b"general.name")
    _cut(path, at + 3)
    assert _error(path) == f"truncated: needs 12 bytes at offset {at} but the file ends at {at + 3}"


def test_gguf_cut_right_after_the_fixed_header(tmp_path: Path) -> None:
    path = _cut(_small_gguf(tmp_path / "m.gguf"), 28)
    assert _error(path) == "header claims 2 tensors and 5 keys: more than fit"


def test_gguf_truncated_inside_the_tensor_infos(tmp_path: Path) -> None:
    path = _small_gguf(tmp_path / "m.gguf")
    data = path.read_bytes()
    cut = data.index(b"output_norm.weight") + 4
    _cut(path, cut)
    assert _error(path) == (
        f"truncated: skips 18 bytes at offset {cut - 4} but the file ends at {cut}"
    )


@pytest.mark.parametrize(
    ("offset", "patch", "message"),
    [
        (0, b"GGUX", "not a GGUF file: the first 4 bytes are not b'GGUF'"),
        (4, struct.pack("<I", 99), "unsupported GGUF version 99 (supported: 2, 3)"),
        (8, struct.pack("<Q", 10**9), "header claims 1000000000 tensors and 5 keys: more than fit"),
    ],
)
def test_gguf_corrupted_fixed_header(
    tmp_path: Path, offset: int, patch: bytes, message: str
) -> None:
    path = _small_gguf(tmp_path / "m.gguf")
    data = bytearray(path.read_bytes())
    data[offset : offset + len(patch)] = patch
    path.write_bytes(bytes(data))
    assert _error(path) == message


def test_gguf_corrupted_value_type(tmp_path: Path) -> None:
    path = _small_gguf(tmp_path / "m.gguf")
    data = bytearray(path.read_bytes())
    at = data.index(b"general.architecture") + len("general.architecture")
    data[at : at + 4] = struct.pack("<I", 77)
    path.write_bytes(bytes(data))
    assert _error(path) == f"unknown value type 77 at offset {at}"


# --- safetensors --------------------------------------------------------------------------------


def _safetensors(path: Path, header: dict[str, Any], data_size: int) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * data_size)
    return path


def test_safetensors_dtypes_parameters_and_own_metadata(tmp_path: Path) -> None:
    header = {
        "a": {"dtype": "BF16", "shape": [3, 4], "data_offsets": [0, 24]},
        "b": {"dtype": "F32", "shape": [5], "data_offsets": [24, 44]},
        "__metadata__": {"format": "pt", "name": "mixer", "license": "cc-by-4.0"},
    }
    found, _ = _read(_safetensors(tmp_path / "w.safetensors", header, 44))
    assert found.name == "mixer"
    assert found.metadata == {
        "format": "safetensors", "parameter_count": 17, "dtypes": ["BF16", "F32"],
        "safetensors_metadata": {"format": "pt", "name": "mixer", "license": "cc-by-4.0"},
        "license": "cc-by-4.0",
    }  # fmt: skip


def test_safetensors_written_by_the_safetensors_package(tmp_path: Path) -> None:
    path = tmp_path / "p.safetensors"
    safetensors.numpy.save_file({"x": np.ones((2, 3), np.float16)}, str(path), metadata={"k": "v"})
    found, _ = _read(path)
    assert found.metadata["parameter_count"] == 6
    assert found.metadata["quantization"] == "F16"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (struct.pack("<Q", 1000) + b"{}", "header length 1000 is past the file end (10 bytes)"),
        (struct.pack("<Q", 2) + b"[]", "header is JSON list, expected an object"),
        (
            struct.pack("<Q", 3) + b"{x}",
            "header is not valid JSON (Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1))",
        ),
        (
            struct.pack("<Q", 27) + b'{"t": {"dtype": "F99"}}    ',
            "tensor 't' has no valid dtype and shape: {'dtype': 'F99'}",
        ),
        (
            struct.pack("<Q", 37) + b'{"t": {"dtype":"F32","shape":[-1]}}  ',
            "tensor 't' has a bad shape [-1]",
        ),
        (b"\x01\x02", "truncated: needs 8 bytes at offset 0 but the file ends at 2"),
    ],
)
def test_safetensors_damaged_header(tmp_path: Path, raw: bytes, message: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(raw)
    assert _error(path) == message


# --- ONNX ---------------------------------------------------------------------------------------


def _onnx(path: Path, weights: Any, *, opset: int = 13) -> Path:
    w = numpy_helper.from_array(weights, "W")
    b = numpy_helper.from_array(np.zeros(weights.shape[1], np.float32), "B")
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["XW"]),
        helper.make_node("Add", ["XW", "B"], ["Y"]),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, weights.shape[0]])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, weights.shape[1]])],
        initializer=[w, b],
    )  # fmt: skip
    model = helper.make_model(
        graph, producer_name="pytorch", producer_version="2.1.0",
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("ai.onnx.ml", 3)],
    )  # fmt: skip
    model.ir_version = 7
    helper.set_model_props(model, {"license": "bsd-3-clause", "author": "me"})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def test_onnx_ir_version_producer_opset_parameters(tmp_path: Path) -> None:
    found, _ = _read(_onnx(tmp_path / "m.onnx", np.ones((3, 4), np.float32)))
    assert found.format == found.model_type == "onnx"
    assert found.metadata == {
        "format": "onnx", "ir_version": 7, "parameter_count": 16, "opset": 13,
        "license": "bsd-3-clause", "producer": "pytorch 2.1.0",
    }  # fmt: skip


def test_onnx_initializer_data_is_skipped_not_read(tmp_path: Path) -> None:
    path = _onnx(tmp_path / "big.onnx", np.ones((1024, 1024), np.float32))
    found, meter = _read(path)
    assert found.metadata["parameter_count"] == 1024 * 1024 + 1024
    assert path.stat().st_size > 4 * MiB
    assert meter.largest <= 3 * 16 * 1024


def test_onnx_truncated_inside_the_graph(tmp_path: Path) -> None:
    path = _onnx(tmp_path / "m.onnx", np.ones((3, 4), np.float32))
    size = path.stat().st_size
    _cut(path, size // 2)
    assert _error(path).startswith("field 7 of ")
    assert _error(path).endswith(" bytes runs past its message")


def test_onnx_that_is_not_protobuf(tmp_path: Path) -> None:
    path = tmp_path / "text.onnx"
    path.write_bytes(b"\x00not a model")
    assert _error(path) == "field number 0 at offset 1: not a protobuf message"


def test_onnx_without_opset_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"\x08\x07")  # ir_version 7 and nothing else
    assert _error(path) == "not an ONNX model: no ir_version or default-domain opset_import"


# --- Hugging Face style directories -------------------------------------------------------------


def _shard(path: Path, shape: list[int], dtype: str = "BF16") -> None:
    count = 1
    for dim in shape:
        count *= dim
    _safetensors(
        path, {"w": {"dtype": dtype, "shape": shape, "data_offsets": [0, 2 * count]}}, 2 * count
    )


def test_hf_directory_with_shards_config_and_readme_license(tmp_path: Path) -> None:
    model = tmp_path / "qwen"
    model.mkdir()
    config = {"architectures": ["Qwen2ForCausalLM"], "max_position_embeddings": 32768,
              "_name_or_path": "Qwen/Qwen2-0.5B"}  # fmt: skip
    (model / "config.json").write_text(json.dumps(config))
    _shard(model / "model-00001-of-00002.safetensors", [10, 10])
    _shard(model / "model-00002-of-00002.safetensors", [5])
    (model / "README.md").write_text("---\nlicense: apache-2.0\ntags: [x]\n---\n# Qwen\n")
    (model / "tokenizer.json").write_text("{}")
    names = sorted(p.name for p in model.iterdir())
    found = read_dir(model, names, ReadMeter())
    assert found is not None
    assert found.model_file == "model-00001-of-00002.safetensors"
    assert found.header.name == "Qwen/Qwen2-0.5B"
    assert found.header.metadata == {
        "architecture": "Qwen2ForCausalLM", "context_length": 32768, "format": "safetensors",
        "parameter_count": 105, "dtypes": ["BF16"], "quantization": "BF16",
        "license": "apache-2.0",
    }  # fmt: skip


def test_hf_directory_context_from_text_config_and_gguf_weights(tmp_path: Path) -> None:
    model = tmp_path / "vlm"
    model.mkdir()
    config = {"model_type": "llava", "text_config": {"n_positions": 2048}}
    (model / "config.json").write_text(json.dumps(config))
    _small_gguf(model / "model.gguf")
    found = read_dir(model, ["config.json", "model.gguf"], ReadMeter())
    assert found is not None
    assert found.model_file == "model.gguf"
    assert found.header.model_type == "gguf"
    assert found.header.metadata["architecture"] == "llava"
    assert found.header.metadata["context_length"] == 2048
    assert found.header.metadata["parameter_count"] == 48


def test_directory_without_weights_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert read_dir(tmp_path, ["config.json", "notes.txt"], ReadMeter()) is None


def test_hf_directory_with_broken_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{nope")
    _shard(tmp_path / "model.safetensors", [2])
    with pytest.raises(FormatError) as caught:
        read_dir(tmp_path, ["config.json", "model.safetensors"], ReadMeter())
    assert str(caught.value) == (
        "config.json is not valid JSON (Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1))"
    )


# --- Core ML and TFLite (bytes per their specs) -------------------------------------------------


def _varint(value: int) -> bytes:
    out = b""
    while value > 0x7F:
        out += bytes([value & 0x7F | 0x80])
        value >>= 7
    return out + bytes([value])


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _mlmodel() -> bytes:
    metadata = _field(2, b"2.0") + _field(3, b"Ann") + _field(4, b"MIT")
    description = _field(1, b"input-feature") + _field(100, metadata)
    return _field(1, 4) + _field(2, description) + _field(500, b"\x0a\x00")


def test_coreml_mlmodel_spec_version_kind_license_and_apple_platforms(tmp_path: Path) -> None:
    path = tmp_path / "m.mlmodel"
    path.write_bytes(_mlmodel())
    found, _ = _read(path)
    assert found.platforms == ("macos-arm64", "ios-arm64")
    assert found.version == "2.0"
    assert found.metadata == {
        "format": "coreml", "coreml_spec_version": 4, "architecture": "neuralNetwork",
        "license": "MIT",
    }  # fmt: skip


def test_coreml_mlpackage_directory(tmp_path: Path) -> None:
    package = tmp_path / "Det.mlpackage"
    inner = package / "Data" / "com.apple.CoreML"
    inner.mkdir(parents=True)
    (inner / "model.mlmodel").write_bytes(_mlmodel())
    (inner / "weights").mkdir()
    (inner / "weights" / "weight.bin").write_bytes(b"\0" * 1000)
    manifest = {
        "fileFormatVersion": "1.0.0",
        "itemInfoEntries": {
            "A1": {"path": "com.apple.CoreML/model.mlmodel", "name": "model.mlmodel"}
        },
        "rootModelIdentifier": "A1",
    }
    (package / "Manifest.json").write_text(json.dumps(manifest))
    found = read_dir(package, ["Manifest.json"], ReadMeter())
    assert found is not None
    assert found.model_file == "Data/com.apple.CoreML/model.mlmodel"
    assert found.header.platforms == ("macos-arm64", "ios-arm64")


def test_coreml_mlpackage_whose_manifest_names_a_missing_file(tmp_path: Path) -> None:
    package = tmp_path / "X.mlpackage"
    package.mkdir()
    manifest = {"itemInfoEntries": {"A": {"path": "gone.mlmodel"}}, "rootModelIdentifier": "A"}
    (package / "Manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FormatError) as caught:
        read_dir(package, ["Manifest.json"], ReadMeter())
    assert str(caught.value) == (
        "Manifest.json names 'Data/gone.mlmodel' but the package has no such file"
    )


def _tflite(description: bytes) -> bytes:
    # root offset, identifier, vtable (size, table size, 4 field offsets), table, string.
    vtable = struct.pack("<HHHHHH", 12, 12, 4, 0, 0, 8)
    table_at, string_at = 20, 32
    table = struct.pack("<iII", table_at - 8, 3, string_at - (table_at + 8))
    string = struct.pack("<I", len(description)) + description + b"\0"
    return struct.pack("<I4s", table_at, b"TFL3") + vtable + table + string


def test_tflite_schema_version_and_description(tmp_path: Path) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(_tflite(b"TOCO Converted.") + b"\0" * 5000)
    found, _ = _read(path)
    assert found.metadata == {
        "format": "tflite", "tflite_schema_version": 3, "producer": "TOCO Converted.",
    }  # fmt: skip
    assert found.platforms == ("universal",)


def test_tflite_with_another_identifier(tmp_path: Path) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(struct.pack("<I4s", 8, b"ZZZZ") + b"\0" * 16)
    assert _error(path) == "not a TFLite model: file identifier is b'ZZZZ', expected b'TFL3'"


def test_unknown_suffix_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    assert read_file(path, ReadMeter()) is None


def test_gguf_nested_arrays_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "nested.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_array("custom.nested", [[1, 2], [3], ["a", "b"]])
    writer.add_tensor("w", np.ones((2, 3), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    found, _ = _read(path)
    assert found.metadata == {"format": "gguf", "architecture": "llama", "parameter_count": 6}


def test_safetensors_header_past_the_budget_is_a_model_without_details(tmp_path: Path) -> None:
    header = {f"t{i}": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
              for i in range(100)}  # fmt: skip
    path = _safetensors(tmp_path / "wide.safetensors", header, 400)
    found, meter = _read(path, budget=1024)
    assert found.metadata == {"format": "safetensors"}
    assert found.notes == ("header is larger than the 1024-byte read budget: metadata left out",)
    assert meter.largest <= 1024


def test_onnx_graph_past_the_budget_keeps_opset_and_leaves_out_the_count(tmp_path: Path) -> None:
    weights = [numpy_helper.from_array(np.ones(40_000, np.float32), f"W{i}") for i in range(20)]
    node = helper.make_node("Identity", ["X"], ["Y"])
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1])],
        initializer=weights,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "many.onnx"
    onnx.save(model, path)
    found, meter = _read(path, budget=128 * 1024)
    assert found.metadata["opset"] == 17
    assert "parameter_count" not in found.metadata
    assert found.notes == ("graph runs past the read budget: parameter_count left out",)
    assert meter.largest <= 128 * 1024


DEEP = b'{"a": ' * 100_000 + b"1" + b"}" * 100_000  # past the JSON parser's recursion limit
TOO_DEEP = "nests arrays or objects too deeply to read: a damaged or hostile file"


def test_a_deeply_nested_json_in_a_source_tree_is_named_not_a_recursion_error(
    tmp_path: Path,
) -> None:
    header = tmp_path / "deep.safetensors"
    header.write_bytes(struct.pack("<Q", len(DEEP)) + DEEP)
    assert _error(header) == f"header {TOO_DEEP}"
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_bytes(DEEP)
    _shard(hf / "model.safetensors", [2])
    package = tmp_path / "X.mlpackage"
    package.mkdir()
    (package / "Manifest.json").write_bytes(DEEP)
    for directory, names in [
        (hf, ["config.json", "model.safetensors"]),
        (package, ["Manifest.json"]),
    ]:
        with pytest.raises(FormatError) as caught:
            read_dir(directory, names, ReadMeter(budget=1 << 24))
        assert str(caught.value) == f"{names[0]} {TOO_DEEP}"
