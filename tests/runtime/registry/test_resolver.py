"""The one resolver: pure, over decoded data; one set of target rules, one message per miss."""

from __future__ import annotations

import hashlib

import pytest

from runtime.errors import InvalidNameError, ResolveError
from runtime.names import UNIVERSAL, detect_target, parse_ref
from runtime.registry.resolver import (
    ModelState,
    damaged_alias,
    listing,
    resolve,
    target_order,
    unknown_model,
)
from runtime.registry.wire import BundleDescriptor, Location, blob_key

WHERE = "/srv/registry"


def bundle(model: str, version: str, target: str) -> BundleDescriptor:
    digest = hashlib.sha256(f"{model}@{version} {target}".encode()).hexdigest()
    return BundleDescriptor(model, version, target, digest, 1, Location(url=blob_key(digest)))


TINY = (
    bundle("tiny", "1.0", "universal"),
    bundle("tiny", "1.2", "linux-x86_64"),
    bundle("tiny", "1.2", "universal"),
    bundle("tiny", "1.10", "macos-arm64"),
)
STATES = {
    "tiny": ModelState("tiny", "1.10", {"stable": "1.2", "next": "9.9"}, TINY),
    "mac-only": ModelState("mac-only", "2.0", {}, (bundle("mac-only", "2.0", "macos-arm64"),)),
}


@pytest.mark.parametrize(
    ("ref", "alias_version", "target", "expected"),
    [
        ("tiny@1.2", None, "linux-x86_64", ("1.2", None, ["linux-x86_64"])),
        ("tiny@1.2", None, "linux-arm64", ("1.2", None, ["universal"])),  # falls back
        ("tiny@1.2", None, "linux-aarch64", ("1.2", None, ["universal"])),  # a synonym
        ("tiny@1.2", None, None, ("1.2", None, ["linux-x86_64", "universal"])),  # every target
        ("tiny", None, "macos-arm64", ("1.10", None, ["macos-arm64"])),  # latest: 1.10 > 1.2
        ("tiny@stable", None, "universal", ("1.2", "stable", ["universal"])),  # the alias map
        ("tiny@prod", "1.0", "universal", ("1.0", "prod", ["universal"])),  # a pointer found
        ("tiny@1.0", "1.2", "universal", ("1.2", "1.0", ["universal"])),  # the alias wins
    ],
)
def test_resolution_table(
    ref: str, alias_version: str | None, target: str | None, expected: tuple[object, ...]
) -> None:
    targets = None if target is None else target_order(target)
    found = resolve(STATES["tiny"], parse_ref(ref), alias_version, targets=targets, where=WHERE)
    assert (found.version, found.alias, [b.target for b in found.bundles]) == expected
    assert (found.ref, found.model) == (ref, "tiny")


@pytest.mark.parametrize(
    ("ref", "target", "message"),
    [
        (
            "tiny@1.3",
            "universal",
            f"model 'tiny' has no version or alias '1.3' in {WHERE} "
            "(versions: 1.0, 1.2, 1.10; aliases: next, stable)",
        ),
        (
            "tiny@next",
            "universal",
            f"tiny@next points at version '9.9', which the index of {WHERE} no longer holds "
            "(versions: 1.0, 1.2, 1.10): promote the alias to one of those",
        ),
        (
            "mac-only@2.0",
            "linux-x86_64",
            f"mac-only@2.0 has no bundle for target 'linux-x86_64' or 'universal' in {WHERE} "
            "(targets of 2.0: macos-arm64): pass one of those with --target, or pick another "
            "version",
        ),
    ],
)
def test_one_message_per_kind_of_miss(ref: str, target: str, message: str) -> None:
    parsed = parse_ref(ref)
    with pytest.raises(ResolveError) as caught:
        resolve(STATES[parsed.model], parsed, targets=target_order(target), where=WHERE)
    assert str(caught.value) == message


def test_a_latest_the_shard_does_not_hold_says_to_reindex() -> None:
    state = ModelState("tiny", "2.0", {}, TINY)
    with pytest.raises(ResolveError) as caught:
        resolve(state, parse_ref("tiny"), targets=("universal",), where=WHERE)
    assert str(caught.value) == (
        f"the index of {WHERE} names '2.0' as the highest version of 'tiny', but its shard holds "
        "no such version (versions: 1.0, 1.2, 1.10): ask the publisher to run "
        "`registry-build reindex`"
    )


def test_an_unknown_model_lists_twenty_models_and_counts_the_rest() -> None:
    assert str(unknown_model("tinny", ["tiny", "mac-only"], WHERE)) == (
        f"model 'tinny' is not in the index of {WHERE} (models: mac-only, tiny)"
    )
    many = [f"model-{n:04d}" for n in range(5000)]
    assert listing(many) == ", ".join(many[:20]) + " and 4980 more"
    assert listing([]) == "none"


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


def test_versions_of_a_model_lowest_first() -> None:
    assert STATES["tiny"].versions() == ["1.0", "1.2", "1.10"]
    assert [b.target for b in STATES["tiny"].bundles_of("1.2")] == ["linux-x86_64", "universal"]
