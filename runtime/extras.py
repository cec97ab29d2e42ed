"""The optional parts of the distribution (its extras): which extra brings which module, and the
one line a command prints when one is missing.

``pip install bundle-registry`` installs what a device needs to resolve, fetch and verify; the
rest comes with an extra (pyproject's ``optional-dependencies``). A command checks the extras its
arguments need before it starts any work (:func:`require`, :func:`require_for`): an ``s3://``
location, ``serve``, ``--state redis://``, ``--trust``, rendering pages. The check finds the
modules without importing them (boto3 takes a while to import). The library checks the same way
where it needs an extra (signed metadata, the Redis state). What a check could not foresee (a
module missing deep inside an installed one) is mapped by :func:`explain` in the CLI's ``run``,
so either way the user reads the same line::

    Error: s3:// needs boto3: pip install 'bundle-registry[s3]'
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.errors import RegistryError

if TYPE_CHECKING:
    from runtime.storage.location import Location

DISTRIBUTION = "bundle-registry"


@dataclass(frozen=True)
class Extra:
    """One extra: its name in ``pip install 'bundle-registry[NAME]'``, the packages a message
    names, and the top-level modules that show it is installed."""

    name: str
    packages: str
    modules: tuple[str, ...]

    @property
    def install(self) -> str:
        """The command that installs it."""
        return f"pip install '{DISTRIBUTION}[{self.name}]'"


EXTRAS: dict[str, Extra] = {
    e.name: e
    for e in (
        Extra("s3", "boto3", ("boto3", "botocore")),
        Extra(
            "server",
            "starlette, uvicorn and prometheus_client",
            ("starlette", "uvicorn", "prometheus_client"),
        ),
        Extra("redis", "redis-py", ("redis",)),
        Extra(
            "trust", "python-tuf and securesystemslib", ("tuf", "securesystemslib", "cryptography")
        ),
        Extra("build", "Jinja2", ("jinja2", "markupsafe")),
        Extra("discover", "gguf and onnx", ("gguf", "onnx")),
    )
}
_BY_MODULE = {module: extra for extra in EXTRAS.values() for module in extra.modules}
# The extra a location's backend needs, by scheme (the other backends need none).
SCHEME_EXTRAS = {"s3": "s3"}


class MissingExtra(RegistryError, ImportError):
    """Raised when a command needs an extra that is not installed; the message names what needs
    it, the packages and the ``pip install`` that brings them."""


def missing(extra: str, what: str) -> MissingExtra:
    """The error for ``what`` (``s3://``, ``serve``, ``--trust``) needing ``extra``."""
    found = EXTRAS[extra]
    return MissingExtra(f"{what} needs {found.packages}: {found.install}")


def installed(module: str) -> bool:
    """Whether the top-level ``module`` can be imported (found, not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it, or a half-removed module
        return False


def require(extra: str, what: str) -> None:
    """Raise :class:`MissingExtra` unless every module of ``extra`` is installed."""
    if not all(installed(module) for module in EXTRAS[extra].modules):
        raise missing(extra, what)


def require_for(location: Location) -> Location:
    """``location``, once the extra its backend needs (if any) is known to be installed."""
    extra = SCHEME_EXTRAS.get(location.scheme)
    if extra is not None:
        require(extra, f"{location.scheme}://")
    return location


def explain(exc: ModuleNotFoundError, what: str) -> MissingExtra | None:
    """The error for a module an extra brings that was found missing while ``what`` ran; None
    when no extra brings it (a broken installation, which the traceback describes better)."""
    extra = _BY_MODULE.get((exc.name or "").partition(".")[0])
    return missing(extra.name, what) if extra is not None else None
