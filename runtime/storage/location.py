"""Registry locations: the text a user gives, parsed once into a :class:`Location`; one table of
schemes that says which backend opens it; one redaction of credentials for every message.

=======================================  =======  ===============================================
location                                 scheme   backend (imported when a store is opened)
=======================================  =======  ===============================================
``DIR``, ``~/DIR``, ``file://DIR``       file     :mod:`runtime.storage.local`
``http(s)://[USER:TOKEN@]HOST[/PATH]``   http(s)  :mod:`runtime.storage.http` (read-only)
``s3://BUCKET[/PREFIX]``                 s3       :mod:`runtime.storage.s3` (the one with boto3)
``memory://[NAME]``                      memory   :mod:`runtime.storage.memory` (tests, dry runs)
=======================================  =======  ===============================================

A backend is a module with ``open_location(location, endpoint_url) -> Store``; a new one is that
module plus one row of :data:`SCHEMES`. Nothing outside this module looks at a location's text to
decide what it is: callers ask the parsed value (``location.directory``, ``location.scheme``).

Normal form: a directory is absolute (``~`` expanded, a relative path resolved against the working
directory or the ``base`` given), a URL has no trailing ``/``. ``str(location)`` and ``repr`` show
it without credentials; only :attr:`Location.address` carries them, for the backend to send.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from runtime.documents import quoted
from runtime.errors import RegistryError
from runtime.storage.store import Store

_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#\"'<>]*@")


class LocationError(RegistryError, ValueError):
    """Raised when a registry location is not one this project can open: an unknown scheme, or
    a URL that names no host or bucket."""


@dataclass(frozen=True)
class Scheme:
    """One row of the table: the backend module, what follows ``scheme://``, an example."""

    module: str
    form: str  # "path": a directory; "host": HOST or BUCKET required; "name": anything
    example: str


SCHEMES: dict[str, Scheme] = {
    "file": Scheme("runtime.storage.local", "path", "file://DIR"),
    "http": Scheme("runtime.storage.http", "host", "http://HOST/PATH"),
    "https": Scheme("runtime.storage.http", "host", "https://HOST/PATH"),
    "s3": Scheme("runtime.storage.s3", "host", "s3://BUCKET/PREFIX"),
    "memory": Scheme("runtime.storage.memory", "name", "memory://"),
}


def redact(text: str) -> str:
    """``text`` with the ``user:password@`` of every URL in it removed (a location, a message)."""
    return _CREDENTIALS.sub(r"\1", text)


@dataclass(frozen=True)
class Location:
    """A parsed registry location (see the module notes for the forms)."""

    scheme: str
    rest: str = field(repr=False)  # after "scheme://", normalised; credentials kept
    shown: str  # the address without credentials: messages, logs, the cache's key

    @property
    def address(self) -> str:
        """The whole location with its credentials, for the backend that opens it."""
        return self.rest if self.directory is not None else f"{self.scheme}://{self.rest}"

    @property
    def directory(self) -> Path | None:
        """The directory of a local location; None for a remote one (or memory)."""
        return Path(self.rest) if SCHEMES[self.scheme].form == "path" else None

    def __str__(self) -> str:
        return self.shown


def parse_location(text: str, base: Path | None = None) -> Location:
    """``text`` as a :class:`Location`; a relative directory is taken relative to ``base`` (else
    the working directory). Raises :class:`LocationError` for what no backend opens."""
    head, sep, tail = text.partition("://")
    name = head.lower() if sep else "file"
    scheme = SCHEMES.get(name)
    if scheme is None:
        kinds = ", ".join(dict.fromkeys(s.example for s in SCHEMES.values()))
        raise LocationError(
            f"{quoted(redact(text))} is not a registry location: write a directory or one of "
            f"{kinds}"
        )
    if scheme.form == "path":
        directory = (base or Path.cwd()) / Path(tail if sep else text).expanduser()
        rest = str(directory.resolve())
        return Location(name, rest, redact(rest))
    if scheme.form == "host" and not tail.strip("/"):
        raise LocationError(
            f"{quoted(redact(text))} names no host or bucket: write {scheme.example}"
        )
    rest = tail.rstrip("/") if scheme.form == "host" else tail
    return Location(name, rest, redact(f"{name}://{rest}"))


def open_store(location: str | Location, *, endpoint_url: str | None = None) -> Store:
    """The store for ``location``, from the backend its scheme names (imported only now, so
    boto3 is loaded for ``s3://`` alone). ``endpoint_url`` is for S3-compatible services."""
    where = parse_location(location) if isinstance(location, str) else location
    backend = importlib.import_module(SCHEMES[where.scheme].module)
    store: Store = backend.open_location(where, endpoint_url)
    return store
