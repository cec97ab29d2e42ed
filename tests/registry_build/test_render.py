"""The browse pages: render_site on its own, then the built page in headless Chromium.

Most Chromium tests drive ``chromium --headless --dump-dom`` (no extra Python dependency): the
serialized DOM is taken after the page's script ran and its fetches finished
(``--virtual-time-budget`` does not advance while a request is pending). The layout tests need
measurements, clicks and screenshots: they speak the DevTools protocol to Chromium over a pipe
(``--remote-debugging-pipe``: file descriptors 3 and 4, so no port and no WebSocket library).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import posixpath
import random
import re
import select
import shutil
import signal
import struct
import subprocess
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import blake3
import msgspec
import pytest
from support.sources import catalog_of

from registry_build.build import BuildOptions, build
from registry_build.index import Catalog
from registry_build.render import COMMAND, LIST_SHELL, REGISTRY_PLACEHOLDER, render_site
from runtime.aliases import promote
from runtime.errors import InvalidNameError
from runtime.registry.wire import (
    AliasIndex,
    AliasRecord,
    AliasView,
    BundleDescriptor,
    Location,
    ModelInfo,
    alias_index_key,
    blob_key,
)
from runtime.storage.local import LocalStore

# --- a small HTML tree, enough to query pages and Chromium's serialized DOM ----------------------

_VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "wbr",
}


@dataclass
class Node:
    """An element: tag, attributes, and children (elements or text)."""

    tag: str
    attrs: dict[str, str | None]
    children: list[Node | str] = field(default_factory=list)

    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def all(self, tag: str, cls: str | None = None) -> list[Node]:
        return [n for n in self.iter() if n.tag == tag and (cls is None or cls in n.classes())]

    def one(self, tag: str, cls: str | None = None) -> Node:
        found = self.all(tag, cls)
        assert len(found) == 1, f"expected one <{tag} class={cls}>, found {len(found)}"
        return found[0]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(page: bytes | str) -> Node:
    builder = _TreeBuilder()
    builder.feed(page.decode() if isinstance(page, bytes) else page)
    builder.close()
    return builder.root


def sections(doc: Node) -> dict[str, bool]:
    """Model id -> shown (not ``hidden``), for every model section on a page."""
    return {
        str(s.attrs["id"]).removeprefix("m-"): "hidden" not in s.attrs
        for s in doc.all("section", "model")
    }


def alias_box(doc: Node, model: str) -> Node:
    [box] = [d for d in doc.all("div", "aliases") if d.attrs.get("data-model") == model]
    return box


# --- unit tests of render_site ---------------------------------------------------------------


def bundle(
    model: str, version: str, target: str = "universal", size: int = 1234, sha256: str = ""
) -> BundleDescriptor:
    digest = blake3.blake3(f"{model}@{version}/{target}".encode()).hexdigest()
    return BundleDescriptor(
        id=model,
        version=version,
        target=target,
        hash=digest,
        size_bytes=size,
        location=Location("remote", blob_key(digest)),
        sha256=sha256,
        created_at="2026-01-02T03:04:05Z",
    )


def digests(row: Node) -> dict[str, tuple[str, str]]:
    """Algorithm -> (short digest shown, full digest when opened), for each digest of a row."""
    return {
        d.one("span", "algo").text(): (
            d.one("summary").all("code")[0].text(),
            d.one("code", "full").text(),
        )
        for d in row.all("details", "hash")
    }


def catalog(bundles: list[BundleDescriptor], **models: ModelInfo) -> Catalog:
    return Catalog(models=models, bundles=tuple(bundles))


HOSTILE = "<script>alert(\"x\")</script><img src=x onerror=alert(1)> & 'q'"


def test_user_data_is_escaped_everywhere() -> None:
    info = ModelInfo(
        description=HOSTILE,
        metadata={"license": HOSTILE, "tags": [HOSTILE, "ok"], "source": '" onmouseover="x'},
    )
    record = AliasRecord("evil", HOSTILE, "1.0", None, HOSTILE, HOSTILE, "2026-01-02T03:04Z", 1)
    view = AliasView(HOSTILE, "1.0", 1, record.time, HOSTILE, HOSTILE, (record,))
    index = catalog(
        [
            bundle("evil", "1.0"),
            msgspec.structs.replace(
                bundle("evil", "1.0", "linux-x86_64"),
                location=Location("remote", "javascript:alert(1)"),
            ),
        ],
        evil=info,
    )
    page = render_site(index, {"evil": AliasIndex("evil", (view,))})["index.html"]
    doc = parse(page)
    assert len(doc.all("script")) == 1  # only the page's own
    assert not doc.all("img")
    assert not [n for n in doc.iter() if any(a.startswith("on") for a in n.attrs)]
    assert doc.one("p", "desc").text() == HOSTILE  # shown as text, exactly
    assert HOSTILE in [n.text() for n in doc.all("dd")]
    assert [t.text() for t in doc.all("span", "tag")] == [HOSTILE, "ok"]
    assert HOSTILE in doc.one("span", "alias-meta").text()
    assert doc.one("span", "alias-name").text() == HOSTILE
    assert alias_box(doc, "evil").one("code", "cmd").text() == (
        f"{COMMAND} evil@{HOSTILE} --registry {REGISTRY_PLACEHOLDER}"
    )
    hrefs = [str(a.attrs["href"]) for a in doc.all("a", "dl")]
    assert hrefs == [index.bundles[0].location.url]  # the javascript: URL is not linked


@pytest.mark.parametrize(
    ("url", "href"),
    [
        ("blobs/x.xyb", "blobs/x.xyb"),
        ("mirror/x.xyb", "mirror/x.xyb"),
        ("https://cdn.example/x.xyb", "https://cdn.example/x.xyb"),
        ("blobs/a&b.xyb", "blobs/a&b.xyb"),
        ("javascript:alert(1)", None),
        (" JavaScript:alert(1)", None),
        ("data:text/html,x", None),
        ("/etc/passwd", None),
        ("//evil.example/x.xyb", None),
        (" //evil.example/x.xyb", None),
        ("\\\\evil.example/x.xyb", None),
        ("", None),
    ],
)
def test_download_links_stay_on_the_registry_or_http(url: str, href: str | None) -> None:
    entry = msgspec.structs.replace(bundle("m", "1"), location=Location("remote", url))
    row = parse(render_site(catalog([entry]))["index.html"]).one("tbody")
    assert [a.attrs["href"] for a in row.all("a", "dl")] == ([href] if href else [])


@pytest.mark.parametrize(
    ("versions", "newest_first"),
    [
        (["1.9", "1.10", "1.2", "2.0-rc.1", "2.0", "10.0"],
         ["10.0", "2.0", "2.0-rc.1", "1.10", "1.9", "1.2"]),
        (["2026-02-13_002", "2026-01-31_001", "2026-02-13_001"],
         ["2026-02-13_002", "2026-02-13_001", "2026-01-31_001"]),
    ],
)  # fmt: skip
def test_versions_are_newest_first_in_natural_order(
    versions: list[str], newest_first: list[str]
) -> None:
    page = render_site(catalog([bundle("m", v) for v in versions]))["index.html"]
    shown = [str(b.attrs["id"]).removeprefix("m-m@") for b in parse(page).all("tbody")]
    assert shown == newest_first


def test_each_target_shows_size_digests_download_and_fetch_command() -> None:
    entries = [
        bundle("m", "1.0", "linux-x86_64", 3 * 1024 * 1024, sha256="ab" * 32),
        bundle("m", "1.0", "universal", sha256="cd" * 32),
    ]
    doc = parse(
        render_site(catalog(entries, m=ModelInfo("Some model", {"license": "MIT"})))["index.html"]
    )
    rows = doc.one("tbody").all("tr", "facts")
    commands = doc.one("tbody").all("tr", "fetch")
    assert len(rows) == len(commands) == 2
    for row, command, entry in zip(rows, commands, entries, strict=True):
        assert row.one("td", "target").text() == entry.target
        assert digests(row) == {
            "BLAKE3": (entry.hash[:12], entry.hash),
            "SHA-256": (entry.sha256[:12], entry.sha256),
        }
        assert row.one("a", "dl").attrs["href"] == entry.location.url
        assert command.one("code", "cmd").text() == (
            f"{COMMAND} m@1.0 --target {entry.target} --registry {REGISTRY_PLACEHOLDER}"
        )
        assert command.one("button", "copy").text() == "Copy"
    assert [td.text() for td in rows[0].all("td")][1] == "3 MiB"
    assert doc.one("p", "desc").text() == "Some model"
    assert [n.text() for n in doc.all("dd")] == ["MIT"]


def test_a_bundle_without_sha256_shows_its_blake3_alone() -> None:
    entry = bundle("m", "1.0")
    row = parse(render_site(catalog([entry]))["index.html"]).one("tr", "facts")
    assert digests(row) == {"BLAKE3": (entry.hash[:12], entry.hash)}


def test_a_placeholder_is_marked_on_its_target() -> None:
    stand_in = msgspec.structs.replace(
        bundle("m", "1.0", "linux-x86_64"), metadata={"placeholder": True}
    )
    entries = [stand_in, bundle("m", "1.0", "universal"), bundle("m", "0.9", "linux-x86_64")]
    doc = parse(render_site(catalog(entries))["index.html"])
    marked = {
        (str(body.attrs["id"]), row.one("td", "target").text())
        for body in doc.all("tbody")
        for row in body.all("tr", "facts")
        if row.all("span", "flag")
    }
    assert marked == {("m-m@1.0", "linux-x86_64 placeholder")}
    flag = doc.one("span", "flag")
    assert flag.attrs["title"] == "A stand-in: the source was missing at build time"


def test_each_alias_shows_its_fetch_command() -> None:
    views = [
        AliasView(name, "1.0", 1, "2026-01-02T03:04:05Z", "ana", "") for name in ("beta", "stable")
    ]
    index = catalog([bundle("m", "1.0")])
    page = render_site(index, {"m": AliasIndex("m", tuple(views))})["index.html"]
    box = alias_box(parse(page), "m")
    assert [c.text() for c in box.all("code", "cmd")] == [
        f"{COMMAND} m@beta --registry {REGISTRY_PLACEHOLDER}",
        f"{COMMAND} m@stable --registry {REGISTRY_PLACEHOLDER}",
    ]
    assert len(box.all("button", "copy")) == 2


def test_everything_shows_without_javascript() -> None:
    page = render_site(catalog([bundle("a", "1"), bundle("b", "1")]))["index.html"]
    doc = parse(page)
    hidden = [n.attrs.get("id") for n in doc.iter() if "hidden" in n.attrs]
    assert hidden == ["toolbar"]  # the filter box needs the script; nothing else is hidden
    assert sections(doc) == {"a": True, "b": True}


def test_aliases_show_with_their_history_newest_first() -> None:
    first = AliasRecord("m", "stable", "1.0", None, "ana", "", "2026-01-02T03:04:05Z", 1)
    second = AliasRecord(
        "m", "stable", "2.0", "1.0", "bo", "ship it", "2026-02-03T04:05:06Z", 2, "ab" * 32
    )
    view = AliasView("stable", "2.0", 2, second.time, "bo", "ship it", (first, second))
    index = catalog([bundle("m", "1.0"), bundle("m", "2.0")])
    box = alias_box(parse(render_site(index, {"m": AliasIndex("m", (view,))})["index.html"]), "m")
    assert box.one("span", "alias-name").text() == "stable"
    assert box.one("a", "alias-version").attrs["href"] == "#m-m@2.0"
    assert box.one("span", "alias-meta").text() == "by bo, 2026-02-03 04:05 UTC: ship it"
    assert [li.text() for li in box.one("ol").all("li")] == [
        "#2 2026-02-03 04:05 UTC · bo · 1.0 → 2.0 · ship it",
        "#1 2026-01-02 03:04 UTC · ana · (none) → 1.0",
    ]


TARGETS = ("linux-x86_64", "linux-arm64", "macos-arm64", "android-arm64", "universal")


def big_index(models: int) -> Catalog:
    names = [f"model-{m:03d}" for m in range(models)]
    return catalog(
        [bundle(name, f"1.{v}", t) for name in names for v in range(4) for t in TARGETS],
        **{name: ModelInfo(f"Model {name}", {"tags": ["llm"]}) for name in names},
    )


@pytest.mark.parametrize("budget", [200_000, 75_000])
def test_a_large_registry_is_split_per_model_within_the_budget(budget: int) -> None:
    index = big_index(40)
    assert len(render_site(index)["index.html"]) > budget  # one page would not fit
    pages = render_site(index, budget=budget)
    assert max(len(p) for p in pages.values()) <= budget
    fronts = ["index.html", *sorted(k for k in pages if re.fullmatch(r"index-\d+\.html", k))]
    assert len(fronts) == (1 if budget == 200_000 else 2)
    assert sorted(pages) == sorted([*fronts, *(f"models/{m}.html" for m in index.models)])
    listed = []
    for name in fronts:
        doc = parse(pages[name])
        listed += [str(a.attrs["href"]) for li in doc.all("li", "row") for a in li.all("a")[:1]]
        pager = [str(a.attrs["href"]) for nav in doc.all("nav", "pager") for a in nav.all("a")]
        assert sorted(pager) == sorted(n for n in fronts if n != name)
    assert listed == [f"models/{m}.html" for m in index.models]  # each once, in order
    doc = parse(pages["models/model-007.html"])
    assert sections(doc) == {"model-007": True}
    assert {str(a.attrs["href"]) for a in doc.all("a", "dl")} == {
        f"../{d.location.url}" for d in index.bundles if d.id == "model-007"
    }


def test_a_split_needs_valid_model_ids() -> None:
    index = catalog([bundle("ok", "1"), bundle("../escape", "1")])
    with pytest.raises(InvalidNameError, match=r"model id '\.\./escape' is not a valid name"):
        render_site(index, budget=10_000)


def pager_links(page: bytes, rel: str) -> list[str]:
    """The ``rel`` ("prev" or "next") links of a page's version pagers, as written."""
    navs = parse(page).all("nav", "pager")
    return [str(a.attrs["href"]) for nav in navs for a in nav.all("a") if a.attrs.get("rel") == rel]


