"""Discover models in a directory tree and describe them as a ``bundles.json`` document.

The pipeline: :func:`scan` walks the tree and reads each model's headers (never its weights, at
most :data:`~registry_build.formats.READ_BUDGET` bytes per file); :func:`propose` turns what it
found into a document in Xybrid's schema with our ``metadata``; :func:`merge` folds that into an
existing document without overwriting anything a person wrote. :func:`discover` runs them in
order and writes the result atomically.

Model ids and versions come from the path, then the headers::

    models/whisper-tiny/1.2/model.gguf     -> whisper-tiny @ 1.2   (version directory, generic stem)
    llama-3.2-1b-q4_k_m.gguf               -> llama-3.2-1b-q4_k_m @ 1.0
    tiny-bert/ (config.json + weights)     -> model_metadata.json's model_id/version, else tiny-bert
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry_build.formats import (
    READ_BUDGET,
    FormatError,
    ModelHeader,
    ReadMeter,
    read_dir,
    read_file,
)
from registry_build.formats.hf import read_json, weight_files
from runtime.documents import parse_json
from runtime.errors import ConfigError, RegistryError
from runtime.names import is_name
from runtime.storage.atomic import write_atomic

DEFAULT_VERSION = "1.0"
METADATA_FILE = "model_metadata.json"
_GENERIC_STEMS = {
    "model", "weights", "ggml-model", "pytorch_model", "tf_model", "flax_model", "model_quantized",
    "model_fp16", "model_int8", "model_q4", "saved_model", "onnx", "coreml", "tflite",
}  # fmt: skip
_SHARD_RE = re.compile(r"^model-\d+-of-\d+$")
_VERSION_RE = re.compile(r"^[vV]?(\d+(?:[._-][A-Za-z0-9]+)*)$")


class DiscoverError(RegistryError, ValueError):
    """Raised when discover's input or output is unusable: DIR is not a directory, the --merge
    file is not a bundles document, or --write would replace an existing file."""


@dataclass
class Stats:
    """What a discover run did; ``errors`` has one line per damaged file (path: problem)."""

    scanned: int = 0
    found: int = 0
    added: int = 0
    updated: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files_read: int = 0
    bytes_read: int = 0
    max_bytes_per_file: int = 0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "scanned": self.scanned, "found": self.found, "added": self.added,
            "updated": self.updated, "errors": len(self.errors), "error_lines": self.errors,
            "notes": self.notes, "files_read": self.files_read, "bytes_read": self.bytes_read,
            "max_bytes_per_file": self.max_bytes_per_file,
        }  # fmt: skip


@dataclass(frozen=True)
class Found:
    """One model found: a file (``source_path``) or a directory (``source_dir``)."""

    path: Path
    is_dir: bool
    model_file: str
    header: ModelHeader
    model_id: str
    version: str
    description: str | None = None
    metadata_file: Path | None = None


@dataclass(frozen=True)
class Scan:
    """Everything :func:`scan` found, in walk order, and its stats."""

    root: Path
    models: tuple[Found, ...]
    stats: Stats


# --- naming -------------------------------------------------------------------------------------


def sanitize(text: str) -> str:
    """``text`` made into a valid name: lower case, runs of other characters become ``-``."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.strip().lower())
    name = re.sub(r"[._-]{2,}", lambda m: "." if set(m.group()) == {"."} else "-", name)
    name = re.sub(r"^[^a-z0-9]+|[^a-z0-9]+$", "", name[:128])
    return name if is_name(name) else ""


def _version_of(part: str) -> str | None:
    match = _VERSION_RE.match(part)
    return match.group(1) if match and is_name(match.group(1)) else None


def _is_generic(stem: str) -> bool:
    return stem.lower() in _GENERIC_STEMS or bool(_SHARD_RE.match(stem.lower()))


def _stem(name: str, is_dir: bool) -> str:
    # A model directory keeps its whole name ("llama-3.2"), a file or package loses its suffix.
    return Path(name).stem if not is_dir or name.lower().endswith(".mlpackage") else name


