"""Names, versions, targets and refs: the vocabulary every other module shares.

- A name (model id, version, alias, target) matches :data:`NAME_PATTERN`: nothing in it can climb
  out of a path or a bucket prefix.
- Versions order naturally (:func:`version_key`): numeric runs compare as numbers (``1.10 > 1.9``),
  dates work (``2026-02-13_001``), and a semver pre-release (``1.0.0-rc.1``) sorts before its
  release.
- Targets have canonical names (:data:`TARGETS`); a few spellings are accepted as synonyms
  (:func:`canonical_target`); :func:`detect_target` maps this machine's OS and CPU to one.
- A ref is ``model@selector`` or a bare ``model`` (:func:`parse_ref`).
"""

from __future__ import annotations

import functools
import os
import platform
import re
import sys
from dataclasses import dataclass

from runtime.documents import quoted
from runtime.errors import InvalidNameError, RefError


def whole(pattern: str) -> str:
    """``pattern`` anchored to the whole string, for ``re.search`` and msgspec's ``Meta(pattern)``.

    Python's ``$`` also matches before a final newline, so ``(?!\\n)`` keeps ``"name\\n"`` out.
    """
    return f"^(?:{pattern})(?!\\n)$"


NAME_PATTERN = whole(r"(?!.*\.\.)[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?")
_NAME_RE = re.compile(NAME_PATTERN)
NAME_RULE = (
    "use 1-128 letters, digits, '.', '_' or '-', starting and ending with a letter or digit, "
    "without '..'"
)

UNIVERSAL = "universal"
TARGETS: tuple[str, ...] = (
    "macos-arm64",
    "macos-x86_64",
    "linux-x86_64",
    "linux-arm64",
    "ios-arm64",
    "android-arm64",
    "android-arm32",
    "windows-x86_64",
    "wasm-wgpu",
    UNIVERSAL,
)
_SYNONYMS = {"ios-aarch64": "ios-arm64", "android-arm": "android-arm32"}


def is_name(value: str) -> bool:
    """True when ``value`` is a valid model id, version, alias or target name."""
    return bool(_NAME_RE.search(value))


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid name, else raise :class:`InvalidNameError`."""
    if not is_name(value):
        raise InvalidNameError(name_problem(kind, value))
    return value


def name_problem(kind: str, value: object) -> str:
    """The message for an invalid ``kind`` name ``value``, shared by every caller that checks."""
    return f"{kind} {quoted(value)} is not a valid name: {NAME_RULE}"


def canonical_target(value: str) -> str | None:
    """The canonical name of a target spelling, or None when it is not a known target."""
    lowered = value.lower()
    if lowered in TARGETS:
        return lowered
    if lowered in _SYNONYMS:
        return _SYNONYMS[lowered]
    if lowered.endswith("-aarch64"):
        arm = lowered.removesuffix("-aarch64") + "-arm64"
        return arm if arm in TARGETS else None
    return None


def detect_target() -> str:
    """This machine's canonical target, or ``universal`` when the OS/CPU pair is not one we know."""
    machine = platform.machine().lower()
    cpu = {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64", "armv7l": "arm32"}.get(
        machine, machine
    )
    if sys.platform == "android" or "ANDROID_ROOT" in os.environ:
        system = "android"
    elif sys.platform == "ios":
        system = "ios"
    else:
        system = {"darwin": "macos", "linux": "linux", "windows": "windows"}.get(
            platform.system().lower(), ""
        )
    candidate = f"{system}-{cpu}"
    return candidate if candidate in TARGETS else UNIVERSAL


_TOKEN_RE = re.compile(r"\d+|[A-Za-z]+")


def _tokens(text: str) -> tuple[tuple[int, int, str], ...]:
    # Numbers sort before words at the same position, and compare by value.
    return tuple(
        (0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in _TOKEN_RE.findall(text)
    )


@functools.lru_cache(maxsize=65536)
def version_key(version: str) -> tuple[object, ...]:
    """Sort key for natural version order; the raw string breaks ties so the order is total."""
    main, sep, pre = version.partition("-")
    if sep and pre[:1].isalpha():
        # A semver pre-release ("1.0.0-rc.1") sorts before its release ("1.0.0").
        return (_tokens(main), 0, _tokens(pre), version)
    return (_tokens(version), 1, (), version)


def highest_version(versions: list[str] | set[str] | tuple[str, ...]) -> str:
    """The highest of ``versions`` by natural order (raises ValueError if empty)."""
    return max(versions, key=version_key)


@dataclass(frozen=True)
class Ref:
    """A parsed ``model@selector``; ``selector`` is None when the ref names no version or alias."""

    model: str
    selector: str | None = None

    def __str__(self) -> str:
        return self.model if self.selector is None else f"{self.model}@{self.selector}"


def parse_ref(text: str) -> Ref:
    """Parse ``model``, or ``model@selector`` where the selector is an alias or a version."""
    model, sep, selector = text.strip().partition("@")
    if not model:
        raise RefError(f"ref {text!r} has no model before '@': write MODEL@VERSION or MODEL@ALIAS")
    if sep and not selector:
        raise RefError(
            f"ref {text!r} has nothing after '@': write {model}@VERSION, {model}@ALIAS, "
            f"or just {model} for the highest version"
        )
    if "@" in selector:
        raise RefError(f"ref {text!r} has more than one '@': write MODEL@VERSION or MODEL@ALIAS")
    for kind, value in (("model", model), ("selector", selector)):
        if value and not is_name(value):
            raise RefError(f"ref {text!r}: " + name_problem(kind, value))
    return Ref(model, selector or None)
