"""Bearer tokens: who may write to the service, and for which hive.

A token file holds ``TOKEN [HIVE_ID]`` lines. A token bound to a hive id may speak only for that
hive (its heartbeats, its workers, the services it registered); a token bound to no hive is an
admin token and may speak for every hive, and it alone may make registry-wide changes (alias
promotion, verification). Tokens are held as SHA-256 digests, never as the text itself.

Which routes need which kind of token is a column of the endpoint table
(:class:`runtime.service.endpoints.Endpoint`); the HTTP layer asks :meth:`Tokens.caller` once per
request, and a route that speaks for one hive checks the binding with :func:`check_hive`.

The service registry's writes may also come without a token, when the operator chose so
(``serve --allow-anonymous-services``, for clients of infini-registry, which send none): the
writer is then :data:`ANONYMOUS`. A write's writer is a :data:`Writer`: a hive id, None for an
admin token, or :data:`ANONYMOUS`.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from pathlib import Path

from runtime.errors import RegistryError
from runtime.names import is_name, name_problem


class Unauthorized(RegistryError, PermissionError):
    """Raised when a write carries no bearer token, or one the server does not know (401)."""


class Forbidden(RegistryError, PermissionError):
    """Raised when a token bound to one hive is used to speak for another, or for a change that
    needs an admin token (403)."""


class TokenFileError(RegistryError, ValueError):
    """Raised when a token file cannot be read or has a malformed line."""


class Anonymous(enum.Enum):
    """The writer of a service write that came without a token (allowed only with
    ``serve --allow-anonymous-services``)."""

    CALLER = "anonymous"


ANONYMOUS = Anonymous.CALLER
Writer = str | Anonymous | None


class Tokens:
    """Bearer tokens, each optionally bound to one hive id. Stored as SHA-256 digests."""

    def __init__(self, tokens: Mapping[str, str | None]) -> None:
        self._bound = {_digest(t): hive for t, hive in tokens.items()}

    @classmethod
    def from_file(cls, path: Path) -> Tokens:
        """Read ``TOKEN [HIVE_ID]`` lines; blank lines and ``#`` comments are skipped."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TokenFileError(f"token file {path}: cannot read it ({exc.strerror})") from exc
        tokens: dict[str, str | None] = {}
        for number, line in enumerate(text.splitlines(), 1):
            words = line.split("#", 1)[0].split()
            if words:
                token, hive = _token_line(words, f"token file {path}, line {number}", tokens)
                tokens[token] = hive
        if not tokens:
            raise TokenFileError(f"token file {path}: no tokens in it; add one token per line")
        return cls(tokens)

    def __len__(self) -> int:
        return len(self._bound)

    def caller(self, authorization: str | None) -> str | None:
        """The hive that a valid ``Bearer`` header's token is bound to, None for a token bound
        to no hive (an admin); raises :class:`Unauthorized` without a known token."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("this request needs a header 'Authorization: Bearer <token>'")
        digest = _digest(token.strip())
        if digest not in self._bound:
            raise Unauthorized("the bearer token is not one this server accepts")
        return self._bound[digest]


def check_admin(bound: str | None) -> None:
    """Refuse (:class:`Forbidden`) a caller whose token is bound to hive ``bound``."""
    if bound is not None:
        raise Forbidden(
            f"this token is bound to hive {bound!r}; this change needs a token bound to no hive"
        )


def check_hive(bound: str | None, hive_id: str | None) -> None:
    """Refuse (:class:`Forbidden`) a caller bound to hive ``bound`` speaking for ``hive_id``;
    an admin (``bound`` None) may speak for every hive."""
    if bound is not None and hive_id is not None and bound != hive_id:
        raise Forbidden(
            f"this token is bound to hive {bound!r} and cannot speak for hive {hive_id!r}"
        )


def _token_line(
    words: list[str], where: str, seen: Mapping[str, str | None]
) -> tuple[str, str | None]:
    if len(words) > 2:
        raise TokenFileError(
            f"{where}: expected 'TOKEN' or 'TOKEN HIVE_ID', got {len(words)} words; "
            "put one token per line"
        )
    if words[0] in seen:
        raise TokenFileError(f"{where}: the token is already listed above; keep one line")
    if len(words) == 2 and not is_name(words[1]):
        raise TokenFileError(f"{where}: {name_problem('hive id', words[1])}")
    return words[0], words[1] if len(words) == 2 else None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