def identify(root: Path, path: Path, is_dir: bool, header: ModelHeader) -> tuple[str, str]:
    """(model id, version) of the model at ``path`` from its path, then its header."""
    parts = list(path.relative_to(root).parts) if path != root else [root.resolve().name]
    stem, parents = _stem(parts[-1], is_dir), parts[:-1]
    version = None
    if parents and _version_of(stem):  # models/whisper-tiny/1.2/ or models/whisper-tiny/1.2.gguf
        version, stem = _version_of(stem), parents.pop()
    elif parents and _version_of(parents[-1]):  # models/whisper-tiny/1.2/model.gguf
        version = _version_of(parents.pop())
        if _is_generic(stem) and parents:
            stem = parents.pop()
    if _is_generic(stem):
        stem = parents[-1] if parents else (header.name or root.resolve().name)
    model_id = sanitize(stem) or sanitize(header.name or "") or "model"
    return model_id, version or sanitize(header.version or "") or DEFAULT_VERSION


# --- walking ------------------------------------------------------------------------------------


def _metadata_file(directory: Path, meter: ReadMeter) -> tuple[Path | None, dict[str, Any]]:
    path = directory / METADATA_FILE
    if not path.is_file():
        return None, {}
    return path, read_json(path, meter)


def _listed_model_file(model_file: str, listed: object) -> str:
    # Only listed files go into the bundle, so model_file must be one of them.
    if not isinstance(listed, list) or not listed or model_file in listed:
        return model_file
    names = [n for n in listed if isinstance(n, str)]
    weights = weight_files(names)
    return weights[0] if weights else (names[0] if names else model_file)


def _found(
    root: Path, path: Path, is_dir: bool, model_file: str, header: ModelHeader, meter: ReadMeter
) -> Found:
    model_id, version = identify(root, path, is_dir, header)
    meta_path, meta = _metadata_file(path, meter) if is_dir else (None, {})
    own_id, own_version = meta.get("model_id"), meta.get("version")
    description = meta.get("description")
    return Found(
        path=path,
        is_dir=is_dir,
        model_file=_listed_model_file(model_file, meta.get("files")),
        header=header,
        model_id=own_id if isinstance(own_id, str) and is_name(own_id) else model_id,
        version=own_version if isinstance(own_version, str) and is_name(own_version) else version,
        description=description if isinstance(description, str) and description else None,
        metadata_file=meta_path,
    )


class _Walker:
    """Depth-first, sorted walk; a model directory is taken whole and not entered.

    Hidden names (``.git``) are skipped and symlinked directories are not followed (no loops).
    """

    def __init__(self, root: Path, meter: ReadMeter, stats: Stats) -> None:
        self.root = root
        self.meter = meter
        self.stats = stats
        self.models: list[Found] = []

    def fail(self, path: Path, problem: object) -> None:
        rel = path.relative_to(self.root).as_posix() if path != self.root else path.name
        self.stats.errors.append(f"{rel}: {problem}")

    def walk(self, directory: Path) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            self.fail(directory, f"cannot be listed ({exc.strerror})")
            return
        files = [e.name for e in entries if e.is_file() and not e.name.startswith(".")]
        if self.model_dir(directory, files):
            return
        for name in files:
            self.stats.scanned += 1
            self.model_file(directory / name)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                self.walk(Path(entry.path))

    def model_dir(self, directory: Path, files: list[str]) -> bool:
        try:
            found = read_dir(directory, files, self.meter)
        except (FormatError, OSError) as exc:
            self.stats.scanned += len(files)
            self.fail(directory, exc)
            return True
        if found is None:
            return False
        self.stats.scanned += sum(len(f) for _, _, f in os.walk(directory))
        self.add(directory, True, found.model_file, found.header)
        return True

    def model_file(self, path: Path) -> None:
        try:
            header = read_file(path, self.meter)
        except (FormatError, OSError) as exc:
            self.fail(path, exc)
            return
        if header is not None:
            self.add(path, False, path.name, header)

    def add(self, path: Path, is_dir: bool, model_file: str, header: ModelHeader) -> None:
        try:
            found = _found(self.root, path, is_dir, model_file, header, self.meter)
        except FormatError as exc:
            self.fail(path, exc)
            return
        self.models.append(found)
        rel = path.relative_to(self.root).as_posix() if path != self.root else path.name
        self.stats.notes.extend(f"{rel}: {note}" for note in header.notes)


def scan(root: Path, budget: int = READ_BUDGET) -> Scan:
    """Walk ``root`` and describe every model in it from its headers."""
    root = Path(root)
    if not root.is_dir():
        raise DiscoverError(f"{root} is not a directory: give the directory to scan for models")
    stats, meter = Stats(), ReadMeter(budget)
    walker = _Walker(root, meter, stats)
    walker.walk(root)
    stats.found = len(walker.models)
    stats.files_read, stats.bytes_read = meter.files, meter.total
    stats.max_bytes_per_file = meter.largest
    return Scan(root, tuple(_unique(walker.models)), stats)


