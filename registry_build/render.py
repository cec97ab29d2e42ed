"""Render the browse pages of a registry from its catalog and alias views.

Pages written (store keys, relative to the registry root)::

    index.html            every model with its versions, targets, aliases and fetch commands,
                          or, when that page would exceed the size budget, a compact model list
                          (continued in index-2.html, index-3.html, ... past its own, smaller
                          budget, :data:`LIST_BUDGET`)
    models/<id>.html      one page per model, only when the registry is split (links use "../")
    models/<id>~2.html    the model's older versions, when even its own page would exceed the
    models/<id>~3.html    budget: newest first, a pager on each, description and aliases on the
    ...                   first page only ("~" is not allowed in a model id: no name collides)

The split is decided by measured size (or asked for: a registry of many models is always split,
so that a publish renders only the pages of the models it touched, :class:`Site`): model sections
are rendered one by one and the single page is abandoned as soon as their total passes the
budget. A model page over the budget has
its version table cut between versions (a version's targets stay together), after measuring
what the page around them costs. Pages carry no render time, so the same index and aliases give
the same bytes. Jinja2 is imported here only: the runtime never needs it. Autoescape is on for
every template: model names, descriptions and metadata are user data.

Each target shows its size, BLAKE3 and SHA-256, a download link and its fetch command (by
version; each alias has one too), with a badge when the bundle is a placeholder. The aliases
known at render time are part of the page, so it is complete without a server (``file://``).

Inline JavaScript (no external requests) fills in the registry URL of the fetch commands from
the page's own address, shows the copy buttons, narrows the model list with the filter box
(``?q=`` pre-fills it), and, over http(s), re-reads ``aliases/<id>/index.json`` (no-store) for
each model in view, so the alias section is current after a promotion without a re-render (from a
file it says that the aliases are as rendered). Without JavaScript the page shows everything as
rendered, and a click selects a whole command.

A row of the model list shows what ``v1/models`` and the alias maps of ``index.json`` hold (id,
description, tags, newest version and how many, alias -> version, the default model's badge), so
the list is rendered the same from a :class:`~registry_build.index.Catalog` (:func:`model_views`)
and from ``v1/models`` (:func:`list_rows`), without reading every model's shard.

The model list of a large registry is cut into pages of at most :data:`LIST_BUDGET` bytes, so that
a publish that changes one row rewrites one list page, not a list of every model. Where a page
ends is decided by its rows, not only by their sizes: past half the budget a page ends after a
model whose id hashes to a boundary (:func:`_ends_page`), so a row that grows or a model added
moves the pages' ends only until the next such model, and a page's name and its neighbours stay
as they were. A list page names no registry-wide total (that would change every page with each
new model); each page's pager shows every page with the first and last model on it, so the list
is searchable by eye from a file, and over http(s) the filter box also searches the names of
every model in ``index.json`` and links those on other pages.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from registry_build.index import Catalog
from runtime.errors import InvalidNameError
from runtime.names import is_name, name_problem, version_key
from runtime.registry.wire import AliasIndex, AliasView, BundleDescriptor

PAGE_BUDGET = 2_000_000  # bytes: no page over ~2 MB
LIST_BUDGET = 256_000  # bytes: no page of the model list over ~256 KB (module notes)
LIST_SHELL = 64_000  # bytes of a list page besides its rows: style, script, pager
BOUNDARY_ODDS = 64  # past half its budget, one model in this many ends a list page
COMMAND = "registry-runtime fetch"
REGISTRY_PLACEHOLDER = "$BUNDLE_REGISTRY"  # the runtime's default; JS replaces it when it can
_SHORT_HASH = 12
_TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)(?::\d\d(?:\.\d+)?)?(?:Z|\+00:00)$")


@dataclass(frozen=True, slots=True)
class VersionGroup:
    """One version of a model with its targets, in target order."""

    version: str
    created: str
    bundles: tuple[BundleDescriptor, ...]


@dataclass(frozen=True, slots=True)
class ModelView:
    """Everything a page shows about one model, computed once per render."""

    id: str
    description: str
    metadata: tuple[tuple[str, str], ...]
    tags: tuple[str, ...]
    versions: tuple[VersionGroup, ...]
    aliases: tuple[AliasView, ...]
    badges: tuple[tuple[str, str], ...] = ()  # (alias, version) for the model list
    version_count: int = 0  # all versions (a row of the list holds only the newest)
    default: bool = False  # the registry's default model

    @property
    def latest(self) -> str:
        """The highest version ("" for a model without bundles)."""
        return self.versions[0].version if self.versions else ""

    @property
    def page(self) -> str:
        """Store key of the model's own page (used when the registry is split)."""
        return version_page(self.id, 1)


