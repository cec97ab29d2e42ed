"""The project's exceptions: one base class, a subclass per thing a user can get wrong.

Every message names the thing, the bad value, what was expected and the fix. The CLIs print
``Error: <message>`` for any :class:`RegistryError` and exit 1, with no traceback.
Modules may define further subclasses next to the code that raises them.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(RegistryError, ValueError):
    """Raised when ``bundles.json`` (or YAML) is invalid; ``problems`` lists every one found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the configuration:"
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems)]))


class InvalidNameError(RegistryError, ValueError):
    """Raised when a model id, version, alias or target does not match the allowed pattern."""


class RefError(RegistryError, ValueError):
    """Raised when a ``model@selector`` reference cannot be parsed."""


class ResolveError(RegistryError, LookupError):
    """Raised when a reference names nothing in the registry; the message lists what exists."""


class CorruptDocument(RegistryError, ValueError):
    """Raised when a document read from a registry (``index.json``, a descriptor, an alias pointer,
    record or view) does not decode into its type: the registry is corrupt or hostile."""


class KeyNotFound(RegistryError, FileNotFoundError):
    """Raised by a store when a key does not exist (also on If-Match against a vanished key)."""


class PreconditionFailed(RegistryError):
    """Raised by a store when a create-only or replace-if-etag-matches write loses its condition."""


class ImmutableConflict(RegistryError):
    """Raised when an (id, version, target) is already published with a different digest."""


class IntegrityError(RegistryError):
    """Raised when bytes do not match the size or digest the registry names for them."""


class BundleFormatError(RegistryError, ValueError):
    """Raised when a ``.xyb`` file is not a valid bundle or would be unsafe to extract."""


class MissingSourceError(RegistryError, FileNotFoundError):
    """Raised when a target's source file or directory is missing and its fallback is ``error``."""


class StoreError(RegistryError, OSError):
    """Raised when a storage backend fails for a reason other than a missing key or a condition."""


class UsageError(RegistryError, ValueError):
    """Raised when a command's arguments do not go together (the CLIs exit 2, as argparse does)."""
