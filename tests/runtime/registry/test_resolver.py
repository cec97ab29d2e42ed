"""The one resolver: pure, over decoded data; one set of target rules, one message per miss."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest

from runtime.errors import InvalidNameError, ResolveError
from runtime.names import UNIVERSAL, detect_target, parse_ref
from runtime.registry.resolver import Catalog, damaged_alias, resolve, target_order, versions_of
from runtime.registry.wire import BundleDescriptor, Index, Location, blob_key

WHERE = "/srv/registry"


def bundle(model: str, version: str, target: str) -> BundleDescriptor:
    digest = hashlib.sha256(f"{model}@{version} {target}".encode()).hexdigest()
    return BundleDescriptor(model, version, target, digest, 1, Location(url=blob_key(digest)))


CATALOG = Catalog.of(
    Index(
        bundles=(
            bundle("tiny", "1.0", "universal"),
            bundle("tiny", "1.2", "linux-x86_64"),
            bundle("tiny", "1.2", "universal"),
            bundle("tiny", "1.10", "macos-arm64"),
            bundle("mac-only", "2.0", "macos-arm64"),
        )
    )
)


def never() -> Sequence[str]:
    raise AssertionError("the aliases are asked for only to word a miss")


@pytest.mark.parametrize(
    ("ref", "alias_version", "target", "expected"),
    [
        ("tiny@1.2", None, "linux-x86_64", ("1.2", None, ["linux-x86_64"])),
        ("tiny@1.2", None, "linux-arm64", ("1.2", None, ["universal"])),  # falls back
        ("tiny@1.2", None, "linux-aarch64", ("1.2", None, ["universal"])),  # a synonym
        ("tiny@1.2", None, None, ("1.2", None, ["linux-x86_64", "universal"])),  # every target
        ("tiny", None, "macos-arm64", ("1.10", None, ["macos-arm64"])),  # 1.10 > 1.2
        ("tiny@stable", "1.2", "universal", ("1.2", "stable", ["universal"])),  # an alias
        ("tiny@1.0", "1.2", "universal", ("1.2", "1.0", ["universal"])),  # the alias wins
    ],
)
def test_resolution_table(
    ref: str, alias_version: str | None, target: str | None, expected: tuple[object, ...]
) -> None:
    targets = None if target is None else target_order(target)
    found = resolve(
        CATALOG, parse_ref(ref), alias_version, targets=targets, where=WHERE, known_aliases=never
    )
    assert (found.version, found.alias, [b.target for b in found.bundles]) == expected
    assert (found.ref, found.model) == (ref, "tiny")


@pytest.mark.parametrize(
    ("ref", "alias_version", "target", "aliases", "message"),
    [
        (
            "tinny@1.0",
            None,
            "universal",
            [],
            f"model 'tinny' is not in the index of {WHERE} (models: mac-only, tiny)",
        ),
        (
            "tiny@1.3",
            None,
            "universal",
            ["stable"],
            f"model 'tiny' has no version or alias '1.3' in {WHERE} "
            "(versions: 1.0, 1.2, 1.10; aliases: stable)",
        ),
        (
            "tiny@prod",
            None,
            "universal",
            ["prod"],
            f"alias 'prod' of model 'tiny' in {WHERE} is damaged: neither its pointer "
            "aliases/tiny/prod.json nor its first record aliases/tiny/prod/1.json exists; "
            "restore the files, or promote the alias again",
        ),
        (
            "tiny@next",
            "9.9",
            "universal",
            [],
            f"tiny@next points at version '9.9', which the index of {WHERE} no longer holds "
            "(versions: 1.0, 1.2, 1.10): promote the alias to one of those",
        ),
        (
            "mac-only@2.0",
            None,
            "linux-x86_64",
            [],
            f"mac-only@2.0 has no bundle for target 'linux-x86_64' or 'universal' in {WHERE} "
            "(targets of 2.0: macos-arm64): pass one of those with --target, or pick another "
            "version",
        ),
    ],
)
def test_one_message_per_kind_of_miss(
    ref: str, alias_version: str | None, target: str, aliases: list[str], message: str
) -> None:
    with pytest.raises(ResolveError) as caught:
        resolve(
            CATALOG,
            parse_ref(ref),
            alias_version,
            targets=target_order(target),
            where=WHERE,
            known_aliases=lambda: aliases,
        )
    assert str(caught.value) == message


def test_the_damaged_alias_message_takes_what_the_caller_knows() -> None:
    error = damaged_alias("tiny", "prod", WHERE, "no record under aliases/tiny/prod/ exists")
    assert str(error) == (
        f"alias 'prod' of model 'tiny' in {WHERE} is damaged: no record under aliases/tiny/prod/ "
        "exists; restore the files, or promote the alias again"
    )


def test_target_rules() -> None:
    mine = detect_target()
    assert target_order(None) == ((mine,) if mine == UNIVERSAL else (mine, UNIVERSAL))
    assert target_order("ios-aarch64") == ("ios-arm64", UNIVERSAL)
    assert target_order("universal") == (UNIVERSAL,)
    with pytest.raises(InvalidNameError) as caught:
        target_order("ios-x64")
    assert str(caught.value) == (
        "target 'ios-x64' is not a known target (known: macos-arm64, macos-x86_64, "
        "linux-x86_64, linux-arm64, ios-arm64, android-arm64, android-arm32, windows-x86_64, "
        "wasm-wgpu, universal); pass one of them with --target"
    )


def test_versions_of_a_model_lowest_first_or_the_unknown_model_error() -> None:
    assert versions_of(CATALOG, "tiny", WHERE) == ["1.0", "1.2", "1.10"]
    with pytest.raises(ResolveError, match=r"^model 'x' is not in the index of /srv/registry"):
        versions_of(CATALOG, "x", WHERE)
