"""Generate the demo model sources under ``examples/`` that the repository's ``bundles.json`` uses.

Small but real files in their own formats, written by hand-rolled writers (standard library only)
so the bytes are the same on every machine and run::

    examples/
      tiny-llama.gguf            GGUF v3, llama architecture, F32 weights, header metadata
      tiny-mlp.safetensors       safetensors, F32 two-layer MLP with __metadata__
      tiny-linear.onnx           ONNX, IR 8 / opset 17, MatMul + Add with initializers
      tiny-classifier.mlmodel    Core ML spec v4 neural network, one inner product layer
      tiny-bert/                 Hugging Face style directory (multi-file source_dir)
        config.json              BertModel config, hidden 8, 1 layer
        tokenizer.json           WordPiece tokenizer (tokenizers JSON format)
        model.safetensors        weights matching config.json
        model_metadata.json      lists the files that go into the bundle ("files")
        README.md                not listed in model_metadata.json, so not bundled

Run ``python examples/make_examples.py`` (optionally with an output directory) to regenerate.
The weights are a fixed arithmetic pattern, exactly representable in float32.
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Iterable
from pathlib import Path

Shape = tuple[int, ...]


def _values(count: int, seed: int) -> list[float]:
    # Multiples of 1/64 with small numerators: exact in float32, identical everywhere.
    return [(((i + seed) * 37) % 101 - 50) / 64.0 for i in range(count)]


def _f32(values: Iterable[float]) -> bytes:
    data = list(values)
    return struct.pack(f"<{len(data)}f", *data)


def _count(shape: Shape) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


# --- GGUF -----------------------------------------------------------------------------------

_GGUF_ALIGNMENT = 32
_GGUF_U32, _GGUF_STRING, _GGUF_ARRAY = 4, 8, 9
_GGML_F32 = 0
_FILE_TYPE_ALL_F32 = 0


def _gguf_str(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _gguf_kv(key: str, value: str | int | list[str]) -> bytes:
    if isinstance(value, str):
        return _gguf_str(key) + struct.pack("<I", _GGUF_STRING) + _gguf_str(value)
    if isinstance(value, int):
        return _gguf_str(key) + struct.pack("<II", _GGUF_U32, value)
    items = b"".join(_gguf_str(v) for v in value)
    head = struct.pack("<IIQ", _GGUF_ARRAY, _GGUF_STRING, len(value))
    return _gguf_str(key) + head + items


def _pad(data: bytes, alignment: int) -> bytes:
    return data + b"\0" * (-len(data) % alignment)


def gguf_bytes(kv: dict[str, str | int | list[str]], tensors: dict[str, Shape]) -> bytes:
    """A GGUF v3 file with ``kv`` metadata and F32 ``tensors`` (GGML order: fastest dim first)."""
    infos, blobs, offset = b"", b"", 0
    for seed, (name, shape) in enumerate(tensors.items()):
        infos += _gguf_str(name) + struct.pack("<I", len(shape))
        infos += struct.pack(f"<{len(shape)}Q", *shape) + struct.pack("<IQ", _GGML_F32, offset)
        blob = _pad(_f32(_values(_count(shape), seed)), _GGUF_ALIGNMENT)
        blobs += blob
        offset += len(blob)
    header = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    header += b"".join(_gguf_kv(k, v) for k, v in kv.items()) + infos
    return _pad(header, _GGUF_ALIGNMENT) + blobs


def tiny_llama() -> bytes:
    """A one-layer llama-architecture GGUF with a 16-token vocabulary and 8-wide embeddings."""
    vocab = ["<unk>", "<s>", "</s>", *[f"tok{i}" for i in range(13)]]
    kv: dict[str, str | int | list[str]] = {
        "general.architecture": "llama",
        "general.name": "tiny-llama",
        "general.license": "mit",
        "general.file_type": _FILE_TYPE_ALL_F32,
        "llama.context_length": 128,
        "llama.embedding_length": 8,
        "llama.block_count": 1,
        "llama.feed_forward_length": 16,
        "llama.attention.head_count": 2,
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": vocab,
    }
    tensors: dict[str, Shape] = {
        "token_embd.weight": (8, 16),
        "blk.0.attn_norm.weight": (8,),
        "blk.0.attn_q.weight": (8, 8),
        "blk.0.attn_k.weight": (8, 8),
        "blk.0.attn_v.weight": (8, 8),
        "blk.0.attn_output.weight": (8, 8),
        "blk.0.ffn_norm.weight": (8,),
        "blk.0.ffn_gate.weight": (8, 16),
        "blk.0.ffn_up.weight": (8, 16),
        "blk.0.ffn_down.weight": (16, 8),
        "output_norm.weight": (8,),
        "output.weight": (8, 16),
    }
    return gguf_bytes(kv, tensors)


# --- safetensors ----------------------------------------------------------------------------


def safetensors_bytes(tensors: dict[str, Shape], metadata: dict[str, str]) -> bytes:
    """A safetensors file of F32 ``tensors`` (row-major shapes) with ``__metadata__``."""
    header: dict[str, object] = {"__metadata__": metadata}
    data, offset = b"", 0
    for seed, (name, shape) in enumerate(tensors.items()):
        blob = _f32(_values(_count(shape), seed))
        span = [offset, offset + len(blob)]
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": span}
        data += blob
        offset += len(blob)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def tiny_mlp() -> bytes:
    """A two-layer perceptron, 4 -> 8 -> 2."""
    tensors: dict[str, Shape] = {
        "fc1.weight": (8, 4),
        "fc1.bias": (8,),
        "fc2.weight": (2, 8),
        "fc2.bias": (2,),
    }
    return safetensors_bytes(tensors, {"format": "pt", "license": "mit"})


# --- ONNX (protobuf by hand) ----------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _pb_int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _pb_bytes(field: int, value: bytes | str) -> bytes:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return _varint(field << 3 | 2) + _varint(len(raw)) + raw


_ONNX_FLOAT = 1


def _onnx_tensor(name: str, shape: Shape, seed: int) -> bytes:
    dims = b"".join(_pb_int(1, d) for d in shape)
    raw = _f32(_values(_count(shape), seed))
    return dims + _pb_int(2, _ONNX_FLOAT) + _pb_bytes(8, name) + _pb_bytes(9, raw)


def _onnx_value_info(name: str, shape: Shape) -> bytes:
    dims = b"".join(_pb_bytes(1, _pb_int(1, d)) for d in shape)
    tensor_type = _pb_int(1, _ONNX_FLOAT) + _pb_bytes(2, dims)
    return _pb_bytes(1, name) + _pb_bytes(2, _pb_bytes(1, tensor_type))


def _onnx_node(op: str, inputs: list[str], output: str) -> bytes:
    parts = b"".join(_pb_bytes(1, i) for i in inputs) + _pb_bytes(2, output)
    return parts + _pb_bytes(3, f"{op.lower()}0") + _pb_bytes(4, op)


def tiny_linear() -> bytes:
    """``Y = X @ W + B`` with X 1x4, W 4x3, B 3: IR version 8, default-domain opset 17."""
    graph = _pb_bytes(1, _onnx_node("MatMul", ["X", "W"], "XW"))
    graph += _pb_bytes(1, _onnx_node("Add", ["XW", "B"], "Y"))
    graph += _pb_bytes(2, "tiny-linear")
    graph += _pb_bytes(5, _onnx_tensor("W", (4, 3), 0)) + _pb_bytes(5, _onnx_tensor("B", (3,), 1))
    graph += _pb_bytes(11, _onnx_value_info("X", (1, 4)))
    graph += _pb_bytes(12, _onnx_value_info("Y", (1, 3)))
    model = _pb_int(1, 8) + _pb_bytes(2, "bundle-registry-examples") + _pb_bytes(3, "1.0")
    model += _pb_int(5, 1) + _pb_bytes(7, graph) + _pb_bytes(8, _pb_bytes(1, "") + _pb_int(2, 17))
    model += _pb_bytes(14, _pb_bytes(1, "license") + _pb_bytes(2, "mit"))
    return model


# --- Core ML (protobuf by hand) -------------------------------------------------------------

_COREML_FLOAT32 = 65568


def _coreml_array(name: str, size: int) -> bytes:
    array = _pb_int(1, size) + _pb_int(2, _COREML_FLOAT32)  # shape [size], FLOAT32
    return _pb_bytes(1, name) + _pb_bytes(3, _pb_bytes(5, array))


def tiny_coreml() -> bytes:
    """A spec-version-4 neural network: one inner product, 4 inputs -> 2 outputs, with bias."""
    metadata = _pb_bytes(1, "Linear 4 -> 2 demo model") + _pb_bytes(2, "1.0")
    metadata += _pb_bytes(3, "bundle-registry examples") + _pb_bytes(4, "mit")
    description = _pb_bytes(1, _coreml_array("x", 4)) + _pb_bytes(10, _coreml_array("y", 2))
    description += _pb_bytes(100, metadata)
    params = _pb_int(1, 4) + _pb_int(2, 2) + _pb_int(10, 1)  # in, out, hasBias
    params += _pb_bytes(20, _pb_bytes(1, _f32(_values(8, 0))))  # packed floatValue
    params += _pb_bytes(21, _pb_bytes(1, _f32(_values(2, 1))))
    layer = _pb_bytes(1, "dense") + _pb_bytes(2, "x") + _pb_bytes(3, "y") + _pb_bytes(140, params)
    return _pb_int(1, 4) + _pb_bytes(2, description) + _pb_bytes(500, _pb_bytes(1, layer))


# --- Hugging Face style directory -----------------------------------------------------------

_BERT_CONFIG = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "vocab_size": 32,
    "hidden_size": 8,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 16,
    "hidden_act": "gelu",
    "max_position_embeddings": 16,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "torch_dtype": "float32",
}


def _bert_tensors() -> dict[str, Shape]:
    h, inner = 8, 16
    tensors: dict[str, Shape] = {
        "embeddings.word_embeddings.weight": (32, h),
        "embeddings.position_embeddings.weight": (16, h),
        "embeddings.token_type_embeddings.weight": (2, h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
    }
    layer = "encoder.layer.0."
    for part in ("attention.self.query", "attention.self.key", "attention.self.value"):
        tensors |= {f"{layer}{part}.weight": (h, h), f"{layer}{part}.bias": (h,)}
    tensors |= {
        f"{layer}attention.output.dense.weight": (h, h),
        f"{layer}attention.output.dense.bias": (h,),
        f"{layer}attention.output.LayerNorm.weight": (h,),
        f"{layer}attention.output.LayerNorm.bias": (h,),
        f"{layer}intermediate.dense.weight": (inner, h),
        f"{layer}intermediate.dense.bias": (inner,),
        f"{layer}output.dense.weight": (h, inner),
        f"{layer}output.dense.bias": (h,),
        f"{layer}output.LayerNorm.weight": (h,),
        f"{layer}output.LayerNorm.bias": (h,),
        "pooler.dense.weight": (h, h),
        "pooler.dense.bias": (h,),
    }
    return tensors


_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORDS = ["the", "a", "model", "bundle", "registry", "run", "fast", "small", "tiny", "bert"]
_PIECES = ["##s", "##ed", "##ing", "##er", "##ly", "##y", "##e", "##a"]
_CHARS = ["b", "e", "i", "l", "m", "n", "o", "r", "s"]


def _tokenizer() -> dict[str, object]:
    vocab = {token: i for i, token in enumerate(_SPECIAL + _WORDS + _PIECES + _CHARS)}
    added = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, t in enumerate(_SPECIAL)
    ]  # fmt: skip
    cls, sep = ["[CLS]", vocab["[CLS]"]], ["[SEP]", vocab["[SEP]"]]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": sep, "cls": cls},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    }  # fmt: skip


_BERT_METADATA = {
    "model_id": "tiny-bert",
    "version": "0.1.0",
    "description": "A one-layer, 8-wide BERT encoder: a runnable demo of a multi-file bundle.",
    "files": ["config.json", "tokenizer.json", "model.safetensors"],
}

_BERT_README = """# tiny-bert