def version_pages(pages: dict[str, bytes], model: str) -> list[str]:
    """A model's page keys in pager order: from ``models/<id>.html``, following "next" links."""
    chain = [f"models/{model}.html"]
    while nexts := set(pager_links(pages[chain[-1]], "next")):
        [href] = nexts
        key = posixpath.normpath(posixpath.join(posixpath.dirname(chain[-1]), href))
        assert key in pages and key not in chain, key
        chain.append(key)
    return chain


NIGHTLY = [f"1.{v}" for v in range(120)]  # 600 bundles: ~360 kB on one page


@pytest.mark.parametrize(
    "others",
    [(), ("nightly-2", "nightly.2", "nightly.html")],  # ids that look like another page's name
)
def test_a_model_too_big_for_one_page_splits_its_versions_over_pages(
    others: tuple[str, ...],
) -> None:
    budget = 100_000
    shuffled = NIGHTLY[:]
    random.Random(3).shuffle(shuffled)  # the order of the index does not matter
    entries = [bundle("nightly", v, t) for v in shuffled for t in TARGETS]
    index = catalog(
        [*entries, *(bundle(other, "1") for other in others)],
        nightly=ModelInfo("Nightly builds", {"license": "MIT", "tags": ["llm"]}),
    )
    record = AliasRecord("nightly", "stable", "1.0", None, "ana", "", "2026-01-02T03:04:05Z", 1)
    view = AliasView("stable", "1.0", 1, record.time, "ana", "", (record,))
    pages = render_site(index, {"nightly": AliasIndex("nightly", (view,))}, budget=budget)
    assert max(len(p) for p in pages.values()) <= budget
    chain = version_pages(pages, "nightly")
    assert len(chain) >= 4
    assert sorted(pages) == sorted(["index.html", *chain, *(f"models/{o}.html" for o in others)])
    shown = [
        str(b.attrs["id"]).removeprefix("m-nightly@")
        for key in chain
        for b in parse(pages[key]).all("tbody")
    ]
    assert shown == NIGHTLY[::-1]  # each once, newest first: 1.119 ... 1.10, 1.9 ... 1.0
    for number, key in enumerate(chain, start=1):
        doc = parse(pages[key])
        pagers = [nav.one("span", "current").text() for nav in doc.all("nav", "pager")]
        assert pagers == [f"Versions page {number} of {len(chain)}"] * 2  # above and below
        newer = [chain[number - 2].removeprefix("models/")] if number > 1 else []
        assert pager_links(pages[key], "prev") == newer * 2  # "next" is what the chain followed
        assert sections(doc) == {"nightly": True}
        head = [doc.all("p", "desc"), doc.all("dl", "meta"), doc.all("div", "aliases")]
        assert [len(found) for found in head] == ([1, 1, 1] if number == 1 else [0, 0, 0])
    first = parse(pages[chain[0]])
    link = str(first.one("a", "alias-version").attrs["href"])
    assert link == f"{chain[-1].removeprefix('models/')}#m-nightly@1.0"  # on the last page
    assert "m-nightly@1.0" in {b.attrs["id"] for b in parse(pages[chain[-1]]).all("tbody")}
    rows = parse(pages["index.html"]).all("li", "row")
    assert [str(row.all("a")[0].attrs["href"]) for row in rows] == [
        f"models/{m}.html" for m in sorted(["nightly", *others])
    ]


