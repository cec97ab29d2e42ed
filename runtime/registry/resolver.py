"""Resolution: which bundles ``model@selector`` names, worked out over decoded data alone.

One function, :func:`resolve`, answers for the client, the alias commands, the HTTP routes and
publish. It does no I/O: the caller reads ``index.json`` and the model's shard
(:mod:`runtime.registry.index`) into a :class:`ModelState`, whose alias map is the one
``index.json`` holds (derived from the pointer files), so an alias costs no further read.

1. No selector: the highest version (``latest`` in the model's index entry).
2. A selector that is an alias (the entry's alias map names it, or the caller found its pointer
   and hands in the version it names): the version the alias names, which the shard must hold.
3. Otherwise the selector is an exact version.

Then the targets, best first (:func:`target_order`): the one asked for (any spelling
:func:`runtime.names.canonical_target` accepts), else this machine's
(:func:`runtime.names.detect_target`), then ``universal``; or every target of the version.

A miss is a :class:`~runtime.errors.ResolveError` with one message per kind: no such model
(:func:`unknown_model`), no such version or alias, an alias known but damaged
(:func:`damaged_alias`), an alias naming a version the shard does not hold, no bundle for the
targets. An unknown target is an :class:`~runtime.errors.InvalidNameError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from runtime.errors import InvalidNameError, ResolveError
from runtime.names import TARGETS, UNIVERSAL, Ref, canonical_target, detect_target, version_key
from runtime.registry.wire import (
    BundleDescriptor,
    ModelEntry,
    Shard,
    alias_pointer_key,
    alias_record_key,
)

LISTED = 20  # names a message lists before "and N more"


class Resolution(msgspec.Struct, frozen=True):
    """What a ref names: the model, its version, the alias it went through, and its bundles
    (the best one for the targets asked, or every target of the version)."""

    ref: str
    model: str
    version: str
    alias: str | None = None
    bundles: tuple[BundleDescriptor, ...] = ()


@dataclass(frozen=True)
class ModelState:
    """One model as a resolve sees it: its ``index.json`` entry (highest version, alias map)
    and the bundles of its shard."""

    model: str
    latest: str
    aliases: Mapping[str, str]
    bundles: tuple[BundleDescriptor, ...]
    _by_version: dict[str, list[BundleDescriptor]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_version: dict[str, list[BundleDescriptor]] = {}
        for bundle in self.bundles:
            by_version.setdefault(bundle.version, []).append(bundle)
        object.__setattr__(self, "_by_version", by_version)

    @classmethod
    def of(cls, model: str, entry: ModelEntry, shard: Shard) -> ModelState:
        """The state of ``model`` from its entry and its (verified) shard."""
        return cls(model, entry.latest, entry.aliases, shard.bundles)

    def versions(self) -> list[str]:
        """The versions of the model, lowest first."""
        return sorted(self._by_version, key=version_key)

    def bundles_of(self, version: str) -> list[BundleDescriptor]:
        """Every bundle of ``version``, by target name."""
        return sorted(self._by_version.get(version, ()), key=lambda b: b.target)

    def find(self, version: str, targets: Sequence[str]) -> BundleDescriptor | None:
        """The bundle of ``version`` for the first of ``targets`` that has one."""
        by_target = {b.target: b for b in self._by_version.get(version, ())}
        return next((by_target[t] for t in targets if t in by_target), None)


def listing(names: Iterable[str]) -> str:
    """``a, b, c``, at most :data:`LISTED` of them and then ``and N more``; "none" when empty."""
    shown = list(names)
    if len(shown) > LISTED:
        return f"{', '.join(shown[:LISTED])} and {len(shown) - LISTED} more"
    return ", ".join(shown) or "none"


def unknown_model(model: str, models: Iterable[str], where: str) -> ResolveError:
    """The error for a model the index of ``where`` does not hold."""
    return ResolveError(
        f"model {model!r} is not in the index of {where} (models: {listing(sorted(models))})"
    )


def target_order(target: str | None) -> tuple[str, ...]:
    """The targets to try, best first: the asked (or detected) target, then ``universal``."""
    chosen = detect_target() if target is None else canonical_target(target)
    if chosen is None:
        raise InvalidNameError(
            f"target {target!r} is not a known target (known: {', '.join(TARGETS)}); "
            "pass one of them with --target"
        )
    return (chosen,) if chosen == UNIVERSAL else (chosen, UNIVERSAL)


def resolve(
    state: ModelState,
    ref: Ref,
    alias_version: str | None = None,
    *,
    targets: Sequence[str] | None,
    where: str,
) -> Resolution:
    """What ``ref`` names in ``state`` (its model, in the registry at ``where``).

    ``alias_version`` is the version an alias names when the caller found it outside the alias
    map (a pointer file); ``targets`` the targets to try, best first (:func:`target_order`), or
    None for every target of the version.
    """
    alias_version = alias_version or state.aliases.get(ref.selector or "")
    version = _version(state, ref, alias_version, where)
    bundles = state.bundles_of(version)
    if targets is not None:
        found = state.find(version, targets)
        if found is None:
            raise _no_bundle(ref.model, version, targets, bundles, where)
        bundles = [found]
    alias = ref.selector if alias_version is not None else None
    return Resolution(str(ref), ref.model, version, alias, tuple(bundles))


def _version(state: ModelState, ref: Ref, alias_version: str | None, where: str) -> str:
    versions = state.versions()
    named = state.latest if ref.selector is None else alias_version
    if named is not None:
        if named not in versions:
            raise _not_held(state, ref, named, versions, where)
        return named
    if ref.selector in versions:
        return ref.selector
    raise ResolveError(
        f"model {ref.model!r} has no version or alias {ref.selector!r} in {where} "
        f"(versions: {listing(versions)}; aliases: {listing(sorted(state.aliases))})"
    )


def _not_held(
    state: ModelState, ref: Ref, named: str, versions: list[str], where: str
) -> ResolveError:
    held = f"(versions: {listing(versions)})"
    if ref.selector is None:
        return ResolveError(
            f"the index of {where} names {named!r} as the highest version of {ref.model!r}, "
            f"but its shard holds no such version {held}: ask the publisher to run "
            "`registry-build reindex`"
        )
    return ResolveError(
        f"{ref.model}@{ref.selector} points at version {named!r}, which the index of {where} "
        f"no longer holds {held}: promote the alias to one of those"
    )


def damaged_alias(model: str, alias: str, where: str, damage: str | None = None) -> ResolveError:
    """The error for an alias that is known (listed) but cannot be read; ``damage`` says how,
    when the caller knows better than "no pointer and no first record"."""
    damage = damage or (
        f"neither its pointer {alias_pointer_key(model, alias)} nor its first record "
        f"{alias_record_key(model, alias, 1)} exists"
    )
    return ResolveError(
        f"alias {alias!r} of model {model!r} in {where} is damaged: {damage}; restore the "
        "files, or promote the alias again"
    )


def _no_bundle(
    model: str,
    version: str,
    targets: Sequence[str],
    bundles: list[BundleDescriptor],
    where: str,
) -> ResolveError:
    asked = " or ".join(repr(t) for t in targets)
    have = ", ".join(b.target for b in bundles)
    return ResolveError(
        f"{model}@{version} has no bundle for target {asked} in {where} (targets of {version}: "
        f"{have}): pass one of those with --target, or pick another version"
    )
