"""``bundles.json`` (or ``bundles.yaml``): load, validate as a whole, and return frozen values.

Xybrid's schema, plus our optional ``metadata`` and ``model_metadata`` per bundle::

    {"bundles": {KEY: {"model_id", "version", "description",
                       "metadata": {...}, "model_metadata": "path/to/model_metadata.json",
                       "targets": [{"platform", "model_file", "model_type",
                                    "source_path" | "source_dir", "fallback"}]}},
     "default_model": MODEL_ID}

``default_model`` (optional) names the registry's default model, one of the ``model_id``s defined:
``index.json`` says ``"default"``, its card in ``v1/models`` ``"default": true``, and
``registry-runtime resolve`` without a model resolves it.

Every problem in the document is collected with its key path and the fix before anything is built;
:class:`~runtime.errors.ConfigError` carries them all. Unknown keys are warnings (errors under
``strict``). Paths are relative to the config file. The document is read by
:mod:`runtime.documents` (bounded nesting, no YAML anchors or tags).

The files a target packs are listed here too (:attr:`TargetSpec.files`), so that a bad file name
fails the validation, not the build. Symbolic links are never followed: the file or directory that
``source_path``, ``source_dir`` or ``model_metadata`` names must not be a link, nor anything under a
``source_dir``, whether it points outside the directory or inside it (the directories leading to
what the config names may be links). Every file under ``source_dir`` must have a UTF-8 name that
a bundle can hold (:func:`runtime.registry.xyb.check_entry_name`: no control character, no
backslash), and none may be ``manifest.json``; named pipes, sockets and devices are refused too.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from registry_build.bundle import PackError, SourceLinkError, open_no_links
from runtime.documents import parse_json, parse_yaml, quoted, shorten
from runtime.errors import ConfigError
from runtime.names import TARGETS, canonical_target, is_name, name_problem
from runtime.registry.xyb import check_entry_name

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
    """One platform build of a bundle. Exactly one of ``source_path``/``source_dir`` is set;
    ``files`` are (path in the bundle, file on disk) sorted by bundle path, none of them a link."""

    platform: str  # canonical target name
    model_file: str
    model_type: str
    source_path: Path | None
    source_dir: Path | None
    fallback: Fallback
    missing: bool = False  # source absent and fallback is "placeholder"
    source: str = ""  # the source path as written in the config
    files: tuple[tuple[str, Path], ...] = ()

    @property
    def beneath(self) -> Path:
        """The directory below which no link may be followed to reach ``files``: the one that
        holds the source, so that the source itself must not be a link either."""
        source = self.source_dir or self.source_path
        assert source is not None  # validation gives every target exactly one
        return source.parent


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
    default_model: str | None = None


def load_config(path: Path, *, strict: bool = False) -> Config:
    """Read and validate the config at ``path``; raise ConfigError listing every problem."""
    path = Path(path)
    document = _read_document(path)
    checker = _Checker(path, strict)
    bundles = checker.document(document)
    default = checker.default_model(document, bundles)
    if checker.problems:
        raise ConfigError(checker.problems)
    return Config(path, tuple(bundles), tuple(checker.warnings), default)


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
        return parse_yaml(text, path.name)
    return parse_json(text, path.name)


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
                f"unknown key {quoted(key)} (known: {', '.join(sorted(known))}); "
                "remove it or fix its spelling",
            )

    def document(self, doc: Any) -> list[BundleSpec]:
        if not isinstance(doc, dict):
            self.problem(
                "top level", f'expected an object {{"bundles": {{...}}}}, got {_type_name(doc)}'
            )
            return []
        self.unknown_keys("top level", doc, {"bundles", "default_model"})
        bundles = doc.get("bundles")
        if not isinstance(bundles, dict):
            got = "nothing" if bundles is None else _type_name(bundles)
            self.problem("bundles", f"expected an object mapping a name to each bundle, got {got}")
            return []
        if not bundles:
            self.problem("bundles", "is empty: define at least one bundle")
        specs = [self.bundle(_bundle_path(k), k, v) for k, v in bundles.items()]
        found = [s for s in specs if s is not None]
        self.disagreements(found)
        return found

    def default_model(self, doc: Any, specs: list[BundleSpec]) -> str | None:
        """``default_model``: None when absent; a problem unless it names a defined model."""
        if not isinstance(doc, dict) or doc.get("default_model") is None:
            return None
        name = self.string("top level", doc, "default_model")
        defined = sorted({s.model_id for s in specs})
        if name and name not in defined:
            self.problem(
                "default_model",
                f"{quoted(name)} is not a model_id defined here (defined: {', '.join(defined)}): "
                "name one of them or remove the key",
            )
            return None
        return name or None

    def disagreements(self, specs: list[BundleSpec]) -> None:
        """Two bundle keys may split one model@version's targets, but the index keeps one
        description and one metadata per model: say so when they differ."""
        first: dict[tuple[str, str], BundleSpec] = {}
        for spec in specs:
            seen = first.setdefault((spec.model_id, spec.version), spec)
            for part in ("description", "metadata"):
                if getattr(seen, part) != getattr(spec, part):
                    self.warn(
                        f"{_bundle_path(spec.key)}.{part}",
                        f"differs from {_bundle_path(seen.key)}, which defines "
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
            self.problem(
                f"{where}.{key}", f"expected a string, got {_type_name(value)} {quoted(value)}"
            )
            return ""
        return value

    def name(self, where: str, obj: Mapping[str, Any], key: str) -> str:
        value = obj.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            hint = " (as a number, 1.10 reads as 1.1)" if isinstance(value, float) else ""
            self.problem(
                f"{where}.{key}",
                f"expected a string, got the number {quoted(value)}: quote it exactly as you "
                f'mean it, e.g. "{shorten(str(value))}"{hint}',
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
                f"{model_id}@{version} for platform {quoted(platform)} is already defined at "
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
                    f"{where}.{key}",
                    f"expected {expected}, got {_type_name(item)} {quoted(item)}",
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
        before = len(self.problems)
        doc = self.metadata_document(where, value, path)
        if len(self.problems) > before:
            return None, None
        files = doc.get("files") if isinstance(doc, dict) else None
        if files is None:
            return path, None
        if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
            self.problem(where, f'{quoted(value)}: "files" must be an array of relative paths')
            return path, None
        problems = [p for name in files if (p := _listed_problem(name)) is not None]
        for problem in problems:
            self.problem(where, f'{quoted(value)}: "files": {problem}')
        return path, None if problems else tuple(files)

    def metadata_document(self, where: str, value: str, path: Path) -> Any:
        """The parsed model_metadata file (a problem is recorded when it cannot be had)."""
        try:
            with open(open_no_links(path, path.parent), "rb") as handle:
                text = handle.read().decode("utf-8")
        except FileNotFoundError:
            self.problem(
                where,
                f"{quoted(value)} does not exist (looked for {path}): fix the path or remove "
                "the key",
            )
            return None
        except SourceLinkError as exc:
            fix = "point model_metadata at the file itself"
            self.problem(where, _link_problem(quoted(value), exc.target, fix))
            return None
        except (OSError, UnicodeDecodeError, PackError) as exc:
            self.problem(where, f"{quoted(value)} cannot be read ({exc}): fix the file")
            return None
        try:
            return parse_json(text, f"{self.path.name}: {where}: {quoted(value)}")
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return None

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
            self.problem(
                f"{where}.fallback", f'{quoted(fallback)} is not one of "placeholder", "error"'
            )
        source_path, source_dir, missing = self.source(where, obj, fallback)
        files: tuple[tuple[str, Path], ...] = ()
        if source_path is not None and not missing:
            if os.lstat(source_path).st_size == 0:
                self.warn(
                    f"{where}.source_path", f"{source_path} is empty (0 bytes): is it the model?"
                )
            files = ((model_file, source_path),)
        if source_dir is not None and not missing and model_file:
            files = self.directory_files(where, source_dir, model_file, listed)
        if len(self.problems) > before:
            return None
        written = str(obj.get("source_path") or obj.get("source_dir") or "")
        return TargetSpec(
            platform, model_file, model_type, source_path, source_dir, fallback, missing, written,
            files,
        )  # fmt: skip

    def platform(self, where: str, obj: Mapping[str, Any]) -> str:
        raw = self.string(where, obj, "platform")
        if not raw:
            return ""
        canonical = canonical_target(raw)
        if canonical is None:
            self.problem(
                f"{where}.platform",
                f"{quoted(raw)} is not a known platform (known: {', '.join(TARGETS)})",
            )
            return ""
        return canonical

    def relative(self, where: str, obj: Mapping[str, Any], key: str) -> str:
        value = self.string(where, obj, key)
        problem = bundle_path_problem(value) if value else None
        if problem is None and value in RESERVED_NAMES:
            problem = (
                f"{quoted(value)} is a name the bundle reserves for itself "
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
        mode = _mode(path)
        if mode is not None and stat.S_ISLNK(mode):
            fix = f"point {key} at the {'directory' if want_dir else 'file'} itself"
            self.problem(f"{where}.{key}", _link_problem(quoted(raw), os.readlink(path), fix))
            return None, None, False
        exists = mode is not None and (stat.S_ISDIR(mode) if want_dir else stat.S_ISREG(mode))
        if not exists and mode is not None:
            kind = "a directory" if want_dir else "a file"
            self.problem(
                f"{where}.{key}",
                f"{quoted(raw)} is not {kind}; use "
                f"{'source_path' if want_dir else 'source_dir'} instead",
            )
        elif not exists and fallback == "error":
            self.problem(
                f"{where}.{key}",
                f'{quoted(raw)} does not exist (looked for {path}) and fallback is "error": '
                'add the file, fix the path, or set "fallback": "placeholder"',
            )
        return (None, path, not exists) if want_dir else (path, None, not exists)

    def directory_files(
        self, where: str, directory: Path, model_file: str, listed: tuple[str, ...] | None
    ) -> tuple[tuple[str, Path], ...]:
        """The files a source_dir contributes (all, or those model_metadata lists), recording a
        problem for each link, bad name or missing file."""
        if listed is None:
            found, refused = _walk(directory)
            for problem in refused.values():
                self.problem(f"{where}.source_dir", problem)
        else:
            found, refused = self.listed_files(where, directory, listed)
        if listed is not None and model_file not in listed:
            self.problem(
                f"{where}.model_file",
                f"{quoted(model_file)} is not among the files model_metadata lists, so the "
                'bundle would lack its model: add it to "files" or fix model_file',
            )
        elif model_file not in found and model_file not in refused:
            self.problem(
                f"{where}.model_file",
                f"{quoted(model_file)} is not in source_dir {directory}: fix model_file",
            )
        return tuple(sorted(found.items()))

    def listed_files(
        self, where: str, root: Path, listed: tuple[str, ...]
    ) -> tuple[dict[str, Path], dict[str, str]]:
        """The files model_metadata lists, and the problem of each that cannot be packed
        (recorded at its key path)."""
        found: dict[str, Path] = {}
        refused: dict[str, str] = {}
        for name in listed:
            problem = _listed_file_problem(root, name)
            if problem is None:
                found[name] = root / name
            else:
                self.problem(f"{where}{problem[0]}", problem[1])
                refused[name] = problem[1]
        return found, refused


def _bundle_path(key: str) -> str:
    """The key path of a bundle, with its key cut for a message."""
    return f"bundles[{shorten(json.dumps(key))}]"


def _mode(path: Path) -> int | None:
    """The lstat mode of ``path`` (a link is not followed), None if nothing is there."""
    try:
        return os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None


def _link_problem(shown: str, target: str, fix: str) -> str:
    return f"{shown} is a symbolic link to {quoted(target)}: links are not followed; {fix}"


def _listed_file_problem(root: Path, name: str) -> tuple[str, str] | None:
    """(key path suffix, problem) when the listed file ``root / name`` is missing, reached
    through a link below ``root``, or not a regular file; else None."""
    parts = name.split("/")
    mode: int | None = None
    for count in range(1, len(parts) + 1):
        path = root.joinpath(*parts[:count])
        mode = _mode(path)
        if mode is None:
            return "", f"model_metadata lists {quoted(name)} but {root / name} does not exist"
        if stat.S_ISLNK(mode):
            fix = "replace the link with a copy of what it points to, or remove it"
            shown = quoted("/".join(parts[:count]))
            return ".source_dir", _link_problem(shown, os.readlink(path), fix)
    if mode is None or not stat.S_ISREG(mode):
        return ".model_metadata", f"{quoted(name)} is not a regular file: fix the list"
    return None


def _walk(root: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Every regular file under ``root`` by its path in the bundle (hidden names skipped, no link
    followed), and the problem of each entry that cannot be packed, both sorted by name."""
    found: dict[str, Path] = {}
    refused: dict[str, str] = {}
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = [e for e in os.scandir(directory) if not e.name.startswith(".")]
        except OSError as exc:
            name = directory.relative_to(root).as_posix()
            refused[name] = f"{quoted(name)} cannot be listed ({exc.strerror})"
            continue
        for entry in entries:
            name = Path(entry.path).relative_to(root).as_posix()
            problem = _entry_problem(entry, name, root)
            if problem is not None:
                refused[name] = problem
            elif entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            else:
                found[name] = Path(entry.path)
    return dict(sorted(found.items())), dict(sorted(refused.items()))


