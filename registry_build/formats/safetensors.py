"""safetensors header reader: u64 little-endian header length, then a JSON header.

The header maps each tensor name to ``{"dtype", "shape", "data_offsets"}``; the optional
``__metadata__`` maps strings to strings. Only the header is read.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

from registry_build.formats.header import FormatError, HeaderReader, json_object
from registry_build.formats.model import ModelHeader

_DTYPES = {"BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32",
           "F32", "F64", "I64", "U64", "F4", "F6_E2M3", "F6_E3M2", "E8M0", "F8_E8M0"}  # fmt: skip


def read_header(reader: HeaderReader) -> dict[str, Any]:
    """The parsed JSON header of a safetensors file."""
    (length,) = struct.unpack("<Q", reader.read(8))
    if length > reader.size - 8:
        raise FormatError(f"header length {length} is past the file end ({reader.size} bytes)")
    return json_object(reader.read(length), "header")


def tensor_stats(header: dict[str, Any]) -> tuple[int, list[str]]:
    """Parameter count and sorted dtypes of the tensors in ``header``."""
    total, dtypes = 0, set()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        dtype = info.get("dtype") if isinstance(info, dict) else None
        if dtype not in _DTYPES or not isinstance(shape, list):
            raise FormatError(f"tensor {name!r} has no valid dtype and shape: {info!r}")
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise FormatError(f"tensor {name!r} has a bad shape {shape!r}")
        total += math.prod(shape)
        dtypes.add(dtype)
    return total, sorted(dtypes)


def describe(header: dict[str, Any]) -> dict[str, Any]:
    """Metadata from a parsed header: format, parameter_count, dtypes and the header's own."""
    total, dtypes = tensor_stats(header)
    meta: dict[str, Any] = {"format": "safetensors", "parameter_count": total, "dtypes": dtypes}
    if len(dtypes) == 1:
        meta["quantization"] = dtypes[0]
    own = header.get("__metadata__")
    if isinstance(own, dict) and own:
        meta["safetensors_metadata"] = {k: v for k, v in own.items() if isinstance(v, str)}
        if isinstance(own.get("license"), str):
            meta["license"] = own["license"]
    return meta


def read_safetensors(path: Path, reader: HeaderReader) -> ModelHeader:
    """Describe the safetensors file at ``path`` from its header."""
    header = read_header(reader)
    own = header.get("__metadata__")
    name = own.get("name") if isinstance(own, dict) else None
    return ModelHeader(
        format="safetensors",
        model_type="safetensors",
        metadata=describe(header),
        name=name if isinstance(name, str) else None,
    )
