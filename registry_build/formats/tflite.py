"""TensorFlow Lite reader: a FlatBuffer whose file identifier (bytes 4-8) is ``TFL3``.

The root ``Model`` table starts at the u32 offset in bytes 0-4; its vtable gives the offsets of
field 0 (``version``, u32) and field 3 (``description``, string). Only those bytes are read.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from registry_build.formats.header import FormatError, HeaderReader
from registry_build.formats.model import ModelHeader


def _field_offset(reader: HeaderReader, table: int, field: int) -> int:
    reader.seek(table)
    (back,) = struct.unpack("<i", reader.read(4))
    vtable = table - back
    if not 0 <= vtable < reader.size:
        raise FormatError(f"vtable offset {vtable} is outside the file")
    reader.seek(vtable)
    size, _ = struct.unpack("<HH", reader.read(4))
    slot = 4 + 2 * field
    if slot + 2 > size:
        return 0
    reader.seek(vtable + slot)
    return int(struct.unpack("<H", reader.read(2))[0])


def _string(reader: HeaderReader, at: int) -> str:
    reader.seek(at)
    (relative,) = struct.unpack("<I", reader.read(4))
    reader.seek(at + relative)
    (length,) = struct.unpack("<I", reader.read(4))
    try:
        return reader.read(length).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"description at offset {at} is not UTF-8") from None


def read_tflite(path: Path, reader: HeaderReader) -> ModelHeader:
    """Describe the TFLite model at ``path`` from its FlatBuffer root table."""
    root, ident = struct.unpack("<I4s", reader.read(8))
    if ident != b"TFL3":
        raise FormatError(f"not a TFLite model: file identifier is {ident!r}, expected b'TFL3'")
    meta: dict[str, Any] = {"format": "tflite"}
    version_at = _field_offset(reader, root, 0)
    if version_at:
        reader.seek(root + version_at)
        meta["tflite_schema_version"] = struct.unpack("<I", reader.read(4))[0]
    description_at = _field_offset(reader, root, 3)
    description = _string(reader, root + description_at) if description_at else ""
    if description:
        meta["producer"] = description
    return ModelHeader(format="tflite", model_type="tflite", metadata=meta)
