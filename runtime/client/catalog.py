"""What a registry holds, as ``registry-runtime list`` and ``show`` tell it.

- :func:`list_models`: the models whose id matches a pattern, each with its highest version,
  aliases, versions and targets. ``index.json`` names every model with its highest version and
  aliases; the versions and targets are in each model's shard, so only the shards of the
  matching models are read (a pattern keeps a listing of a large registry cheap; no pattern reads
  every shard once, and the cache keeps them). A pattern with ``*``, ``?`` or ``[`` is a glob on
  the whole id, any other a substring of it; case is ignored either way.
- :func:`show`: the bundle a ref names, as its full descriptor
  (``descriptors/<id>/<version>/<target>.json``: metadata, files, sizes, digests), with the
  aliases that name its version and, for each, the promotion that put it there (actor, time,
  reason, record number) from the alias's history. Offline, the descriptor comes from the cache
  (else the index entry, without files) and the aliases from the saved index, without their
  promotions.

Both read through the client's :class:`~runtime.client.registry.Registry`, so they verify, cache
and work offline as a resolve does; placeholders are marked (``placeholder``).
"""

from __future__ import annotations

import fnmatch

import msgspec

from runtime.client.registry import Registry
from runtime.errors import RegistryError
from runtime.names import TARGETS, version_key
from runtime.registry.resolver import ModelState
from runtime.registry.wire import BundleDescriptor, Index

_GLOB = frozenset("*?[")


class TargetInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """One bundle of a version: its target, size, and whether it is a placeholder."""

    target: str
    size_bytes: int
    placeholder: bool = False


class VersionInfo(msgspec.Struct, frozen=True):
    """One version of a model and its bundles, by target."""

    version: str
    targets: tuple[TargetInfo, ...]


class ModelListing(msgspec.Struct, frozen=True):
    """One model as ``list`` shows it; ``versions`` newest first."""

    id: str
    latest: str
    default: bool
    description: str
    aliases: dict[str, str]
    versions: tuple[VersionInfo, ...]

    @property
    def targets(self) -> list[str]:
        """Every target any version has, in the canonical order of targets."""
        held = {t.target for v in self.versions for t in v.targets}
        return sorted(held, key=lambda t: TARGETS.index(t) if t in TARGETS else len(TARGETS))


class Listing(msgspec.Struct, frozen=True):
    """What ``list`` answers: the registry, the pattern, its default model, the models."""

    registry: str
    pattern: str | None
    default: str | None
    models: tuple[ModelListing, ...]


class AliasAt(msgspec.Struct, frozen=True):
    """An alias naming the shown version, with the promotion that made it so (its record
    number, time, actor and reason; None where they could not be read, as offline)."""

    alias: str
    seq: int | None = None
    time: str | None = None
    actor: str | None = None
    reason: str | None = None


class Shown(msgspec.Struct, frozen=True):
    """What ``show`` answers: the full descriptor and the aliases that name its version."""

    bundle: BundleDescriptor
    aliases: tuple[AliasAt, ...] = ()


def matches(pattern: str | None, model: str) -> bool:
    """Whether ``model`` matches ``pattern`` (see the module notes); no pattern matches all."""
    if not pattern:
        return True
    if _GLOB & set(pattern):
        return fnmatch.fnmatchcase(model.lower(), pattern.lower())
    return pattern.lower() in model.lower()


def list_models(registry: Registry, pattern: str | None = None) -> Listing:
    """The models of ``registry`` whose id matches ``pattern``, by id."""
    index = registry.mirror.current()
    default = index.default if isinstance(index.default, str) else None
    chosen = sorted(m for m in index.models if matches(pattern, m))
    models = tuple(_listing(registry, index, model, default) for model in chosen)
    return Listing(registry.location, pattern, default, models)


def _listing(registry: Registry, index: Index, model: str, default: str | None) -> ModelListing:
    entry, shard = registry.mirror.shard(model, index)
    state = ModelState.of(model, entry, shard)
    versions = tuple(
        VersionInfo(v, tuple(_target(b) for b in state.bundles_of(v)))
        for v in sorted(state.versions(), key=version_key, reverse=True)
    )
    return ModelListing(
        model, entry.latest, model == default, shard.description, dict(entry.aliases), versions
    )


def _target(bundle: BundleDescriptor) -> TargetInfo:
    return TargetInfo(bundle.target, bundle.size_bytes, bundle.placeholder)


def show(registry: Registry, ref: str | None, target: str | None = None) -> Shown:
    """The bundle ``ref`` names for ``target`` (as a resolve picks it; no ref: the default
    model), its full descriptor and the aliases naming its version (see the module notes)."""
    entry = registry.resolve(ref, target)
    if registry.mirror.fallback:
        bundle = registry.cache.descriptor(entry.hash) or entry
        return Shown(bundle, _saved_aliases(registry, entry))
    return Shown(registry.descriptor(entry), _promoted_aliases(registry, entry))


def _saved_aliases(registry: Registry, entry: BundleDescriptor) -> tuple[AliasAt, ...]:
    """The aliases naming ``entry``'s version in the saved index (offline: no promotions)."""
    index = registry.mirror.saved_index()
    found = index.models.get(entry.id) if index is not None else None
    named = found.aliases.items() if found is not None else ()
    return tuple(AliasAt(alias) for alias, version in sorted(named) if version == entry.version)


def _promoted_aliases(registry: Registry, entry: BundleDescriptor) -> tuple[AliasAt, ...]:
    """The aliases naming ``entry``'s version by their pointers, with their promotions; those
    of the index when the promotions cannot be read (with a notice saying why)."""
    from runtime.aliases import aliases

    try:
        views = aliases(registry.store, entry.id)
    except RegistryError as exc:
        registry.notice(f"the promotions of {entry.id}'s aliases were not read: {exc}")
        return _saved_aliases(registry, entry)
    return tuple(
        AliasAt(v.alias, v.seq, v.time, v.actor, v.reason)
        for v in views
        if v.version == entry.version
    )
