"""Aliases (``production``, ``stable``): promotion through atomic pointer files, with a
tamper-evident audit trail. ``pointer`` reads pointers and records and rolls a pointer forward;
``promote`` is the protocol; ``view`` the derived ``aliases/<id>/index.json``; ``lookup`` what an
alias or a ref names; ``audit`` history, chain and re-hashing. This face hands on their names."""

from runtime.aliases.audit import (
    BundleCheck,
    ChainReport,
    Verification,
    history,
    raise_for_problems,
    verify,
    verify_chain,
)
from runtime.aliases.lookup import aliases, resolve, resolve_alias
from runtime.aliases.pointer import AliasConflict, newest_pointer, roll_forward
from runtime.aliases.promote import Clock, Promotion, default_actor, promote, promote_detailed
from runtime.aliases.view import alias_names, refresh_view
from runtime.registry.resolver import Resolution
from runtime.registry.wire import MAX_ACTOR, MAX_REASON

# fmt: off
__all__ = [
    "MAX_ACTOR", "MAX_REASON", "AliasConflict", "BundleCheck", "ChainReport", "Clock",
    "Promotion", "Resolution", "Verification", "alias_names", "aliases", "default_actor",
    "history", "newest_pointer", "promote", "promote_detailed", "raise_for_problems",
    "refresh_view", "resolve", "resolve_alias", "roll_forward", "verify", "verify_chain",
]
# fmt: on
