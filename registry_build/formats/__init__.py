"""Format readers: describe a model from its own headers, reading at most 1 MiB per file.

One module per format, each parsing the header by hand (no heavy packages at run time)::

    formats/
      header.py       HeaderReader (bounded, counted reads), ReadMeter, FormatError
      protobuf.py     minimal protobuf wire walker (ONNX, Core ML)
      gguf.py         *.gguf         key/value metadata, tensor infos
      safetensors.py  *.safetensors  JSON header: dtypes, shapes, __metadata__
      onnx.py         *.onnx         ir_version, producer, opset, initializer dims
      coreml.py       *.mlmodel, *.mlpackage/
      tflite.py       *.tflite       FlatBuffer "TFL3": schema version, description
      hf.py           DIR/config.json + weights: a multi-file model directory

:func:`read_file` describes one model file by its suffix; :func:`read_dir` describes a model
directory (``.mlpackage`` or Hugging Face style) or returns None for an ordinary directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from registry_build.formats import coreml, hf
from registry_build.formats.gguf import read_gguf
from registry_build.formats.header import (
    READ_BUDGET,
    FormatError,
    HeaderReader,
    HeaderTooLarge,
    ReadMeter,
)
from registry_build.formats.model import ModelHeader
from registry_build.formats.onnx import read_onnx
from registry_build.formats.safetensors import read_safetensors
from registry_build.formats.tflite import read_tflite

__all__ = [
    "FILE_READERS",
    "READ_BUDGET",
    "FormatError",
    "HeaderTooLarge",
    "ModelDir",
    "ModelHeader",
    "ReadMeter",
    "read_dir",
    "read_file",
]

FileReader = Callable[[Path, HeaderReader], ModelHeader]
FILE_READERS: dict[str, tuple[str, FileReader]] = {
    ".gguf": ("gguf", read_gguf),
    ".safetensors": ("safetensors", read_safetensors),
    ".onnx": ("onnx", read_onnx),
    ".mlmodel": ("coreml", coreml.read_mlmodel),
    ".tflite": ("tflite", read_tflite),
}


@dataclass(frozen=True)
class ModelDir:
    """A directory that is one model: its main file (``model_file``) and its description."""

    model_file: str
    header: ModelHeader


def read_file(path: Path, meter: ReadMeter) -> ModelHeader | None:
    """Describe the model file at ``path``, or None when its suffix is not a model format.

    Raises FormatError (naming what is wrong) when the header is damaged. A header that runs
    past the read budget still gives a model, with what was read and a note.
    """
    entry = FILE_READERS.get(path.suffix.lower())
    if entry is None:
        return None
    fmt, reader_fn = entry
    with meter.open(path) as reader:
        try:
            return reader_fn(path, reader)
        except HeaderTooLarge as exc:
            return ModelHeader(fmt, fmt, {"format": fmt}, notes=(f"{exc}: metadata left out",))


def read_dir(directory: Path, names: list[str], meter: ReadMeter) -> ModelDir | None:
    """Describe ``directory`` (whose file names are ``names``) if it is one model, else None."""
    if directory.suffix.lower() == ".mlpackage":
        inner, header = coreml.read_mlpackage(directory, meter)
        return ModelDir(inner, header)
    if not hf.is_model_dir(names):
        return None
    main = hf.main_file(names)
    header = hf.read_model_dir(directory, names, meter)
    if "parameter_count" not in header.metadata and main.endswith(tuple(FILE_READERS)):
        # A single non-safetensors weight file (GGUF, ONNX) describes itself.
        weights = read_file(directory / main, meter)
        if weights is not None:
            metadata = weights.metadata | header.metadata | {"format": weights.format}
            notes = header.notes + weights.notes
            header = replace(header, model_type=weights.model_type, metadata=metadata, notes=notes)
    return ModelDir(main, header)