A one-layer BERT encoder with a 32-token WordPiece vocabulary, generated by
`examples/make_examples.py`. Only the files listed in `model_metadata.json` go into the bundle;
this README stays out.
"""


def _json(doc: object) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def tiny_bert() -> dict[str, bytes]:
    """The files of the ``tiny-bert`` directory, by name."""
    return {
        "config.json": _json(_BERT_CONFIG),
        "tokenizer.json": _json(_tokenizer()),
        "model.safetensors": safetensors_bytes(_bert_tensors(), {"format": "pt"}),
        "model_metadata.json": _json(_BERT_METADATA),
        "README.md": _BERT_README.encode("utf-8"),
    }


def example_files() -> dict[str, bytes]:
    """Every generated file, by path relative to ``examples/``."""
    files = {
        "tiny-llama.gguf": tiny_llama(),
        "tiny-mlp.safetensors": tiny_mlp(),
        "tiny-linear.onnx": tiny_linear(),
        "tiny-classifier.mlmodel": tiny_coreml(),
    }
    files |= {f"tiny-bert/{name}": data for name, data in tiny_bert().items()}
    return files


def write_examples(out: Path) -> list[Path]:
    """Write every example under ``out``, rewriting a file only when its bytes differ."""
    written = []
    for rel, data in example_files().items():
        path = out / rel
        if path.is_file() and path.read_bytes() == data:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    """Generate into ``argv[0]`` or next to this script."""
    out = Path(argv[0]) if argv else Path(__file__).resolve().parent
    for path in write_examples(out):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
