"""GGUF header reader: key/value metadata and tensor infos, parsed with ``struct``.

Layout (little-endian): ``b"GGUF"``, u32 version (2 or 3), u64 tensor count, u64 key/value count,
the key/value pairs, then per tensor: name, u32 n_dims, u64 dims, u32 ggml type, u64 offset.
Weights follow and are never read. Big tokenizer vocabularies can push the tensor infos past the
read budget; the reader then keeps the key/value metadata and leaves out the parameter count.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

from registry_build.formats.header import FormatError, HeaderReader, HeaderTooLarge
from registry_build.formats.model import ModelHeader

# general.file_type (llama.cpp's LlamaFileType) -> the quantization name people use.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M",
    30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}  # fmt: skip

_SCALARS: dict[int, str] = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
    12: "<d",
}  # fmt: skip
_STRING, _ARRAY = 8, 9
_MAX_DIMS = 8
_WANTED = {"general.architecture", "general.name", "general.file_type", "general.license",
           "general.version", "general.basename", "general.size_label"}  # fmt: skip


def _unpack(reader: HeaderReader, fmt: str) -> Any:
    return struct.unpack(fmt, reader.read(struct.calcsize(fmt)))[0]


def _string(reader: HeaderReader) -> str:
    length = _unpack(reader, "<Q")
    if length > reader.size:
        raise FormatError(f"string length {length} at offset {reader.pos - 8} is past the file end")
    try:
        return str(reader.read(length).decode("utf-8"))
    except UnicodeDecodeError:
        raise FormatError(f"string at offset {reader.pos - length} is not UTF-8") from None


def _skip_string(reader: HeaderReader) -> None:
    reader.skip(_unpack(reader, "<Q"))


def _skip_array(reader: HeaderReader) -> None:
    item, count = _unpack(reader, "<I"), _unpack(reader, "<Q")
    if item == _STRING:
        reader.skip_strings(count)
    elif item in _SCALARS:
        reader.skip(count * struct.calcsize(_SCALARS[item]))
    elif item == _ARRAY:
        for _ in range(count):
            _skip_array(reader)
    else:
        raise FormatError(f"array of unknown value type {item} at offset {reader.pos - 12}")


def _value(reader: HeaderReader, kind: int, keep: bool) -> Any:
    if kind in _SCALARS:
        return _unpack(reader, _SCALARS[kind])
    if kind == _STRING:
        return _string(reader) if keep else _skip_string(reader)
    if kind == _ARRAY:
        _skip_array(reader)
        return None
    raise FormatError(f"unknown value type {kind} at offset {reader.pos - 4}")


def _key_values(reader: HeaderReader, count: int, found: dict[str, Any]) -> None:
    for _ in range(count):
        key = _string(reader)
        kind = _unpack(reader, "<I")
        keep = key in _WANTED or key.endswith(".context_length")
        value = _value(reader, kind, keep)
        if keep:
            found[key] = value


def _parameter_count(reader: HeaderReader, count: int) -> int:
    total = 0
    for _ in range(count):
        _skip_string(reader)
        dims = _unpack(reader, "<I")
        if dims > _MAX_DIMS:
            raise FormatError(f"tensor with {dims} dimensions at offset {reader.pos - 4}")
        shape = struct.unpack(f"<{dims}Q", reader.read(8 * dims))
        reader.skip(12)  # ggml type (u32) and data offset (u64)
        total += math.prod(shape)
    return total


def _metadata(kv: dict[str, Any]) -> dict[str, Any]:
    arch = kv.get("general.architecture")
    meta: dict[str, Any] = {"format": "gguf"}
    if isinstance(arch, str):
        meta["architecture"] = arch
        context = kv.get(f"{arch}.context_length")
        if isinstance(context, int) and not isinstance(context, bool):
            meta["context_length"] = context
    file_type = kv.get("general.file_type")
    if isinstance(file_type, int) and file_type in FILE_TYPES:
        meta["quantization"] = FILE_TYPES[file_type]
    if isinstance(kv.get("general.license"), str):
        meta["license"] = kv["general.license"]
    return meta


def read_gguf(path: Path, reader: HeaderReader) -> ModelHeader:
    """Describe the GGUF file at ``path`` from its header."""
    if reader.read(4) != b"GGUF":
        raise FormatError("not a GGUF file: the first 4 bytes are not b'GGUF'")
    version, tensors, kv_count = struct.unpack("<IQQ", reader.read(20))
    if version not in (2, 3):
        raise FormatError(f"unsupported GGUF version {version} (supported: 2, 3)")
    if tensors * 24 > reader.size or kv_count * 13 > reader.size:
        raise FormatError(f"header claims {tensors} tensors and {kv_count} keys: more than fit")
    kv: dict[str, Any] = {}
    notes: list[str] = []
    try:
        _key_values(reader, kv_count, kv)
        parameters = _parameter_count(reader, tensors)
    except HeaderTooLarge:
        parameters = None
        notes.append("header runs past the read budget: parameter_count left out")
    meta = _metadata(kv)
    if parameters is not None:
        meta["parameter_count"] = parameters
    name = kv.get("general.name")
    version_text = kv.get("general.version")
    return ModelHeader(
        format="gguf",
        model_type="gguf",
        metadata=meta,
        name=name if isinstance(name, str) else None,
        version=version_text if isinstance(version_text, str) else None,
        notes=tuple(notes),
    )
