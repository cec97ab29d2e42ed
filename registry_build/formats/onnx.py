"""ONNX header reader: the ModelProto fields we need, from the protobuf wire format.

The protobuf walker (:mod:`registry_build.formats.protobuf`) reads ``ModelProto``: ir_version 1,
producer_name 2, producer_version 3, graph 7, opset_import 8, metadata_props 14. Inside the
graph only the initializers' dims are read, for the parameter count; tensor data and everything
else are skipped, not read. No ``onnx`` package is needed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from registry_build.formats.header import FormatError, HeaderReader, HeaderTooLarge
from registry_build.formats.model import ModelHeader
from registry_build.formats.protobuf import LEN, VARINT, fields, text, varint

_RESERVE = 64 << 10


def _opset(reader: HeaderReader, stop: int) -> tuple[str, int]:
    domain, version = "", 0
    for number, wire, value in fields(reader, stop):
        if number == 1 and wire == LEN:
            domain = text(reader, value)
        elif number == 2 and wire == VARINT:
            version = value
    return domain, version


def _pair(reader: HeaderReader, stop: int) -> tuple[str, str]:
    key = value = ""
    for number, wire, end in fields(reader, stop):
        if wire == LEN and number in (1, 2):
            found = text(reader, end)
            key, value = (found, value) if number == 1 else (key, found)
    return key, value


def _initializer_size(reader: HeaderReader, stop: int) -> int:
    dims: list[int] = []
    for number, wire, value in fields(reader, stop):
        if number == 1 and wire == VARINT:
            dims.append(value)
        elif number == 1 and wire == LEN:  # packed dims
            while reader.pos < value:
                dims.append(varint(reader))
    return math.prod(dims)


def _graph_parameters(reader: HeaderReader, stop: int) -> int:
    total = 0
    for number, wire, end in fields(reader, stop):
        if number == 5 and wire == LEN:
            total += _initializer_size(reader, end)
    return total


def _model_fields(reader: HeaderReader, meta: dict[str, Any], notes: list[str]) -> None:
    producer, producer_version = "", ""
    for number, wire, value in fields(reader, reader.size):
        if number == 1 and wire == VARINT:
            meta["ir_version"] = value
        elif number in (2, 3) and wire == LEN:
            found = text(reader, value)
            producer, producer_version = (
                (found, producer_version) if number == 2 else (producer, found)
            )
        elif number == 7 and wire == LEN:
            _graph_into(reader, value, meta, notes)
        elif number == 8 and wire == LEN:
            domain, version = _opset(reader, value)
            if domain in ("", "ai.onnx"):
                meta["opset"] = version
        elif number == 14 and wire == LEN:
            key, found = _pair(reader, value)
            if key == "license":
                meta["license"] = found
    if producer:
        meta["producer"] = f"{producer} {producer_version}".strip()


def _graph_into(reader: HeaderReader, stop: int, meta: dict[str, Any], notes: list[str]) -> None:
    # The graph may not use the whole budget: opset_import and metadata_props come after it.
    full = reader.budget
    reader.budget = max(reader.bytes_read, full - _RESERVE)
    try:
        meta["parameter_count"] = _graph_parameters(reader, stop)
    except HeaderTooLarge:
        notes.append("graph runs past the read budget: parameter_count left out")
    finally:
        reader.budget = full


def read_onnx(path: Path, reader: HeaderReader) -> ModelHeader:
    """Describe the ONNX model at ``path`` from its ModelProto fields."""
    meta: dict[str, Any] = {"format": "onnx"}
    notes: list[str] = []
    _model_fields(reader, meta, notes)
    if "ir_version" not in meta or "opset" not in meta:
        raise FormatError("not an ONNX model: no ir_version or default-domain opset_import")
    return ModelHeader(format="onnx", model_type="onnx", metadata=meta, notes=tuple(notes))