def version_page(model: str, number: int) -> str:
    """Store key of page ``number`` (from 1) of a model's versions: ``models/<id>~N.html``."""
    return f"models/{model}.html" if number == 1 else f"models/{model}~{number}.html"


def render_site(
    catalog: Catalog,
    aliases: Mapping[str, AliasIndex] | None = None,
    *,
    title: str = "Model registry",
    budget: int = PAGE_BUDGET,
    list_budget: int = LIST_BUDGET,
    split: bool = False,
) -> dict[str, bytes]:
    """Store key -> page bytes for ``catalog`` (and each model's alias view, where one exists).

    One ``index.html`` when everything fits in ``budget`` bytes (and ``split`` is not asked);
    otherwise a compact model list (over pages of at most ``list_budget`` bytes, module notes)
    and one ``models/<id>.html`` per model, continued in ``models/<id>~2.html``, ... when one
    model's versions alone exceed the budget. Raises :class:`InvalidNameError` when a split
    needs a page for a model id that is not a valid name.
    """
    return Site(title, budget, list_budget).site(catalog, aliases or {}, split=split)


class Site:
    """The pages of one registry: all of them (:meth:`site`), or, for a registry that is split,
    those of some models (:meth:`models`) and the model list (:meth:`front`). Jinja2 is loaded
    when the first page is rendered."""

    def __init__(
        self,
        title: str = "Model registry",
        budget: int = PAGE_BUDGET,
        list_budget: int = LIST_BUDGET,
    ) -> None:
        self.title, self.budget, self.list_budget = title, budget, list_budget
        self._renderer: _Renderer | None = None

    @property
    def renderer(self) -> _Renderer:
        if self._renderer is None:
            self._renderer = _Renderer(self.title, self.budget, self.list_budget)
        return self._renderer

    def site(
        self, catalog: Catalog, aliases: Mapping[str, AliasIndex], *, split: bool
    ) -> dict[str, bytes]:
        """Every page of ``catalog`` (see :func:`render_site`)."""
        models = model_views(catalog, aliases)
        single = None if split else self.renderer.single_page(models)
        if single is not None:
            return {"index.html": single}
        return {**self.renderer.front_pages(models), **self._model_pages(models)}

    def models(self, catalog: Catalog, aliases: Mapping[str, AliasIndex]) -> dict[str, bytes]:
        """The pages under ``models/`` of every model of ``catalog``, as a split registry has."""
        return self._model_pages(model_views(catalog, aliases))

    def front(self, rows: list[ModelView]) -> dict[str, bytes]:
        """The model list of a split registry (``index.html``, ``index-2.html``, ...)."""
        return self.renderer.front_pages(rows)

    def _model_pages(self, models: list[ModelView]) -> dict[str, bytes]:
        pages: dict[str, bytes] = {}
        for model in models:
            if not is_name(model.id):
                raise InvalidNameError(
                    name_problem("model id", model.id) + " (needed for its page)"
                )
            pages.update(self.renderer.model_pages(model))
        return pages