def _entry_problem(entry: os.DirEntry[str], name: str, root: Path) -> str | None:
    """Why the entry ``name`` under ``root`` cannot be packed (or walked), or None."""
    problem = source_name_problem(name)
    if problem is None and entry.is_symlink():
        inside = Path(os.path.realpath(entry.path)).is_relative_to(os.path.realpath(root))
        problem = (
            f"{quoted(name)} is a symbolic link to {quoted(os.readlink(entry.path))}, "
            f"{'inside' if inside else 'outside'} the directory: links are not packed"
            f"{', even there' if inside else ''}; replace the link with a copy of what it "
            "points to, or remove it"
        )
    elif problem is None and not entry.is_dir(follow_symlinks=False):
        if not entry.is_file(follow_symlinks=False):
            problem = f"{quoted(name)} is not a regular file or directory: remove it"
        elif name == _MANIFEST:
            problem = f"{quoted(name)} is the name the bundle keeps for its manifest: rename it"
    return problem


RESERVED_NAMES = ("manifest.json", "model_metadata.json")
_MANIFEST = RESERVED_NAMES[0]
_DRIVE = re.compile(r"^[A-Za-z]:")


def bundle_path_problem(value: str) -> str | None:
    """Why ``value`` cannot name a file inside a bundle, or None."""
    parts = value.replace("\\", "/").split("/")
    if value.startswith("/") or _DRIVE.match(value) or any(p in ("", ".", "..") for p in parts):
        return f"{quoted(value)} must be a relative path inside the bundle, without '..'"
    if value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
        return f"{quoted(value)} has surrounding spaces or control characters: remove them"
    return source_name_problem(value)


def source_name_problem(name: str) -> str | None:
    """Why the file ``name`` cannot be a path inside a bundle as it is (a name that is not
    UTF-8, or one :func:`runtime.registry.xyb.check_entry_name` refuses), or None."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes of a file name, kept by surrogateescape
        return f"{quoted(os.fsencode(name))} is not a valid UTF-8 name: rename it"
    problem = check_entry_name(name)
    return None if problem is None else f"{quoted(name)} {problem}: rename it"


def _listed_problem(name: str) -> str | None:
    if name in RESERVED_NAMES:
        return f"{quoted(name)} is a name the bundle reserves for itself: leave it out"
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
