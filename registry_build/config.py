"""``bundles.json`` (or ``bundles.yaml``): load, validate as a whole, and return frozen values.

Xybrid's schema, plus our optional ``metadata`` and ``model_metadata`` per bundle::

    {"bundles": {KEY: {"model_id", "version", "description",
                       "metadata": {...}, "model_metadata": "path/to/model_metadata.json",
                       "targets": [{"platform", "model_file", "model_type",
                                    "source_path" | "source_dir", "fallback"}]}}}

Every problem in the document is collected with its key path and the fix before anything is built;
:class:`~runtime.errors.ConfigError` carries them all. Unknown keys are warnings (errors under
``strict``). Paths are relative to the config file.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from runtime.errors import ConfigError
from runtime.names import TARGETS, canonical_target, is_name, name_problem

Fallback = Literal["placeholder", "error"]
FALLBACKS: tuple[str, ...] = ("placeholder", "error")
METADATA_NAME = "model_metadata.json"

_BUNDLE_KEYS = {
    "model_id", "version", "description", "targets", "metadata", "model_metadata", "hf_repo",
}  # fmt: skip
_TARGET_KEYS = {"platform", "model_file", "model_type", "source_path", "source_dir", "fallback"}
_METADATA_TYPES: dict[str, tuple[type, ...]] = {
    "architecture": (str,),
    "quantization": (str,),
    "parameter_count": (int,),
    "format": (str,),
    "context_length": (int,),
    "tags": (list,),
    "source": (str,),
    "license": (str,),
    "task": (str,),
}


@dataclass(frozen=True)
class TargetSpec:
    """One platform build of a bundle. Exactly one of ``source_path``/``source_dir`` is set."""

    platform: str  # canonical target name
    model_file: str
    model_type: str
    source_path: Path | None
    source_dir: Path | None
    fallback: Fallback
    missing: bool = False  # source absent and fallback is "placeholder"
    source: str = ""  # the source path as written in the config


@dataclass(frozen=True)
class BundleSpec:
    """One bundle definition (a model at one version) with its targets."""

    key: str
    model_id: str
    version: str
    description: str
    targets: tuple[TargetSpec, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    model_metadata: Path | None = None
    metadata_files: tuple[str, ...] | None = None  # `files` of model_metadata.json, if any


@dataclass(frozen=True)
class Config:
    """A validated configuration."""

    path: Path
    bundles: tuple[BundleSpec, ...]
    warnings: tuple[str, ...] = ()


def load_config(path: Path, *, strict: bool = False) -> Config:
    """Read and validate the config at ``path``; raise ConfigError listing every problem."""
    path = Path(path)
    document = _read_document(path)
    checker = _Checker(path, strict)
    bundles = checker.document(document)
    if checker.problems:
        raise ConfigError(checker.problems)
    return Config(path, tuple(bundles), tuple(checker.warnings))


def _read_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [f"{path}: no such file: create it, or pass --config PATH to the bundles.json to use"]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot be read as UTF-8 text ({exc})"]) from None
    if path.suffix.lower() in (".yaml", ".yml"):
        document = _parse_yaml(path, text)
    else:
        document = _parse_json(path, text)
    try:
        json.dumps(document, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end].encode("utf-8", "backslashreplace").decode()
        raise ConfigError(
            [f"{path.name}: a string holds {bad}, half of a UTF-16 pair: fix that escape"]
        ) from None
    return document


def _parse_json(path: Path, text: str) -> Any:
    duplicates: list[str] = []

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        duplicates.extend(k for i, k in enumerate(keys) if k in keys[:i])
        return dict(pairs)

    try:
        document = json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [f"{path.name}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}"]
        ) from None
    if duplicates:
        raise ConfigError(
            [
                f"{path.name}: key {key!r} appears twice in one object, and JSON keeps only the "
                "last: remove or rename one"
                for key in dict.fromkeys(duplicates)
            ]
        )
    return document


def _parse_yaml(path: Path, text: str) -> Any:
    import yaml

    class UniqueKeys(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: list[Any] = []
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice in one mapping: keep one",
                        key_node.start_mark,
                    )  # fmt: skip
                seen.append(key)
            return super().construct_mapping(node, deep)

    try:
        return yaml.load(text, Loader=UniqueKeys)  # a SafeLoader that refuses duplicate keys
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path.name}: {where}invalid YAML: {problem}"]) from None


def _type_name(value: object) -> str:
    return {
        dict: "an object", list: "an array", str: "a string", bool: "a boolean",
        int: "a number", float: "a number", type(None): "null",
    }.get(type(value), type(value).__name__)  # fmt: skip


class _Checker:
    """Walks the document once, collecting problems and warnings with their key paths."""

    def __init__(self, path: Path, strict: bool) -> None:
        self.path = path
        self.base = path.parent
        self.strict = strict
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.seen: dict[tuple[str, str, str], str] = {}

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{self.path.name}: {where}: {message}")

    def warn(self, where: str, message: str) -> None:
        """A warning, or a problem under ``--strict``."""
        (self.problems if self.strict else self.warnings).append(
            f"{self.path.name}: {where}: {message}"
        )

    def unknown_keys(self, where: str, obj: Mapping[str, Any], known: set[str]) -> None:
        for key in sorted(set(obj) - known):
            self.warn(
                where,
                f"unknown key {key!r} (known: {', '.join(sorted(known))}); "
                "remove it or fix its spelling",
            )

    def document(self, doc: Any) -> list[BundleSpec]:
        if not isinstance(doc, dict):
            self.problem(
                "top level", f'expected an object {{"bundles": {{...}}}}, got {_type_name(doc)}'
            )
            return []
        self.unknown_keys("top level", doc, {"bundles"})
        bundles = doc.get("bundles")
        if not isinstance(bundles, dict):
            got = "nothing" if bundles is None else _type_name(bundles)
            self.problem("bundles", f"expected an object mapping a name to each bundle, got {got}")
            return []
        if not bundles:
            self.problem("bundles", "is empty: define at least one bundle")
        specs = [self.bundle(f"bundles[{json.dumps(k)}]", k, v) for k, v in bundles.items()]
        found = [s for s in specs if s is not None]
        self.disagreements(found)
        return found

    def disagreements(self, specs: list[BundleSpec]) -> None:
        """Two bundle keys may split one model@version's targets, but the index keeps one
        description and one metadata per model: say so when they differ."""
        first: dict[tuple[str, str], BundleSpec] = {}
        for spec in specs:
            seen = first.setdefault((spec.model_id, spec.version), spec)
            for part in ("description", "metadata"):
                if getattr(seen, part) != getattr(spec, part):
                    self.warn(
                        f"bundles[{json.dumps(spec.key)}].{part}",
                        f"differs from bundles[{json.dumps(seen.key)}], which defines "
                        f"{spec.model_id}@{spec.version} too: the index shows one of them; "
                        "make them the same",
                    )

    def string(self, where: str, obj: Mapping[str, Any], key: str, *, required: bool = True) -> str:
        value = obj.get(key)
        if value is None:
            if required:
                self.problem(f"{where}.{key}", "is missing: add it (a string)")
            return ""
        if not isinstance(value, str):
            self.problem(f"{where}.{key}", f"expected a string, got {_type_name(value)} {value!r}")
            return ""
        return value

    def name(self, where: str, obj: Mapping[str, Any], key: str) -> str:
        value = obj.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            hint = " (as a number, 1.10 reads as 1.1)" if isinstance(value, float) else ""
            self.problem(
                f"{where}.{key}",
                f"expected a string, got the number {value!r}: quote it exactly as you mean "
                f'it, e.g. "{value}"{hint}',
            )
            return ""
        if isinstance(value, datetime.date):
            self.problem(
                f"{where}.{key}",
                f'expected a string, got the date {value}: quote it, e.g. "{value}"',
            )
            return ""
        text = self.string(where, obj, key)
        if text and not is_name(text):
            self.problem(f"{where}.{key}", name_problem(key, text))
            return ""
        return text

    def bundle(self, where: str, key: str, obj: Any) -> BundleSpec | None:
        if not isinstance(obj, dict):
            self.problem(
                where,
                f"expected an object with model_id, version and targets, got {_type_name(obj)}",
            )
            return None
        self.unknown_keys(where, obj, _BUNDLE_KEYS)
        model_id = self.name(where, obj, "model_id")
        version = self.name(where, obj, "version")
        description = self.string(where, obj, "description", required=False)
        metadata = self.metadata(f"{where}.metadata", obj.get("metadata"))
        model_metadata, listed = self.model_metadata(
            f"{where}.model_metadata", obj.get("model_metadata")
        )
        targets = self.targets(where, obj.get("targets"), listed, (model_id, version))
        if not (model_id and version and targets) or len(targets) != _count(obj.get("targets")):
            return None
        return BundleSpec(
            key, model_id, version, description, tuple(targets), metadata, model_metadata, listed
        )

    def duplicate(self, where: str, model_id: str, version: str, platform: str) -> None:
        if not (model_id and version and platform):
            return
        triple = (model_id, version, platform)
        if triple in self.seen:
            self.problem(
                where,
                f"{model_id}@{version} for platform {platform!r} is already defined at "
                f"{self.seen[triple]}: keep one definition per model_id, version and platform",
            )
        else:
            self.seen[triple] = where

    def metadata(self, where: str, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(where, f"expected an object, got {_type_name(value)}")
            return {}
        for path, number in _non_finite(value, where):
            self.problem(path, f"{number} is not a number JSON can carry: write a finite number")
        for key, types in _METADATA_TYPES.items():
            item = value.get(key)
            if item is None:
                continue
            if not isinstance(item, types) or isinstance(item, bool):
                expected = {str: "a string", int: "a whole number", list: "an array of strings"}[
                    types[0]
                ]
                self.problem(
                    f"{where}.{key}", f"expected {expected}, got {_type_name(item)} {item!r}"
                )
            elif isinstance(item, int) and item < 0:
                self.problem(f"{where}.{key}", f"expected a whole number >= 0, got {item}")
            elif isinstance(item, list) and not all(isinstance(t, str) for t in item):
                self.problem(f"{where}.{key}", "expected an array of strings")
        return dict(value)

    def model_metadata(self, where: str, value: Any) -> tuple[Path | None, tuple[str, ...] | None]:
        if value is None:
            return None, None
        if not isinstance(value, str) or not value:
            self.problem(
                where, f"expected a path to a model_metadata.json, got {_type_name(value)}"
            )
            return None, None
        path = self.base / value
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.problem(
                where,
                f"{value!r} does not exist (looked for {path}): fix the path or remove the key",
            )
            return None, None
        except (OSError, ValueError) as exc:
            self.problem(where, f"{value!r} is not valid JSON ({exc}): fix the file")
            return None, None
        files = doc.get("files") if isinstance(doc, dict) else None
        if files is None:
            return path, None
        if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
            self.problem(where, f'{value!r}: "files" must be an array of relative paths')
            return path, None
        problems = [p for name in files if (p := _listed_problem(name)) is not None]
        for problem in problems:
            self.problem(where, f'{value!r}: "files": {problem}')
        return path, None if problems else tuple(files)

    def targets(
        self, where: str, value: Any, listed: tuple[str, ...] | None, ident: tuple[str, str]
    ) -> list[TargetSpec]:
        if not isinstance(value, list) or not value:
            got = (
                "nothing"
                if value is None
                else ("an empty array" if value == [] else _type_name(value))
            )
            self.problem(f"{where}.targets", f"expected a non-empty array of targets, got {got}")
            return []
        specs = [
            self.target(f"{where}.targets[{i}]", t, listed, ident) for i, t in enumerate(value)
        ]
        return [s for s in specs if s is not None]

    def target(
        self, where: str, obj: Any, listed: tuple[str, ...] | None, ident: tuple[str, str]
    ) -> TargetSpec | None:
        if not isinstance(obj, dict):
            self.problem(
                where,
                f"expected an object with platform, model_file and a source, got {_type_name(obj)}",
            )
            return None
        before = len(self.problems)
        self.unknown_keys(where, obj, _TARGET_KEYS)
        platform = self.platform(where, obj)
        self.duplicate(where, *ident, platform)
        model_file = self.relative(where, obj, "model_file")
        model_type = self.string(where, obj, "model_type")
        fallback = obj.get("fallback", "error")
        if fallback not in FALLBACKS:
            self.problem(f"{where}.fallback", f'{fallback!r} is not one of "placeholder", "error"')
        source_path, source_dir, missing = self.source(where, obj, fallback)
        if source_path is not None and not missing and source_path.stat().st_size == 0:
            self.warn(f"{where}.source_path", f"{source_path} is empty (0 bytes): is it the model?")
        written = str(obj.get("source_path") or obj.get("source_dir") or "")
        if source_dir is not None and not missing and model_file:
            self.model_file_in_dir(where, source_dir, model_file, listed)
        if len(self.problems) > before:
            return None
        return TargetSpec(
            platform, model_file, model_type, source_path, source_dir, fallback, missing, written
        )

    def platform(self, where: str, obj: Mapping[str, Any]) -> str:
        raw = self.string(where, obj, "platform")
        if not raw:
            return ""
        canonical = canonical_target(raw)
        if canonical is None:
            self.problem(
                f"{where}.platform",
                f"{raw!r} is not a known platform (known: {', '.join(TARGETS)})",
            )
            return ""
        return canonical

    def relative(self, where: str, obj: Mapping[str, Any], key: str) -> str:
        value = self.string(where, obj, key)
        problem = bundle_path_problem(value) if value else None
        if problem is None and value in RESERVED_NAMES:
            problem = (
                f"{value!r} is a name the bundle reserves for itself "
                f"({', '.join(RESERVED_NAMES)}): rename the model file"
            )
        if problem is not None:
            self.problem(f"{where}.{key}", problem)
            return ""
        return value

    def source(
        self, where: str, obj: Mapping[str, Any], fallback: object
    ) -> tuple[Path | None, Path | None, bool]:
        has_path, has_dir = "source_path" in obj, "source_dir" in obj
        if has_path == has_dir:
            which = "both" if has_path else "neither"
            self.problem(where, f"has {which} of source_path and source_dir: give exactly one")
            return None, None, False
        key = "source_path" if has_path else "source_dir"
        raw = self.string(where, obj, key)
        if not raw:
            return None, None, False
        path = self.base / raw
        want_dir = key == "source_dir"
        exists = path.is_dir() if want_dir else path.is_file()
        if not exists and path.exists():
            kind = "a directory" if want_dir else "a file"
            self.problem(
                f"{where}.{key}",
                f"{raw!r} is not {kind}; use {'source_path' if want_dir else 'source_dir'} instead",
            )
        elif not exists and fallback == "error":
            self.problem(
                f"{where}.{key}",
                f'{raw!r} does not exist (looked for {path}) and fallback is "error": '
                'add the file, fix the path, or set "fallback": "placeholder"',
            )
        return (None, path, not exists) if want_dir else (path, None, not exists)

    def model_file_in_dir(
        self, where: str, directory: Path, model_file: str, listed: tuple[str, ...] | None
    ) -> None:
        if not (directory / model_file).is_file():
            self.problem(
                f"{where}.model_file",
                f"{model_file!r} is not in source_dir {directory}: fix model_file",
            )
        elif listed is not None and model_file not in listed:
            self.problem(
                f"{where}.model_file",
                f"{model_file!r} is not among the files model_metadata lists, so the bundle "
                'would lack its model: add it to "files" or fix model_file',
            )
        for name in listed or ():
            if not (directory / name).is_file():
                self.problem(
                    where, f"model_metadata lists {name!r} but {directory / name} does not exist"
                )


RESERVED_NAMES = ("manifest.json", "model_metadata.json")
_DRIVE = re.compile(r"^[A-Za-z]:")


def bundle_path_problem(value: str) -> str | None:
    """Why ``value`` cannot name a file inside a bundle, or None."""
    parts = value.replace("\\", "/").split("/")
    if value.startswith("/") or _DRIVE.match(value) or any(p in ("", ".", "..") for p in parts):
        return f"{value!r} must be a relative path inside the bundle, without '..'"
    if value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
        return f"{value!r} has surrounding spaces or control characters: remove them"
    return None


def _listed_problem(name: str) -> str | None:
    if name in RESERVED_NAMES:
        return f"{name!r} is a name the bundle reserves for itself: leave it out"
    return bundle_path_problem(name)


def _non_finite(value: Any, where: str) -> list[tuple[str, float]]:
    """The NaN and infinite numbers in a metadata value (JSON has none: they would become null)."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [(where, value)]
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in _non_finite(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [f for i, v in enumerate(value) for f in _non_finite(v, f"{where}[{i}]")]
    return []


def _count(value: Any) -> int:
    return len(value) if isinstance(value, list) else -1


def source_files(target: TargetSpec, listed: tuple[str, ...] | None) -> list[tuple[str, Path]]:
    """(path in the bundle, file on disk) for a target whose source exists, sorted by bundle path.

    A ``source_dir`` contributes its regular files (hidden names skipped), or only those that
    ``model_metadata.json``'s ``files`` array lists.
    """
    if target.source_path is not None:
        return [(target.model_file, target.source_path)]
    assert target.source_dir is not None  # guaranteed by validation
    root = target.source_dir
    if listed is not None:
        return sorted((name, root / name) for name in listed)
    found: list[tuple[str, Path]] = []
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            full = Path(dirpath, name)
            if not name.startswith(".") and full.is_file():
                found.append((full.relative_to(root).as_posix(), full))
    return sorted(found)