def _unique(models: list[Found]) -> list[Found]:
    # Two models with one id and version would clash in bundles.json: later ones get a suffix.
    seen: set[tuple[str, str]] = set()
    out = []
    for model in models:
        candidates = [model.model_id, f"{model.model_id}-{model.header.format}"]
        candidates += [f"{model.model_id}-{n}" for n in range(2, len(models) + 2)]
        model_id = next(c for c in candidates if (c, model.version) not in seen)
        seen.add((model_id, model.version))
        out.append(model if model_id == model.model_id else _renamed(model, model_id))
    return out


def _renamed(model: Found, model_id: str) -> Found:
    return Found(
        model.path, model.is_dir, model.model_file, model.header, sanitize(model_id) or model_id,
        model.version, model.description, model.metadata_file,
    )  # fmt: skip


# --- the proposed document ----------------------------------------------------------------------


def _amount(count: int) -> str:
    for size, unit in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if count >= size:
            return f"{count / size:.1f}".removesuffix(".0") + unit
    return str(count)


def describe(model: Found, rel: str) -> str:
    """A one-line description of ``model`` (found at ``rel``) from its header."""
    meta = model.header.metadata
    facts = [str(meta.get("format", model.header.format)).upper()]
    if meta.get("quantization"):
        facts.append(str(meta["quantization"]))
    if isinstance(meta.get("parameter_count"), int):
        facts.append(f"{_amount(meta['parameter_count'])} parameters")
    what = f"{meta['architecture']} model" if meta.get("architecture") else "Model"
    return f"{what} ({', '.join(facts)}), discovered at {rel}"


