"""Hugging Face style model directories: ``config.json`` next to weight files.

The directory becomes one multi-file ``source_dir`` target. ``config.json`` gives the
architecture and context length; safetensors weights (one file or shards) give the parameter
count and dtypes from their headers; a README's YAML front matter may give the license::

    tiny-bert/
      config.json            {"architectures": ["BertModel"], "max_position_embeddings": 512, ...}
      model.safetensors      or model-00001-of-00002.safetensors, ...
      tokenizer.json         (any other files travel with the model)
      model_metadata.json    optional: model_id, version, description, files
      README.md              optional: "license: mit" in its front matter
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from registry_build.formats import safetensors
from registry_build.formats.header import FormatError, HeaderTooLarge, ReadMeter, json_object
from registry_build.formats.model import ModelHeader

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".gguf", ".h5", ".msgpack", ".pt", ".pth")
_PREFERRED = ("model.safetensors", "pytorch_model.bin", "model.onnx", "tf_model.h5")
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length",
                 "seq_length", "max_seq_len")  # fmt: skip
_LICENSE_RE = re.compile(r"^license:\s*['\"]?([^'\"\s]+)", re.MULTILINE)
_FRONT_MATTER_BYTES = 16 << 10


def weight_files(names: list[str]) -> list[str]:
    """The weight files among ``names`` (one directory's file names), sorted."""
    return sorted(n for n in names if n.endswith(WEIGHT_SUFFIXES) and not n.startswith("."))


def is_model_dir(names: list[str]) -> bool:
    """True when a directory with these file names is a Hugging Face style model."""
    return "config.json" in names and bool(weight_files(names))


def main_file(names: list[str]) -> str:
    """The file to name as ``model_file``: the usual single weight file, else the first."""
    weights = weight_files(names)
    preferred = [n for n in _PREFERRED if n in weights]
    return preferred[0] if preferred else weights[0]


def read_json(path: Path, meter: ReadMeter) -> dict[str, Any]:
    """The JSON object in the small file ``path``, read within the meter's budget."""
    with meter.open(path) as reader:
        raw = reader.read(reader.size)
    return json_object(raw, path.name)


def _config_metadata(config: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    architectures = config.get("architectures")
    if isinstance(architectures, list) and architectures and isinstance(architectures[0], str):
        meta["architecture"] = architectures[0]
    elif isinstance(config.get("model_type"), str):
        meta["architecture"] = config["model_type"]
    for section in (config, config.get("text_config")):
        if not isinstance(section, dict):
            continue
        for key in _CONTEXT_KEYS:
            value = section.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                meta.setdefault("context_length", value)
    return meta


def _weights_metadata(directory: Path, names: list[str], meter: ReadMeter) -> dict[str, Any]:
    shards = [n for n in weight_files(names) if n.endswith(".safetensors")]
    total, dtypes = 0, set()
    for name in shards:
        with meter.open(directory / name) as reader:
            try:
                count, kinds = safetensors.tensor_stats(safetensors.read_header(reader))
            except FormatError as exc:
                raise FormatError(f"{name}: {exc}") from None
        total += count
        dtypes.update(kinds)
    if not shards:
        return {"format": Path(main_file(names)).suffix.lstrip(".")}
    meta: dict[str, Any] = {"format": "safetensors", "parameter_count": total}
    meta["dtypes"] = sorted(dtypes)
    if len(dtypes) == 1:
        meta["quantization"] = next(iter(dtypes))
    return meta


def _readme_license(directory: Path, meter: ReadMeter) -> str | None:
    readme = directory / "README.md"
    if not readme.is_file():
        return None
    with meter.open(readme) as reader:
        head = reader.read(min(reader.size, _FRONT_MATTER_BYTES)).decode("utf-8", "replace")
    if not head.startswith("---"):
        return None
    front = head[3:].split("\n---", 1)[0]
    match = _LICENSE_RE.search(front)
    return match.group(1) if match else None


def read_model_dir(directory: Path, names: list[str], meter: ReadMeter) -> ModelHeader:
    """Describe the Hugging Face style model directory ``directory`` (file ``names``)."""
    config = read_json(directory / "config.json", meter)
    meta = _config_metadata(config)
    try:
        meta |= _weights_metadata(directory, names, meter)
    except HeaderTooLarge as exc:
        meta["format"] = "safetensors"
        notes: tuple[str, ...] = (f"weights header: {exc}: parameter_count left out",)
    else:
        notes = ()
    license_name = _readme_license(directory, meter)
    if license_name:
        meta["license"] = license_name
    name = config.get("_name_or_path")
    return ModelHeader(
        format="huggingface",
        model_type=str(meta["format"]),
        metadata=meta,
        name=name if isinstance(name, str) and name else None,
        notes=notes,
    )
