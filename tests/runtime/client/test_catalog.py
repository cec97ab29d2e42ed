"""What a registry holds (:mod:`runtime.client.catalog`): patterns, the listing, ``show``."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.registries import demo_registry

from runtime.client.cache import Cache
from runtime.client.catalog import TargetInfo, list_models, matches, show
from runtime.client.registry import Registry


@pytest.mark.parametrize(
    ("pattern", "model", "expected"),
    [
        (None, "tiny", True),
        ("", "tiny", True),
        ("in", "tiny", True),
        ("IN", "tiny", True),
        ("ti*", "tiny", True),
        ("*ny", "Tiny-Llama", False),
        ("*llama", "tiny-llama", True),
        ("t?ny", "tiny", True),
        ("t?ny", "tinyx", False),
        ("[ab]*", "tiny", False),
        ("x", "tiny", False),
    ],
)
def test_matches(pattern: str | None, model: str, expected: bool) -> None:
    assert matches(pattern, model) is expected


def test_list_models(tmp_path: Path) -> None:
    demo_registry(tmp_path / "site")
    registry = Registry(str(tmp_path / "site"), cache=Cache(tmp_path / "cache"), offline=False)
    listing = list_models(registry, "mac")
    (model,) = listing.models
    assert (listing.pattern, listing.default, model.id, model.latest) == (
        "mac",
        None,
        "mac-only",
        "2.0",
    )
    assert [(v.version, v.targets) for v in model.versions] == [
        ("2.0", (TargetInfo("macos-arm64", model.versions[0].targets[0].size_bytes),))
    ]


def test_show_reads_the_full_descriptor(tmp_path: Path) -> None:
    published = demo_registry(tmp_path / "site")
    registry = Registry(str(tmp_path / "site"), cache=Cache(tmp_path / "cache"), offline=False)
    shown = show(registry, "tiny@stable", "universal")
    assert shown.bundle == published[("tiny", "1.2", "universal")]
    assert [a.alias for a in shown.aliases] == ["stable"]