def _relative(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()


def bundle_entry(model: Found, base: Path) -> dict[str, Any]:
    """The ``bundles.json`` entry for ``model``, with paths relative to ``base``."""
    rel = _relative(model.path, base)
    source = {"source_dir": rel} if model.is_dir else {"source_path": rel}
    targets = [
        {"platform": platform, "model_file": model.model_file,
         "model_type": model.header.model_type, **source, "fallback": "error"}
        for platform in model.header.platforms
    ]  # fmt: skip
    entry: dict[str, Any] = {
        "model_id": model.model_id,
        "version": model.version,
        "description": model.description or describe(model, rel),
        "targets": targets,
        "metadata": dict(model.header.metadata),
    }
    if model.metadata_file is not None:
        entry["model_metadata"] = _relative(model.metadata_file, base)
    return entry


def propose(found: Scan, base: Path) -> dict[str, Any]:
    """A fresh ``bundles.json`` document for everything ``found``; paths relative to ``base``."""
    bundles: dict[str, Any] = {}
    for model in found.models:
        bundles[_free_key(bundles, model.model_id, model.version)] = bundle_entry(model, base)
    return {"bundles": bundles}


def _free_key(bundles: dict[str, Any], model_id: str, version: str) -> str:
    for key in (model_id, f"{model_id}@{version}"):
        if key not in bundles:
            return key
    return next(f"{model_id}@{version}-{n}" for n in range(2, len(bundles) + 3)
                if f"{model_id}@{version}-{n}" not in bundles)  # fmt: skip


# --- merging ------------------------------------------------------------------------------------


def _sources(bundle: dict[str, Any], base: Path) -> set[str]:
    targets = bundle.get("targets")
    out = set()
    for target in targets if isinstance(targets, list) else []:
        if not isinstance(target, dict):
            continue
        for key in ("source_path", "source_dir"):
            if isinstance(target.get(key), str):
                out.add(os.path.normpath(base / target[key]))
    return out


def _match(bundles: dict[str, Any], entry: dict[str, Any], base: Path) -> str | None:
    wanted = _sources(entry, base)
    for key, bundle in bundles.items():
        if isinstance(bundle, dict) and wanted & _sources(bundle, base):
            return key
    ident = (entry["model_id"], entry["version"])
    for key, bundle in bundles.items():
        if isinstance(bundle, dict) and (bundle.get("model_id"), bundle.get("version")) == ident:
            return key
    return None


def _fill(key: str, bundle: dict[str, Any], entry: dict[str, Any], base: Path) -> list[str]:
    changes = []
    for name in ("description", "model_metadata"):
        if not bundle.get(name) and entry.get(name):
            bundle[name] = entry[name]
            changes.append(f"updated {key}: set {name} = {json.dumps(entry[name])}")
    metadata = bundle.get("metadata", {})
    if isinstance(metadata, dict):  # a person's non-object metadata is theirs to fix
        for name, value in entry["metadata"].items():
            if name not in metadata:
                metadata[name] = value
                changes.append(f"updated {key}: set metadata.{name} = {json.dumps(value)}")
        if metadata and "metadata" not in bundle:
            bundle["metadata"] = metadata
    changes += _add_targets(key, bundle, entry, base)
    return changes


def _add_targets(key: str, bundle: dict[str, Any], entry: dict[str, Any], base: Path) -> list[str]:
    targets = bundle.get("targets")
    if not isinstance(targets, list):
        return []
    platforms = {t.get("platform") for t in targets if isinstance(t, dict)}
    if _sources(bundle, base) & _sources(entry, base):
        return []  # a person already placed this source; their platforms stand
    changes = []
    for target in entry["targets"]:
        if target["platform"] not in platforms:
            targets.append(target)
            source = target.get("source_path") or target.get("source_dir")
            changes.append(f"updated {key}: added target {target['platform']} ({source})")
    return changes


def merge(
    existing: dict[str, Any], proposed: dict[str, Any], base: Path, stats: Stats
) -> list[str]:
    """Fold ``proposed`` into ``existing`` in place; return one line per change.

    A found model matches an existing bundle that uses the same source file or directory, else
    one with the same model_id and version. New models are added; a matched bundle only gains
    what it lacks (description, metadata keys, targets for sources it does not use yet).
    """
    bundles = existing["bundles"]
    changes: list[str] = []
    for entry in proposed["bundles"].values():
        key = _match(bundles, entry, base)
        if key is None:
            key = _free_key(bundles, entry["model_id"], entry["version"])
            bundles[key] = entry
            stats.added += 1
            changes.append(f"added {key}: {entry['model_id']}@{entry['version']}")
            continue
        filled = _fill(key, bundles[key], entry, base)
        stats.updated += bool(filled)
        changes += filled
    return changes


# --- the orchestrator ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """What :func:`discover` produced: the document, the changes (when merging), the stats."""

    document: dict[str, Any]
    changes: tuple[str, ...]
    stats: Stats


def _read_document(path: Path) -> dict[str, Any]:
    """The ``--merge`` document, read by the one bounded JSON reader (depth, duplicate keys)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DiscoverError(
            f"{path}: no such file: use --write {path} to create it, or fix the path"
        ) from None
    except (OSError, ValueError) as exc:
        raise DiscoverError(f"{path}: cannot be read as UTF-8 text ({exc}): fix the file") from None
    try:
        doc = parse_json(text, str(path))
    except ConfigError as exc:
        raise DiscoverError(f"{'; '.join(exc.problems)}; fix the file") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("bundles"), dict):
        raise DiscoverError(
            f'{path}: expected an object {{"bundles": {{...}}}}: merge into a bundles.json'
        )
    return doc


def dump(document: dict[str, Any]) -> bytes:
    """``document`` as written to disk: two-space indent, key order kept, trailing newline."""
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _check_new_file(path: Path) -> None:
    if path.exists():
        raise DiscoverError(
            f"{path} already exists: use --merge {path} to add to it, or remove it first"
        )
    if not path.parent.is_dir():
        raise DiscoverError(f"{path}: the directory {path.parent} does not exist: create it first")


def discover(root: Path, *, write: Path | None = None, merge_into: Path | None = None) -> Result:
    """Scan ``root``; write a fresh document to ``write``, or merge into ``merge_into``, or
    neither (then paths in the document are relative to the current directory)."""
    if write is not None:
        _check_new_file(write)
    target = merge_into or write
    base = target.resolve().parent if target else Path.cwd()
    existing = _read_document(merge_into) if merge_into else None
    found = scan(root)
    document = propose(found, base)
    changes: list[str] = []
    if existing is not None:
        changes = merge(existing, document, base, found.stats)
        document = existing
    else:
        found.stats.added = len(document["bundles"])
    if target is not None and (changes or existing is None):
        write_atomic(target, dump(document))
    return Result(document, tuple(changes), found.stats)