def model_views(catalog: Catalog, aliases: Mapping[str, AliasIndex]) -> list[ModelView]:
    """One view per model (from ``models`` and ``bundles``), sorted by id."""
    grouped: dict[str, dict[str, list[BundleDescriptor]]] = {}
    for bundle in catalog.bundles:
        grouped.setdefault(bundle.id, {}).setdefault(bundle.version, []).append(bundle)
    views = []
    for model in sorted(set(grouped) | set(catalog.models)):
        info = catalog.models.get(model)
        metadata = info.metadata if info is not None else {}
        view = aliases.get(model)
        versions = _versions(grouped.get(model, {}))
        views.append(
            ModelView(
                id=model,
                description=info.description if info is not None else "",
                metadata=_metadata_items(metadata),
                tags=_tags(metadata.get("tags")),
                versions=versions,
                aliases=view.aliases if view is not None else (),
                badges=tuple(sorted(catalog.aliases.get(model, {}).items())),
                version_count=len(versions),
                default=model == catalog.default,
            )
        )
    return views


def list_rows(
    cards: list[dict[str, Any]], aliases: Mapping[str, Mapping[str, str]]
) -> list[ModelView]:
    """The model list's view of each card of ``v1/models`` (what a row shows: no bundles, no
    history), with the alias maps of ``index.json``; in the order of the cards."""
    rows = []
    for card in cards:
        model = str(card.get("id", ""))
        versions = [str(v) for v in card.get("versions", ())]
        count = card.get("version_count")
        rows.append(
            ModelView(
                id=model,
                description=str(card.get("description", "")),
                metadata=(),
                tags=_tags(card.get("tags")),
                versions=tuple(VersionGroup(v, "", ()) for v in versions),
                aliases=(),
                badges=tuple(sorted(aliases.get(model, {}).items())),
                version_count=count if isinstance(count, int) else len(versions),
                default=card.get("default") is True,
            )
        )
    return rows


def _versions(by_version: dict[str, list[BundleDescriptor]]) -> tuple[VersionGroup, ...]:
    newest_first = sorted(by_version, key=version_key, reverse=True)
    return tuple(_version_group(v, by_version[v]) for v in newest_first)


_TARGET = operator.attrgetter("target")


def _version_group(version: str, bundles: list[BundleDescriptor]) -> VersionGroup:
    ordered = tuple(sorted(bundles, key=_TARGET))
    created = min((b.created_at for b in ordered if b.created_at), default="")
    return VersionGroup(version, when(created), ordered)


# The version tables are the bulk of a large registry (two rows per bundle), so their rows are
# formatted here instead of in a template, where each row costs several times more. Every
# interpolated value is escaped, or checked to need no escaping (one regex search each).
_UNSAFE = re.compile(r"[&<>\"']")
_ODD = re.compile(r"[\x00-\x20\\]")  # controls, space, backslash
_CMD = f'<div class="cmdline"><code class="cmd"><span class="w">{COMMAND}</span> '
_CMD_END = (
    f' <span class="w">--registry</span> <span class="reg">{REGISTRY_PLACEHOLDER}</span></code>'
    '<button class="copy">Copy</button></div>'  # no form around it: no type needed
)
_FLAG = (
    ' <span class="flag" title="A stand-in: the source was missing at build time">'
    "placeholder</span>"
)


def _e(text: str) -> str:
    return html.escape(text) if _UNSAFE.search(text) else text


def fetch_command(ref: str, target: str = "") -> str:
    """The fetch command of ``ref`` (``MODEL@VERSION`` or ``MODEL@ALIAS``, already escaped, as is
    ``target``) with a copy button. The script puts the page's registry in place of the
    placeholder. Each argument is a ``w`` span so that a narrow screen wraps the command between
    arguments, not after the hyphen of ``--target``."""
    option = f' <span class="w">--target {target}</span>' if target else ""
    return f'{_CMD}<span class="w">{ref}</span>{option}{_CMD_END}'


def is_placeholder(bundle: BundleDescriptor) -> bool:
    """Whether an index entry is a stand-in built from a missing source: its ``placeholder``
    field (what shards and ``index`` keep), or ``"placeholder": true`` in the metadata of a full
    descriptor."""
    return bundle.placeholder or bundle.metadata.get("placeholder") is True


