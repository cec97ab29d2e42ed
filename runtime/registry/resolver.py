"""Resolution: which bundles ``model@selector`` names, worked out over decoded data alone.

One function, :func:`resolve`, answers for the client, the alias commands, the HTTP routes and
publish. It does no I/O: the caller decodes ``index.json`` (:mod:`runtime.registry.index`) into a
:class:`Catalog` and, for a selector, reads the alias pointer of that name its own way (the client
through its cache, the alias commands with their repairs), and hands in the version it names.

1. No selector: the highest version (natural order, :func:`runtime.names.version_key`).
2. A selector that is an alias (the caller found its pointer): the version the alias names,
   which the index must hold.
3. Otherwise the selector is an exact version.

Then the targets, best first (:func:`target_order`): the one asked for (any spelling
:func:`runtime.names.canonical_target` accepts), else this machine's
(:func:`runtime.names.detect_target`), then ``universal``; or every target of the version.

A miss is a :class:`~runtime.errors.ResolveError` with one message per kind: no such model, no
such version or alias, an alias known but damaged, an alias naming a version the index no longer
holds, no bundle for the targets. An unknown target is an :class:`~runtime.errors.InvalidNameError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from runtime.errors import InvalidNameError, ResolveError
from runtime.names import TARGETS, UNIVERSAL, Ref, canonical_target, detect_target, version_key
from runtime.registry.wire import BundleDescriptor, Index, alias_pointer_key, alias_record_key

KnownAliases = Callable[[], Sequence[str]]  # asked only to word a miss


class Resolution(msgspec.Struct, frozen=True):
    """What a ref names: the model, its version, the alias it went through, and its bundles
    (the best one for the targets asked, or every target of the version)."""

    ref: str
    model: str
    version: str
    alias: str | None = None
    bundles: tuple[BundleDescriptor, ...] = ()


@dataclass(frozen=True)
class Catalog:
    """An index with its bundles grouped by model, for lookups by model, version and target."""

    index: Index
    by_model: dict[str, list[BundleDescriptor]] = field(default_factory=dict)

    @classmethod
    def of(cls, index: Index) -> Catalog:
        """Group ``index``'s bundles by model, once."""
        catalog = cls(index)
        for bundle in index.bundles:
            catalog.by_model.setdefault(bundle.id, []).append(bundle)
        return catalog

    def versions(self, model: str) -> list[str]:
        """The versions of ``model``, lowest first; [] when the index does not hold it."""
        return sorted({b.version for b in self.by_model.get(model, ())}, key=version_key)

    def bundles(self, model: str, version: str) -> list[BundleDescriptor]:
        """Every bundle of ``model@version``, by target name."""
        found = [b for b in self.by_model.get(model, ()) if b.version == version]
        return sorted(found, key=lambda b: b.target)

    def find(self, model: str, version: str, targets: Sequence[str]) -> BundleDescriptor | None:
        """The bundle of ``model@version`` for the first of ``targets`` that has one."""
        by_target = {b.target: b for b in self.by_model.get(model, ()) if b.version == version}
        return next((by_target[t] for t in targets if t in by_target), None)


def versions_of(catalog: Catalog, model: str, where: str) -> list[str]:
    """The versions of ``model``, lowest first, or the error for a model the index lacks."""
    versions = catalog.versions(model)
    if not versions:
        models = ", ".join(sorted(catalog.by_model)) or "none"
        raise ResolveError(f"model {model!r} is not in the index of {where} (models: {models})")
    return versions


def target_order(target: str | None) -> tuple[str, ...]:
    """The targets to try, best first: the asked (or detected) target, then ``universal``."""
    chosen = detect_target() if target is None else canonical_target(target)
    if chosen is None:
        raise InvalidNameError(
            f"target {target!r} is not a known target (known: {', '.join(TARGETS)}); "
            "pass one of them with --target"
        )
    return (chosen,) if chosen == UNIVERSAL else (chosen, UNIVERSAL)


def _none() -> Sequence[str]:
    return ()


def resolve(
    catalog: Catalog,
    ref: Ref,
    alias_version: str | None = None,
    *,
    targets: Sequence[str] | None,
    where: str,
    known_aliases: KnownAliases = _none,
) -> Resolution:
    """What ``ref`` names in ``catalog`` (the index of the registry at ``where``).

    ``alias_version`` is the version that the alias named by the selector points at, when the
    caller found one; ``targets`` the targets to try, best first (:func:`target_order`), or None
    for every target of the version; ``known_aliases`` lists the model's aliases for a message.
    """
    versions = catalog.versions(ref.model)
    if not versions:
        models = ", ".join(sorted(catalog.by_model)) or "none"
        raise ResolveError(f"model {ref.model!r} is not in the index of {where} (models: {models})")
    version = _version(ref, alias_version, versions, where, known_aliases)
    bundles = catalog.bundles(ref.model, version)
    if targets is not None:
        found = catalog.find(ref.model, version, targets)
        if found is None:
            raise _no_bundle(ref.model, version, targets, bundles, where)
        bundles = [found]
    alias = ref.selector if alias_version is not None else None
    return Resolution(str(ref), ref.model, version, alias, tuple(bundles))


def _version(
    ref: Ref, alias_version: str | None, versions: list[str], where: str, aliases: KnownAliases
) -> str:
    if ref.selector is None:
        return versions[-1]
    if alias_version is not None:
        if alias_version not in versions:
            raise ResolveError(
                f"{ref.model}@{ref.selector} points at version {alias_version!r}, which the "
                f"index of {where} no longer holds (versions: {', '.join(versions)}): promote "
                "the alias to one of those"
            )
        return alias_version
    if ref.selector in versions:
        return ref.selector
    known = aliases()
    if ref.selector in known:
        raise damaged_alias(ref.model, ref.selector, where)
    raise ResolveError(
        f"model {ref.model!r} has no version or alias {ref.selector!r} in {where} "
        f"(versions: {', '.join(versions)}; aliases: {', '.join(known) or 'none'})"
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
