"""Core ML reader: ``.mlmodel`` protobuf files and ``.mlpackage`` directories.

An ``.mlmodel`` is a ``CoreML.Specification.Model`` message: specificationVersion (1),
description (2; its metadata (100) carries versionString (2), author (3), license (4)), then the
model itself as one field of a oneof (neuralNetwork 500, mlProgram 502, ...). An ``.mlpackage``
is a directory whose ``Manifest.json`` names the root model file::

    Name.mlpackage/
      Manifest.json                              {"rootModelIdentifier": ID,
                                                  "itemInfoEntries": {ID: {"path": ...}}}
      Data/com.apple.CoreML/model.mlmodel        the specification
      Data/com.apple.CoreML/weights/weight.bin   weights (mlProgram), never read

Core ML runs on Apple platforms only: macos-arm64 and ios-arm64.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry_build.formats.header import FormatError, HeaderReader, ReadMeter, json_object
from registry_build.formats.model import ModelHeader
from registry_build.formats.protobuf import LEN, VARINT, fields, text

PLATFORMS = ("macos-arm64", "ios-arm64")
MODEL_KINDS = {
    200: "pipelineClassifier", 201: "pipelineRegressor", 202: "pipeline", 300: "glmRegressor",
    301: "supportVectorRegressor", 302: "treeEnsembleRegressor", 303: "neuralNetworkRegressor",
    400: "glmClassifier", 401: "supportVectorClassifier", 402: "treeEnsembleClassifier",
    403: "neuralNetworkClassifier", 404: "kNearestNeighborsClassifier", 500: "neuralNetwork",
    502: "mlProgram",
}  # fmt: skip
_METADATA_KEYS = {2: "version", 3: "author", 4: "license"}


def _metadata(reader: HeaderReader, stop: int, found: dict[str, str]) -> None:
    for number, wire, end in fields(reader, stop):
        if wire == LEN and number in _METADATA_KEYS:
            found[_METADATA_KEYS[number]] = text(reader, end)


def _description(reader: HeaderReader, stop: int, found: dict[str, str]) -> None:
    for number, wire, end in fields(reader, stop):
        if number == 100 and wire == LEN:
            _metadata(reader, end, found)


def read_mlmodel(path: Path, reader: HeaderReader) -> ModelHeader:
    """Describe the Core ML specification at ``path`` (an ``.mlmodel`` file)."""
    meta: dict[str, Any] = {"format": "coreml"}
    found: dict[str, str] = {}
    for number, wire, value in fields(reader, reader.size):
        if number == 1 and wire == VARINT:
            meta["coreml_spec_version"] = value
        elif number == 2 and wire == LEN:
            _description(reader, value, found)
        elif number in MODEL_KINDS and wire == LEN:
            meta["architecture"] = MODEL_KINDS[number]
    if "coreml_spec_version" not in meta:
        raise FormatError("not a Core ML model: no specificationVersion field")
    if found.get("license"):
        meta["license"] = found["license"]
    return ModelHeader(
        format="coreml",
        model_type="coreml",
        metadata=meta,
        version=found.get("version") or None,
        platforms=PLATFORMS,
    )


def root_model(package: Path, meter: ReadMeter) -> str:
    """The root model's path inside an ``.mlpackage``, from its ``Manifest.json``."""
    with meter.open(package / "Manifest.json") as reader:
        raw = reader.read(reader.size)
    manifest = json_object(raw, "Manifest.json")
    try:
        entry = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]
        return f"Data/{entry['path']}"
    except (ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"Manifest.json does not name the root model ({exc!r})") from None


def read_mlpackage(package: Path, meter: ReadMeter) -> tuple[str, ModelHeader]:
    """(root model path inside the package, description) of an ``.mlpackage`` directory."""
    if not (package / "Manifest.json").is_file():
        raise FormatError("not a Core ML package: no Manifest.json")
    inner = root_model(package, meter)
    try:
        with meter.open(package / inner) as reader:
            return inner, read_mlmodel(package / inner, reader)
    except FileNotFoundError:
        raise FormatError(
            f"Manifest.json names {inner!r} but the package has no such file"
        ) from None