def version_rows(model: ModelView, root: str) -> Markup:
    """The ``<tbody>`` of each version (newest first) with two rows per target."""
    model_id = _e(model.id)
    return Markup("".join([group_rows(model_id, group, root) for group in model.versions]))


def group_rows(model_id: str, group: VersionGroup, root: str) -> str:
    """One version's ``<tbody>``: per target, a row of facts and a row with its fetch command;
    ``model_id`` is already escaped."""
    version = _e(group.version)
    created = f"<small>{_e(group.created)}</small>" if group.created else ""
    head = f'<th scope="rowgroup" rowspan="{2 * len(group.bundles)}">{version}{created}</th>'
    ref, stem = f"{model_id}@{version}", f"{model_id}-{version}"
    parts = [f'<tbody id="m-{ref}">\n']
    for bundle in group.bundles:
        parts.append(_row(bundle, ref, stem, head, root))
        head = ""
    parts.append("</tbody>\n")
    return "".join(parts)


def _row(bundle: BundleDescriptor, ref: str, stem: str, head: str, root: str) -> str:
    target, url = bundle.target, bundle.location.url
    if _UNSAFE.search(f"{target}{url}"):  # rare: escape, decide the link slowly
        target = _e(target)
        link = _download(url, f"{stem}-{target}", root)
    elif url.startswith("blobs/"):  # the common case, already known to be safe
        link = f'<a class="dl" href="{root}{url}" download="{stem}-{target}.xyb">download</a>'
    else:
        link = _download(url, f"{stem}-{target}", root)
    flag = _FLAG if is_placeholder(bundle) else ""
    sha256 = _digest("sha256", "SHA-256", bundle.sha256) if bundle.sha256 else ""
    return (
        f'<tr class="facts">{head}<td class="target">{target}{flag}</td>'
        f'<td class="size" title="{bundle.size_bytes} bytes">{human_size(bundle.size_bytes)}</td>'
        f'<td class="digests">{_digest("blake3", "BLAKE3", bundle.hash)}{sha256}</td>'
        f'<td>{link}</td></tr>\n<tr class="fetch">'
        f'<td colspan="4">{fetch_command(ref, target)}</td></tr>\n'
    )


def _digest(algorithm: str, label: str, hexdigest: str) -> str:
    """A digest, short until opened."""
    return (
        f'<details class="hash {algorithm}"><summary><span class="algo">{label}</span> '
        f"<code>{_e(hexdigest[:_SHORT_HASH])}</code></summary>"
        f'<code class="full">{_e(hexdigest)}</code></details>'
    )


def _download(url: str, name: str, root: str) -> str:
    checked = _link(url)
    if checked is None:
        return "&mdash;"
    href = checked if ":" in checked.split("/", 1)[0] else root + checked
    return f'<a class="dl" href="{_e(href)}" download="{name}.xyb">download</a>'


def _link(url: str) -> str | None:
    """The URL as given when absolute http(s); relative when relative; no link otherwise."""
    scheme = url.split(":", 1)[0].lower() if ":" in url.split("/", 1)[0] else ""
    if scheme in ("http", "https"):
        return url
    if scheme or not url or url.startswith("/") or _ODD.search(url):
        # javascript:, data:, host-absolute paths, and what a browser would strip or read as "/"
        # (so " //host" and "\\host" leave the site): not something a page should link
        return None
    return url


def _metadata_items(metadata: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (key.replace("_", " "), _display(metadata[key]))
        for key in sorted(metadata)
        if key != "tags"
    )