def test_a_front_list_row_stays_small_however_many_tags_and_aliases() -> None:
    tags = [f"tag-{n}-{'x' * 100}" for n in range(1000)]
    aliases = [AliasView(f"a{n}", "1", 1, "2026-01-02T03:04:05Z", "ana", "") for n in range(1000)]
    index = catalog([bundle("m", "1"), bundle("n", "1")], m=ModelInfo("", {"tags": tags}))
    index.aliases["m"] = {a.alias: a.version for a in aliases}  # the list shows index.json's map
    pages = render_site(index, {"m": AliasIndex("m", tuple(aliases))}, budget=100_000)
    assert len(pages["index.html"]) < 30_000
    row = parse(pages["index.html"]).all("li", "row")[0]
    shown = [t.text() for t in row.all("span", "tag")]
    assert len(shown) == 21 and shown[0] == f"tag-0-{'x' * 71}..." and shown[-1] == "+980"
    badges = [b.text() for b in row.all("span", "badge")]
    assert badges[0] == "a0 → 1" and badges[20:] == ["+980"]
    assert len(parse(pages["models/m.html"]).all("span", "tag")) == 1000  # all on its own page


def test_same_input_gives_the_same_bytes() -> None:
    index = big_index(5)
    shuffled = list(index.bundles)
    random.Random(7).shuffle(shuffled)
    again = Catalog(models=dict(reversed(index.models.items())), bundles=tuple(shuffled))
    for budget in (2_000_000, 75_000, 20_000):  # one page, a page per model, and per versions
        first = render_site(index, budget=budget)
        assert render_site(index, budget=budget) == first
        assert render_site(again, budget=budget) == first


