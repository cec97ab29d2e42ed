"""Xybrid pipeline files: the registry, and the bundle each stage needs.

::

    registry: https://models.example.com    # optional when --registry or BUNDLE_REGISTRY is set
    stages:
      - whisper-tiny@1.0                     # a ref: model@version, model@alias or model
      - model: kokoro-82m                    # or an object: model (a ref), optional version
        version: stable                      #   (an alias or version) and target
        target: universal

Keys this client does not use (Xybrid's ``name``, stage inputs, ...) are left alone. Every problem
is collected with its key path and reported at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.client.registry import Registry
from runtime.documents import parse_yaml
from runtime.errors import ConfigError, RegistryError
from runtime.names import TARGETS, canonical_target, parse_ref
from runtime.registry.wire import BundleDescriptor
from runtime.storage.location import Location, parse_location


@dataclass(frozen=True)
class Stage:
    """One stage's bundle: a ref and, when the file pins it, a target."""

    ref: str
    target: str | None = None


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline file."""

    path: Path
    registry: Location | None  # a relative directory is relative to the file
    stages: tuple[Stage, ...]


def load_pipeline(path: Path) -> Pipeline:
    """Read and validate ``path`` (with :func:`runtime.documents.parse_yaml`: no anchors,
    bounded nesting); raises :class:`ConfigError` listing every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file; pass the path of a pipeline.yaml"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot be read as a UTF-8 text file ({exc})"]) from None
    raw = parse_yaml(text, str(path))
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: expected a mapping with 'stages:' at the top level"])
    problems: list[str] = []
    registry = _registry(Path(path), raw.get("registry"), problems)
    stages = _stages(path, raw.get("stages"), problems)
    if problems:
        raise ConfigError(problems)
    return Pipeline(Path(path), registry, stages)


def _registry(path: Path, raw: Any, problems: list[str]) -> Location | None:
    """The file's registry; a relative directory means relative to the file, not to where we
    run."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw:
        problems.append(f"{path}: registry: expected a URL, directory or s3:// location")
        return None
    try:
        return parse_location(raw, base=path.parent)
    except RegistryError as exc:
        problems.append(f"{path}: registry: {exc}")
        return None


def _stages(path: Path, raw: Any, problems: list[str]) -> tuple[Stage, ...]:
    if not isinstance(raw, list) or not raw:
        problems.append(f"{path}: stages: expected a non-empty list of refs or {{model, target}}")
        return ()
    stages = []
    for number, item in enumerate(raw):
        stage = _stage(f"{path}: stages[{number}]", item, problems)
        if stage is not None:
            stages.append(stage)
    return tuple(stages)


def _stage(where: str, item: Any, problems: list[str]) -> Stage | None:
    if isinstance(item, str):
        return _checked(where, item, None, problems)
    if not isinstance(item, dict) or not isinstance(item.get("model"), str):
        problems.append(f"{where}: expected \"model@version\" or an object with a 'model' string")
        return None
    ref, version, target = item["model"], item.get("version"), item.get("target")
    if version is not None:
        if not isinstance(version, str):
            problems.append(
                f"{where}.version: {version!r} is not a string: quote it (YAML reads 1.10 as 1.1)"
            )
            return None
        if "@" in ref:
            problems.append(f"{where}.version: {ref!r} already names a version; give it once")
            return None
        ref = f"{ref}@{version}"
    if target is not None and not isinstance(target, str):
        problems.append(f"{where}.target: expected a target name (known: {', '.join(TARGETS)})")
        return None
    return _checked(where, ref, target, problems)


def _checked(where: str, ref: str, target: str | None, problems: list[str]) -> Stage | None:
    try:
        parse_ref(ref)
    except RegistryError as exc:
        problems.append(f"{where}: {exc}")
        return None
    if target is not None and canonical_target(target) is None:
        problems.append(
            f"{where}.target: {target!r} is not a known target (known: {', '.join(TARGETS)})"
        )
        return None
    return Stage(ref, target)


def resolve_pipeline(
    pipeline: Pipeline, registry: Registry, *, target: str | None = None
) -> list[BundleDescriptor]:
    """The index entry of every stage's bundle, in order; a stage's own target wins over
    ``target``. Every stage is resolved, so that all the refs that do not resolve are reported
    together (:class:`ConfigError`) and nothing is downloaded for a pipeline that cannot run."""
    problems, entries = [], []
    for number, stage in enumerate(pipeline.stages):
        try:
            entries.append(registry.resolve(stage.ref, stage.target or target))
        except RegistryError as exc:
            problems.append(f"{pipeline.path}: stages[{number}]: {exc}")
    if problems:
        raise ConfigError(problems)
    return entries


def fetch_pipeline(
    pipeline: Pipeline, registry: Registry, *, target: str | None = None, extract: bool = False
) -> list[Path]:
    """Fetch (or extract) every stage's bundle, in order, once all of them resolved
    (:func:`resolve_pipeline`)."""
    get = registry.extract_bundle if extract else registry.fetch_bundle
    return [get(entry) for entry in resolve_pipeline(pipeline, registry, target=target)]