def _display(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(_display(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def _tags(value: object) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return (str(value),) if value else ()


def human_size(size: int) -> str:
    """Bytes in binary units with three significant digits: ``1.5 MiB``, ``512 B``."""
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            break
        amount /= 1024
    if unit == "B":
        return f"{size} B"
    return f"{amount:.3g} {unit}" if amount < 1000 else f"{amount:.0f} {unit}"


@functools.lru_cache(maxsize=4096)  # a registry has few distinct build times
def when(timestamp: str) -> str:
    """An RFC 3339 UTC time as ``YYYY-MM-DD HH:MM UTC``; anything else unchanged."""
    match = _TIME_RE.match(timestamp)
    return f"{match.group(1)} {match.group(2)} UTC" if match else timestamp


class _Renderer:
    """The Jinja2 environment and templates of one render, plus the size budget."""

    def __init__(self, title: str, budget: int, list_budget: int = LIST_BUDGET) -> None:
        import jinja2  # the build extra; imported only when pages are rendered

        env = jinja2.Environment(
            loader=jinja2.PackageLoader("registry_build", "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters["when"] = when
        env.globals.update(title=title, command=COMMAND, placeholder=REGISTRY_PLACEHOLDER)
        env.globals["fetch_command"] = lambda ref: Markup(fetch_command(str(escape(ref))))
        env.globals.update(
            style=Markup(_compact(env.get_template("style.css").render())),
            script=Markup(_compact(env.get_template("script.js").render())),
        )
        self.budget, self.list_budget = budget, list_budget
        self.page = env.get_template("page.html")
        self.sections = env.get_template("model.html").module
        self.rows = env.get_template("list.html").module

    def single_page(self, models: list[ModelView]) -> bytes | None:
        """Everything on one page, or None as soon as it is measured to exceed the budget."""
        sections, total = [], 0
        for model in models:
            rows = version_rows(model, "")
            section = str(self.sections.section(model, "", True, rows))  # type: ignore[attr-defined]
            total += len(section.encode())
            if total > self.budget:
                return None
            sections.append(section)
        page = self._page("full", "", sections, len(models), models)
        return page if len(page) <= self.budget else None

    def model_pages(self, model: ModelView) -> dict[str, bytes]:
        """The model's page under ``models/`` (links climb with ``../``), split when too big."""
        model_id = _e(model.id)
        groups = [group_rows(model_id, group, "../") for group in model.versions]
        page = self._model_page(model, groups)
        if len(page) <= self.budget or len(groups) < 2:
            return {model.page: page}
        return self._version_pages(model, groups)

    def _version_pages(self, model: ModelView, groups: list[str]) -> dict[str, bytes]:
        """Versions (newest first) over ``models/<id>.html``, ``models/<id>~2.html``, ...

        What a page costs besides its versions is measured with the widest pager it can get
        (no more pages than versions: numbers of that many digits, both neighbours) and every
        alias linking to another page, so each page stays within the budget unless a single
        version alone does not fit.
        """
        top = 10 ** len(str(len(groups))) - 1
        widest = _Pager(model.id, top - 1, top)
        far = {a.version: widest.href for a in model.aliases}
        first = self._model_page(model, [], widest, far)
        rest = self._model_page(model, [], widest, head=False)
        chunks = list(_chunks(groups, self.budget - len(rest), first=self.budget - len(first)))
        pagers = [_Pager(model.id, n, len(chunks)) for n in range(1, len(chunks) + 1)]
        owners = [pager for pager, chunk in zip(pagers, chunks, strict=True) for _ in chunk]
        where = {
            group.version: pager.href
            for group, pager in zip(model.versions, owners, strict=True)
            if pager.number > 1
        }
        return {
            version_page(model.id, pager.number): self._model_page(
                model, chunk, pager, where, head=pager.number == 1
            )
            for pager, chunk in zip(pagers, chunks, strict=True)
        }

    def _model_page(
        self,
        model: ModelView,
        groups: list[str],
        pager: _Pager | None = None,
        where: Mapping[str, str] | None = None,
        *,
        head: bool = True,
    ) -> bytes:
        """A page of ``model`` showing the version ``groups`` (rendered rows).

        ``head``: with the model's description, metadata and aliases (its first page); ``where``
        maps a version shown on another page to that page's file name, for the alias links.
        """
        rows = Markup("".join(groups))
        section = self.sections.section(  # type: ignore[attr-defined]
            model, "../", False, rows, head, where or {}
        )
        return self._page("model", "../", [str(section)], 1, [model], pager=pager)

    def front_pages(self, models: list[ModelView]) -> dict[str, bytes]:
        """The compact model list: ``index.html``, continued in ``index-N.html`` past the list
        budget (module notes); each page's pager names the first and last model of every page."""
        rows = [(m.id, str(self.rows.row(m))) for m in models]  # type: ignore[attr-defined]
        budget = max(min(self.budget, self.list_budget) - LIST_SHELL, 1)
        chunks = list(_list_chunks(rows, budget))
        names = ["index.html", *(f"index-{n}.html" for n in range(2, len(chunks) + 1))]
        ranges = [(c[0][0], c[-1][0]) if c else ("", "") for c in chunks]
        pages = {}
        for number, chunk in enumerate(chunks):
            nav = {"pages": list(zip(names, ranges, strict=True)), "current": number}
            shown = [row for _, row in chunk]
            pages[names[number]] = self._page("list", "", shown, len(models), models, nav)
        return pages

    def _page(
        self,
        kind: str,
        root: str,
        parts: list[str],
        total: int,
        models: list[ModelView],
        nav: dict[str, Any] | None = None,
        pager: _Pager | None = None,
    ) -> bytes:
        html = self.page.render(
            kind=kind,
            root=root,
            body=Markup("".join(parts)),
            total=total,
            shown=len(parts),
            model=models[0] if kind == "model" else None,
            versions=sum(len(m.versions) for m in models),
            nav=nav,
            pager=pager,
        )
        return html.encode()


def _compact(source: str) -> str:
    """Drop indentation, blank lines and whole-line ``//`` comments: inlined on every page."""
    lines = (line.strip() for line in source.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("//"))


@dataclass(frozen=True, slots=True)
class _Pager:
    """Page ``number`` of ``count`` of a model's versions: the links to its neighbours."""

    model: str
    number: int
    count: int

    @property
    def href(self) -> str:
        """This page, relative to ``models/`` (where every page of a model lives)."""
        return version_page(self.model, self.number).removeprefix("models/")

    @property
    def prev(self) -> str | None:
        """The page of newer versions, if any."""
        return _Pager(self.model, self.number - 1, self.count).href if self.number > 1 else None

    @property
    def next(self) -> str | None:
        """The page of older versions, if any."""
        more = self.number < self.count
        return _Pager(self.model, self.number + 1, self.count).href if more else None


def _ends_page(model: str) -> bool:
    """Whether a list page past half its budget ends after ``model`` (one in
    :data:`BOUNDARY_ODDS`, by a hash of the id: the same models end pages in every render)."""
    return hashlib.blake2s(model.encode(), digest_size=4).digest()[0] % BOUNDARY_ODDS == 0


def _list_chunks(rows: list[tuple[str, str]], budget: int) -> Iterable[list[tuple[str, str]]]:
    """Consecutive runs of (model, row) within ``budget`` bytes (at least one row each), ended
    early past half the budget after a model :func:`_ends_page` picks."""
    chunk: list[tuple[str, str]] = []
    size = 0
    for model, row in rows:
        length = len(row.encode())
        if chunk and size + length > budget:
            yield chunk
            chunk, size = [], 0
        chunk.append((model, row))
        size += length
        if size * 2 >= budget and _ends_page(model):
            yield chunk
            chunk, size = [], 0
    if chunk or not rows:
        yield chunk


def _chunks(rows: list[str], budget: int, *, first: int | None = None) -> Iterable[list[str]]:
    """Consecutive runs of ``rows`` whose encoded size stays within ``budget`` (at least one).

    ``first`` is the budget of the first run, when it differs.
    """
    chunk: list[str] = []
    size, limit = 0, budget if first is None else first
    for row in rows:
        length = len(row.encode())
        if chunk and size + length > limit:
            yield chunk
            chunk, size, limit = [], 0, budget
        chunk.append(row)
        size += length
    if chunk or not rows:
        yield chunk