# --- the built page in headless Chromium -----------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_HAS_CHROMIUM = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium); CI installs it"
)


def needs_chromium(test: Callable[..., None]) -> Callable[..., None]:
    """A test in a real headless Chromium: slow (a browser per test), skipped without one."""
    marked: Callable[..., None] = pytest.mark.slow(_HAS_CHROMIUM(test))
    return marked


FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


@pytest.fixture
def browse(tmp_path: Path) -> Callable[[str], Node]:
    """Load a URL in headless Chromium; its DOM once scripts and their fetches are done."""
    assert CHROMIUM is not None

    def load(url: str) -> Node:
        done = subprocess.run(
            [
                CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'chromium'}",
                "--virtual-time-budget=3000", "--dump-dom", url,
            ],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 0 and "<html" in done.stdout, done.stderr[-2000:]
        return parse(done.stdout)

    return load


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A built registry: alpha (two versions, two targets) and beta, alpha@stable -> 1.10."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GITHUB_SHA", raising=False)  # else the promotion reason names a commit
    (tmp_path / "a.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 8)
    (tmp_path / "b.onnx").write_bytes(b"onnx" * 100)

    def target(platform: str, source: str) -> dict[str, str]:
        return {
            "platform": platform,
            "model_file": source,
            "model_type": "gguf",
            "source_path": source,
        }

    alpha = {
        "model_id": "alpha",
        "description": "A small language model",
        "metadata": {"tags": ["llm"]},
    }
    bundles = {
        "alpha-1.9": {**alpha, "version": "1.9", "targets": [target("universal", "a.gguf")]},
        "alpha-1.10": {**alpha, "version": "1.10", "targets": [
            target("universal", "a.gguf"), target("linux-x86_64", "b.onnx")]},
        "beta": {"model_id": "beta", "version": "0.1", "description": "An encoder",
                 "targets": [target("universal", "b.onnx")]},
    }  # fmt: skip
    (tmp_path / "bundles.json").write_text(json.dumps({"bundles": bundles}))
    out = tmp_path / "site"
    build(tmp_path / "bundles.json", str(out), BuildOptions(only=("alpha",), alias="stable"))
    build(tmp_path / "bundles.json", str(out))
    return out


def check_downloads(doc: Node, page_url: str) -> int:
    """Fetch every download link of the page; it must hash to both full digests shown beside it."""
    rows = [row for row in doc.all("tr") if row.all("a", "dl")]
    for row in rows:
        shown = digests(row)
        assert all(full.startswith(short) for short, full in shown.values())
        href = urllib.parse.urljoin(page_url, str(row.one("a", "dl").attrs["href"]))
        with urllib.request.urlopen(href, timeout=10) as response:
            data = response.read()
        assert shown == {
            "BLAKE3": (shown["BLAKE3"][0], blake3.blake3(data).hexdigest()),
            "SHA-256": (shown["SHA-256"][0], hashlib.sha256(data).hexdigest()),
        }
    return len(rows)


@needs_chromium
def test_chromium_lists_every_model_with_verified_downloads(
    site: Path, http_server: Callable[[Path], str], browse: Callable[[str], Node]
) -> None:
    base = http_server(site)
    doc = browse(f"{base}/index.html")
    assert sections(doc) == {"alpha": True, "beta": True}
    assert doc.one("div", "toolbar").attrs.get("hidden") is None  # the script ran
    assert check_downloads(doc, f"{base}/index.html") == 4
    commands = [c.text() for c in doc.all("code", "cmd")]
    assert f"{COMMAND} alpha@1.10 --target linux-x86_64 --registry {base}" in commands
    assert alias_box(doc, "alpha").one("a", "alias-version").text() == "1.10"


@needs_chromium
@pytest.mark.parametrize("scheme", ["http", "file"])
def test_chromium_filter_narrows_the_list(
    scheme: str, site: Path, http_server: Callable[[Path], str], browse: Callable[[str], Node]
) -> None:
    base = http_server(site) if scheme == "http" else site.as_uri()
    doc = browse(f"{base}/index.html?q=ENCODER")  # matches beta's description, any case
    assert sections(doc) == {"alpha": False, "beta": True}
    assert doc.one("span", "count").text() == "1 of 2 shown"
    registry = base if scheme == "http" else str(site)
    assert {c.text().rsplit(" ", 1)[1] for c in doc.all("code", "cmd")} == {registry}


@needs_chromium
def test_chromium_shows_a_promotion_without_a_rerender(
    site: Path, http_server: Callable[[Path], str], browse: Callable[[str], Node]
) -> None:
    page = (site / "index.html").read_bytes()
    static = alias_box(parse(page), "alpha")
    assert static.one("a", "alias-version").text() == "1.10"
    promote(LocalStore(site), "alpha", "stable", "1.9", "ops", "roll back")
    promote(LocalStore(site), "beta", "canary", "0.1", "ops", "")
    assert (site / "index.html").read_bytes() == page  # nothing re-rendered
    base = http_server(site)
    doc = browse(f"{base}/index.html")
    box = alias_box(doc, "alpha")
    assert box.one("a", "alias-version").text() == "1.9"
    assert box.one("span", "alias-meta").text().startswith("by ops, ")
    assert box.one("code", "cmd").text() == f"{COMMAND} alpha@stable --registry {base}"
    assert alias_box(doc, "beta").one("button", "copy").text() == "Copy"
    assert not doc.all("p", "offline")
    assert [li.text().split(" · ", 2)[2] for li in box.one("ol").all("li")] == [
        "1.10 → 1.9 · roll back",
        "(none) → 1.10 · registry-build build",
    ]


def published(site: Path) -> tuple[Catalog, dict[str, AliasIndex]]:
    """The catalog and alias views of a built site, as the render reads them."""
    index = catalog_of(LocalStore(site))[1]
    views = {
        model: msgspec.json.decode((site / alias_index_key(model)).read_bytes(), type=AliasIndex)
        for model in index.models
        if (site / alias_index_key(model)).is_file()
    }
    return index, views


def write(site: Path, pages: dict[str, bytes]) -> None:
    for key, data in pages.items():
        (site / key).parent.mkdir(parents=True, exist_ok=True)
        (site / key).write_bytes(data)


@needs_chromium
def test_chromium_split_model_page_links_climb_to_the_root(
    site: Path, http_server: Callable[[Path], str], browse: Callable[[str], Node]
) -> None:
    index, views = published(site)
    single = render_site(index, views)["index.html"]
    pages = render_site(index, views, budget=len(single) - 1)  # one byte short: split
    assert "models/alpha.html" in pages
    write(site, pages)
    promote(LocalStore(site), "alpha", "stable", "1.9", "ops", "roll back")
    base = http_server(site)
    doc = browse(f"{base}/models/alpha.html")
    assert sections(doc) == {"alpha": True}
    assert check_downloads(doc, f"{base}/models/alpha.html") == 3
    assert {c.text().rsplit(" ", 1)[1] for c in doc.all("code", "cmd")} == {base}
    assert alias_box(doc, "alpha").one("a", "alias-version").text() == "1.9"


@needs_chromium
def test_chromium_version_pages_link_each_other_and_keep_alias_links(
    site: Path, http_server: Callable[[Path], str], browse: Callable[[str], Node]
) -> None:
    promote(LocalStore(site), "alpha", "stable", "1.9", "ops", "roll back")  # to page 2
    index, views = published(site)
    whole = render_site(index, views, budget=1_000)["models/alpha.html"]  # split per model
    pages = render_site(index, views, budget=len(whole) - 1)  # one byte short: split alpha too
    assert sorted(k for k in pages if k.startswith("models/alpha")) == [
        "models/alpha.html",
        "models/alpha~2.html",
    ]
    write(site, pages)
    promote(LocalStore(site), "alpha", "canary", "1.10", "ops", "try")  # after the render
    base = http_server(site)
    first = browse(f"{base}/models/alpha.html")
    assert [str(b.attrs["id"]) for b in first.all("tbody")] == ["m-alpha@1.10"]
    assert check_downloads(first, f"{base}/models/alpha.html") == 2
    box = alias_box(first, "alpha")  # re-read by the script: stable still links to page 2
    assert {a.text(): a.attrs["href"] for a in box.all("a", "alias-version")} == {
        "1.9": "alpha~2.html#m-alpha@1.9",
        "1.10": "#m-alpha@1.10",
    }
    assert [str(a.attrs["href"]) for a in first.all("a") if a.attrs.get("rel")] == [
        "alpha~2.html"
    ] * 2
    second = browse(f"{base}/models/alpha~2.html#m-alpha@1.9")
    assert [str(b.attrs["id"]) for b in second.all("tbody")] == ["m-alpha@1.9"]
    assert check_downloads(second, f"{base}/models/alpha~2.html") == 1
    assert not second.all("div", "aliases")
    assert [str(a.attrs["href"]) for a in second.all("a") if a.attrs.get("rel")] == [
        "alpha.html"
    ] * 2
    assert {c.text().rsplit(" ", 1)[1] for c in second.all("code", "cmd")} == {base}


@needs_chromium
def test_chromium_file_page_shows_the_aliases_known_at_render(
    site: Path, browse: Callable[[str], Node]
) -> None:
    promote(LocalStore(site), "beta", "stable", "0.1", "ops", "")  # after the render
    doc = browse(f"{site.as_uri()}/index.html")
    alpha = alias_box(doc, "alpha")  # from the page itself: a file cannot be fetched by script
    assert alpha.one("a", "alias-version").text() == "1.10"
    assert alpha.one("code", "cmd").text() == f"{COMMAND} alpha@stable --registry {site}"
    assert not alias_box(doc, "beta").all("li")
    assert doc.one("p", "offline").text() == (
        "Opened from a file: aliases are shown as of the last render. "
        "Served over HTTP(S), this page reads them live."
    )
    write(site, render_site(*published(site)))  # what the next build or publish renders
    beta = alias_box(browse(f"{site.as_uri()}/index.html"), "beta")
    assert beta.one("code", "cmd").text() == f"{COMMAND} beta@stable --registry {site}"


# --- the layout at a desktop's and a phone's width, over the DevTools protocol ------------------


class DevTools:
    """A headless Chromium with one page, driven over the DevTools protocol on a pipe."""

    def __init__(self, profile: Path, log: Path) -> None:
        assert CHROMIUM is not None
        ours_in, theirs_out = os.pipe()
        theirs_in, ours_out = os.pipe()
        # Chromium reads commands from fd 3 and writes replies to fd 4: moved from fds >= 10, so
        # that no dup2 overwrites an fd that another one still has to copy
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (theirs_in, theirs_out)]
        for fd in (theirs_in, theirs_out):
            os.close(fd)
        argv = [CHROMIUM, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}"]
        try:
            self.pid = os.posix_spawn(
                CHROMIUM, [*argv, "about:blank"], os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, high[0], 3), (os.POSIX_SPAWN_DUP2, high[1], 4),
                    (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT, 0o644),
                    (os.POSIX_SPAWN_DUP2, 1, 2),
                ],
            )  # fmt: skip
        finally:
            for fd in high:
                os.close(fd)
        self.reader, self.writer = ours_in, ours_out
        self.pending = b""
        self.events: list[dict[str, Any]] = []  # what arrived while waiting for a reply
        self.last_id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send a command (to the page when ``session`` is given); its result."""
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self.writer, json.dumps(message).encode() + b"\0")
        while (reply := self._message()).get("id") != self.last_id:
            self.events.append(reply)
        assert "error" not in reply, f"{method}: {reply['error']}"
        return dict(reply["result"])

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        return self.call(method, self.session, **params)

    def _message(self, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self.pending:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([self.reader], [], [], left)[0], "no answer"
            chunk = os.read(self.reader, 1 << 16)
            assert chunk, "Chromium closed the DevTools pipe"
            self.pending += chunk
        message, self.pending = self.pending.split(b"\0", 1)
        return dict(json.loads(message))

    def open(self, url: str, width: int, height: int) -> None:
        """Load ``url`` in a ``width`` x ``height`` viewport (a phone's below 600 px) and wait
        until the network is idle (the page's alias requests included)."""
        self.page(
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=1, mobile=width < 600,
        )  # fmt: skip
        self.page("Emulation.setFocusEmulationEnabled", enabled=True)  # for the clipboard
        origin = urllib.parse.urlsplit(url)
        self.call(
            "Browser.grantPermissions",
            origin=f"{origin.scheme}://{origin.netloc}",
            permissions=["clipboardReadWrite", "clipboardSanitizedWrite"],
        )
        self.page("Page.enable")
        self.page("Page.setLifecycleEventsEnabled", enabled=True)
        loader = self.page("Page.navigate", url=url)["loaderId"]
        while not any(
            e.get("method") == "Page.lifecycleEvent"
            and e["params"] == {**e["params"], "name": "networkIdle", "loaderId": loader}
            for e in self.events
        ):
            self.events.append(self._message())

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited when it is a promise)."""
        reply = self.page(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in reply, reply["exceptionDetails"]
        return reply["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (a user gesture, as the clipboard requires) on the element."""
        x, y = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            "return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.page("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self) -> bytes:
        """A PNG of the viewport."""
        return base64.b64decode(self.page("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        with contextlib.suppress(AssertionError, OSError):
            self.call("Browser.close")
        deadline = time.monotonic() + 10
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.05)
        os.close(self.reader)
        os.close(self.writer)


@pytest.fixture
def devtools(tmp_path: Path) -> Iterator[DevTools]:
    browser = DevTools(tmp_path / "chromium-devtools", tmp_path / "chromium.log")
    try:
        yield browser
    finally:
        browser.close()


# Everything that sticks out of the viewport sideways, and every card, command or scrolling box
# whose content is wider than the box (so it scrolls sideways or is cut off).
LAYOUT_PROBLEMS = """(() => {
  const problems = [], root = document.documentElement, width = root.clientWidth;
  if (root.scrollWidth > width) problems.push(`page: scrollWidth ${root.scrollWidth} > ${width}`);
  for (const el of document.querySelectorAll("body *")) {
    if (!el.getClientRects().length) continue;
    const box = el.getBoundingClientRect(), style = getComputedStyle(el);
    const name = el.tagName.toLowerCase() + [...el.classList].map(c => "." + c).join("");
    if (box.left < -0.5 || box.right > width + 0.5)
      problems.push(`${name}: from ${box.left} to ${box.right}, outside 0..${width}`);
    const boxed = el.matches(".model, .row, .cmd") || style.overflowX !== "visible";
    if (boxed && el.scrollWidth > el.clientWidth)
      problems.push(`${name}: scrollWidth ${el.scrollWidth} > clientWidth ${el.clientWidth}`);
  }
  return problems;
})()"""
COMMANDS = "[...document.querySelectorAll('code.cmd')].map(c => c.textContent)"
HEIGHT = 900


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def png_pixels(data: bytes) -> bytes:
    """A PNG's decompressed scanlines (filter bytes included)."""
    pos, compressed = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            compressed += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return zlib.decompress(compressed)


LONG_URL = f"https://huggingface.co/example-org/{'alpha-' * 12}gguf/resolve/main/{'q' * 60}.gguf"


def crowded(site: Path) -> None:
    """Re-render the site with beta a placeholder, and in alpha's text words (URLs) longer than
    a phone's line."""
    index, views = published(site)
    alpha = ModelInfo(
        f"A small language model. Weights: {LONG_URL}",
        {"tags": ["llm", "text-generation"], "license": "MIT", "source": LONG_URL},
    )
    bundles = [
        msgspec.structs.replace(b, metadata={"placeholder": True}) if b.id == "beta" else b
        for b in index.bundles
    ]
    models = {**index.models, "alpha": alpha}
    write(site, render_site(replace(index, models=models, bundles=tuple(bundles)), views))


@needs_chromium
@pytest.mark.parametrize("width", [1280, 400])
def test_chromium_page_fits_the_screen_with_every_command_readable_and_copyable(
    width: int,
    site: Path,
    http_server: Callable[[Path], str],
    devtools: DevTools,
    tmp_path: Path,
) -> None:
    crowded(site)
    base = http_server(site)
    devtools.open(f"{base}/index.html", width, HEIGHT)
    assert devtools.evaluate(LAYOUT_PROBLEMS) == []
    shot = devtools.screenshot()
    (tmp_path / f"page-{width}.png").write_bytes(shot)
    assert png_size(shot) == (width, HEIGHT)
    assert len(set(png_pixels(shot))) > 32  # not a blank page
    assert devtools.evaluate("document.querySelectorAll('.flag').length") == 1  # beta's target
    devtools.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    assert devtools.evaluate(LAYOUT_PROBLEMS) == []  # full digests and histories as well
    registry = f"--registry {base}"
    assert sorted(devtools.evaluate(COMMANDS)) == [
        f"{COMMAND} alpha@1.10 --target linux-x86_64 {registry}",
        f"{COMMAND} alpha@1.10 --target universal {registry}",
        f"{COMMAND} alpha@1.9 --target universal {registry}",
        f"{COMMAND} alpha@stable {registry}",
        f"{COMMAND} beta@0.1 --target universal {registry}",
    ]
    for where, ref in (("tbody", "alpha@1.10 --target linux-x86_64"), (".aliases", "alpha@stable")):
        devtools.click(f"{where} button.copy")
        assert devtools.evaluate("navigator.clipboard.readText()") == f"{COMMAND} {ref} {registry}"
        assert devtools.evaluate(f"document.querySelector('{where} button.copy').textContent") == (
            "Copied"
        )
    split = render_site(*published(site), budget=1_000)  # a model list, pages per model
    write(site, split)
    for page in ("index.html", "models/alpha.html", "models/alpha~2.html"):
        assert page in split
        devtools.open(f"{base}/{page}", width, HEIGHT)
        assert devtools.evaluate(LAYOUT_PROBLEMS) == [], page


# --- the model list of a large registry ---------------------------------------------------------


def list_pages(pages: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in pages.items() if re.fullmatch(r"index(-\d+)?\.html", k)}


def test_the_model_list_has_its_own_smaller_budget() -> None:
    index = big_index(40)
    pages = render_site(index, split=True, list_budget=LIST_SHELL + 3_000)
    fronts = list_pages(pages)
    assert len(fronts) >= 3
    assert all(len(p) <= LIST_SHELL + 3_000 for p in fronts.values())
    # Every page names the first and last model of each page: the whole list, from a file.
    ranges = [r.text() for r in parse(fronts["index.html"]).all("small", "range")]
    rows = {k: [li.attrs["data-id"] for li in parse(p).all("li", "row")] for k, p in fronts.items()}
    names = ["index.html", *(f"index-{n}.html" for n in range(2, len(fronts) + 1))]
    assert ranges == [f"{rows[n][0]} \u2026 {rows[n][-1]}" for n in names]
    assert [m for n in names for m in rows[n]] == sorted(index.models)


def test_a_new_version_or_model_rewrites_one_list_page() -> None:
    index = big_index(60)
    before = list_pages(render_site(index, split=True, list_budget=LIST_SHELL + 4_000))
    newer = replace(index, bundles=(*index.bundles, bundle("model-031", "1.9")))
    after = list_pages(render_site(newer, split=True, list_budget=LIST_SHELL + 4_000))
    assert sorted(before) == sorted(after)
    assert [k for k in before if before[k] != after[k]] == [
        next(k for k, page in before.items() if b'data-id="model-031"' in page)
    ]
    models = {**index.models, "model-031a": ModelInfo("Model model-031a", {"tags": ["llm"]})}
    added = replace(newer, models=models, bundles=(*newer.bundles, bundle("model-031a", "1.0")))
    grown = list_pages(render_site(added, split=True, list_budget=LIST_SHELL + 4_000))
    assert sum(after.get(k) != v for k, v in grown.items()) == 1  # no total on every page


def test_the_default_model_has_a_badge_in_the_list_and_on_its_page() -> None:
    index = replace(big_index(40), default="model-007")
    pages = render_site(index, split=True)
    row = next(li for li in parse(pages["index.html"]).all("li", "row")
               if li.attrs["data-id"] == "model-007")  # fmt: skip
    assert row.one("span", "default").text() == "default"
    assert len(parse(pages["index.html"]).all("span", "default")) == 1
    assert parse(pages["models/model-007.html"]).one("span", "default").text() == "default"
    single = render_site(replace(big_index(3), default="model-001"))["index.html"]
    assert len(parse(single).all("span", "default")) == 1


@needs_chromium
def test_chromium_filter_finds_a_model_on_another_list_page(
    tmp_path: Path, http_server: Callable[[Path], str], browse: Callable[[str], Node]
) -> None:
    index = big_index(40)
    site = tmp_path / "site"
    pages = render_site(index, split=True, list_budget=LIST_SHELL + 3_000)
    write(site, pages)
    names = {"format": 2, "models": {model: {} for model in index.models}}
    (site / "index.json").write_text(json.dumps(names))
    here = len(parse(pages["index.html"]).all("li", "row"))
    assert here < 40
    base = http_server(site)
    doc = browse(f"{base}/index.html?q=model-039")
    count = next(n for n in doc.all("span") if n.attrs.get("id") == "count")
    assert count.text() == f"0 of {here} shown, 1 more on other pages"
    elsewhere = next(n for n in doc.all("div") if n.attrs.get("id") == "elsewhere")
    assert elsewhere.attrs.get("hidden") is None
    links = elsewhere.all("a")
    assert [(a.text(), a.attrs["href"]) for a in links] == [
        ("model-039", f"{base}/models/model-039.html")
    ]
