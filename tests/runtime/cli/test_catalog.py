"""``registry-runtime list [PATTERN]`` and ``show [MODEL@REF]`` against real directories."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from support.registries import publish, shard_path, write_index

from runtime.registry.wire import BundleDescriptor, descriptor_key, encode_pretty

Run = Callable[..., tuple[int, str, str]]
Site = tuple[Path, dict[tuple[str, str, str], BundleDescriptor]]
PLACEHOLDER_NOTE = "* holds placeholder bundles (built from a missing source, not the model)\n"


def test_list_marks_the_default_model_and_placeholders(stub_site: Site, cli: Run) -> None:
    assert cli("list") == (
        0,
        "MODEL           LATEST  VERSIONS   ALIASES  TARGETS    DESCRIPTION\n"
        "real (default)  1.0     1.0        -        universal  real test bundle\n"
        "stub            0.2     0.2, 0.1*  -        universal  stub test bundle\n"
        + PLACEHOLDER_NOTE,
        "",
    )


@pytest.mark.parametrize(
    ("pattern", "models"),
    [
        ("TIN", ["tiny"]),
        ("*-only", ["mac-only"]),
        ("?iny", ["tiny"]),
        ("[mt]*", ["mac-only", "tiny"]),
    ],
)
def test_list_a_pattern(site: Site, cli: Run, pattern: str, models: list[str]) -> None:
    code, out, _ = cli("list", pattern, "--json")
    assert (code, [m["id"] for m in json.loads(out)["models"]]) == (0, models)


def test_list_versions_aliases_and_targets(site: Site, cli: Run) -> None:
    code, out, err = cli("list", "tiny")
    assert (code, err) == (0, "")
    assert out == (
        "MODEL  LATEST  VERSIONS        ALIASES     TARGETS                               "
        "DESCRIPTION\n"
        "tiny   1.10    1.10, 1.2, 1.0  stable=1.2  macos-arm64, linux-x86_64, universal  "
        "tiny test bundle\n"
    )
    listed = json.loads(cli("list", "tiny", "--json")[1])
    (tiny,) = listed["models"]
    assert [(v["version"], [t["target"] for t in v["targets"]]) for v in tiny["versions"]] == [
        ("1.10", ["universal"]),
        ("1.2", ["linux-x86_64", "macos-arm64", "universal"]),
        ("1.0", ["universal"]),
    ]
    assert (listed["default"], tiny["default"], tiny["aliases"]) == (None, False, {"stable": "1.2"})


def test_list_names_at_most_five_versions(
    tmp_path: Path, client_env: Path, cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "many"
    write_index(root, [publish(root, "m", f"1.{n}", "universal") for n in range(7)])
    monkeypatch.setenv("BUNDLE_REGISTRY", str(root))
    row = cli("list")[1].splitlines()[1]
    assert re.split(r"\s{2,}", row)[2] == "1.6, 1.5, 1.4, 1.3, 1.2 +2"


def test_list_reads_only_the_shards_of_matching_models(site: Site, cli: Run) -> None:
    root, _ = site
    lost = shard_path(root, "mac-only")
    shutil.move(root / lost, root.parent / "kept-aside.json")
    assert cli("list", "tiny")[0] == 0
    assert cli("list", "mac") == (
        1,
        "",
        f"Error: {lost} not found in {root}, though index.json names it: ask the publisher to "
        "rebuild the registry's index.json\n",
    )


def test_list_no_match(site: Site, cli: Run) -> None:
    assert cli("list", "whisper") == (0, f"no models in {site[0]} match 'whisper'\n", "")


def _with_metadata(root: Path, descriptor: BundleDescriptor, **metadata: object) -> None:
    marked = msgspec.structs.replace(descriptor, metadata=metadata, model_type="llm")
    (root / descriptor_key(*descriptor.key)).write_bytes(encode_pretty(marked))


def test_show_the_default_model(stub_site: Site, cli: Run) -> None:
    root, published = stub_site
    real = published[("real", "1.0", "universal")]
    _with_metadata(root, real, license="MIT", context=[2048, 4096])
    (file,) = real.files
    assert cli("show") == (
        0,
        "real@1.0 universal\n"
        "description  real test bundle\n"
        "model type   llm\n"
        f"blake3       {real.hash}\n"
        f"sha256       {real.sha256}\n"
        f"size         {real.size_bytes} B ({real.size_bytes} bytes)\n"
        f"location     blobs/{real.hash}.xyb\n"
        "metadata\n"
        "  context  [2048, 4096]\n"
        "  license  MIT\n"
        "files (1, 18 B)\n"
        f"  model.bin       18 B  {file.blake3}\n"
        "aliases: none\n",
        "",
    )


def test_show_the_promotion_behind_each_alias(stub_site: Site, cli: Run) -> None:
    cli("promote", "stub", "production", "0.2", "--actor", "alice", "--reason", "ship it")
    cli("promote", "stub", "beta", "0.1", "--actor", "bob")
    cli("promote", "stub", "beta", "0.2", "--actor", "carol", "--reason", "fixed")
    times = {
        a["alias"]: a["time"] for a in json.loads(cli("aliases", "stub", "--json")[1])["aliases"]
    }
    code, out, err = cli("show", "stub@production")
    assert (code, err) == (0, "")
    assert out.endswith(
        "aliases\n"
        f"  beta  record 2, {times['beta']}, by carol: fixed\n"
        f"  production  record 1, {times['production']}, by alice: ship it\n"
    )
    shown = json.loads(cli("show", "stub@beta", "--json")[1])
    assert shown["aliases"][0] == {
        "alias": "beta", "seq": 2, "time": times["beta"], "actor": "carol", "reason": "fixed",
    }  # fmt: skip
    assert (shown["bundle"]["version"], len(shown["bundle"]["files"])) == ("0.2", 1)


def test_show_offline_names_aliases_without_their_promotions(stub_site: Site, cli: Run) -> None:
    root, _ = stub_site
    cli("promote", "stub", "production", "0.2", "--actor", "alice")
    assert cli("show", "stub@production")[0] == 0
    code, out, err = cli("show", "stub@production", "--offline")
    assert (code, out.splitlines()[-2:]) == (0, ["aliases", "  production  (promotion not read)"])
    assert out.startswith("stub@0.2 universal\ndescription  stub test bundle\n")
    assert err.startswith(f"registry-runtime: offline: resolving from the cached index of {root} ")


def test_show_and_resolve_mark_a_placeholder(stub_site: Site, cli: Run) -> None:
    _, published = stub_site
    stub = published[("stub", "0.1", "universal")]
    assert cli("show", "stub@0.1")[1].startswith(
        "stub@0.1 universal  [placeholder: built from a missing source, not the model]\n"
    )
    assert cli("resolve", "stub@0.1") == (
        0, f"stub@0.1 universal {stub.hash} {stub.size_bytes} placeholder\n", ""
    )  # fmt: skip
    assert json.loads(cli("resolve", "stub@0.1", "--json")[1])["placeholder"] is True
    assert "placeholder" not in json.loads(cli("resolve", "stub@0.2", "--json")[1])
