"""Render the browse pages of a registry from its index and alias views.

Pages written (store keys, relative to the registry root)::

    index.html            every model with its versions, targets, aliases and fetch commands,
                          or, when that page would exceed the size budget, a compact model list
                          (continued in index-2.html, index-3.html, ... if even that is too big)
    models/<id>.html      one page per model, only when the registry is split (links use "../")

The split is decided by measured size: model sections are rendered one by one and the single
page is abandoned as soon as their total passes the budget. Pages carry no render time, so the
same index and aliases give the same bytes. Jinja2 is imported here only: the runtime never needs
it. Autoescape is on for every template: model names, descriptions and metadata are user data.

Inline JavaScript (no external requests) fills in the registry URL of the fetch commands from
the page's own address, narrows the model list with the filter box (``?q=`` pre-fills it), and,
over http(s), re-reads ``aliases/<id>/index.json`` (no-cache) for each model in view, so the alias
section is current after a promotion without a re-render. Without JavaScript the page shows
everything as rendered.
"""

from __future__ import annotations

import functools
import html
import json
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from runtime.errors import InvalidNameError
from runtime.names import is_name, name_problem, version_key
from runtime.wire import AliasIndex, AliasView, BundleDescriptor, Index

PAGE_BUDGET = 2_000_000  # bytes: no page over ~2 MB
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

    @property
    def latest(self) -> str:
        """The highest version ("" for a model without bundles)."""
        return self.versions[0].version if self.versions else ""

    @property
    def page(self) -> str:
        """Store key of the model's own page (used when the registry is split)."""
        return f"models/{self.id}.html"


def render_site(
    index: Index,
    aliases: Mapping[str, AliasIndex] | None = None,
    *,
    title: str = "Model registry",
    budget: int = PAGE_BUDGET,
) -> dict[str, bytes]:
    """Store key -> page bytes for ``index`` (and each model's alias view, where one exists).

    One ``index.html`` when everything fits in ``budget`` bytes; otherwise a compact front page
    (split further if needed) and one ``models/<id>.html`` per model. Raises
    :class:`InvalidNameError` when a split needs a page for a model id that is not a valid name.
    """
    renderer = _Renderer(title, budget)
    models = model_views(index, aliases or {})
    single = renderer.single_page(models)
    if single is not None:
        return {"index.html": single}
    pages = renderer.front_pages(models)
    for model in models:
        if not is_name(model.id):
            raise InvalidNameError(name_problem("model id", model.id) + " (needed for its page)")
        pages[model.page] = renderer.model_page(model)
    return pages


def model_views(index: Index, aliases: Mapping[str, AliasIndex]) -> list[ModelView]:
    """One view per model (from ``models`` and ``bundles``), sorted by id."""
    grouped: dict[str, dict[str, list[BundleDescriptor]]] = {}
    for bundle in index.bundles:
        grouped.setdefault(bundle.id, {}).setdefault(bundle.version, []).append(bundle)
    views = []
    for model in sorted(set(grouped) | set(index.models)):
        info = index.models.get(model)
        metadata = info.metadata if info is not None else {}
        view = aliases.get(model)
        views.append(
            ModelView(
                id=model,
                description=info.description if info is not None else "",
                metadata=_metadata_items(metadata),
                tags=_tags(metadata.get("tags")),
                versions=_versions(grouped.get(model, {})),
                aliases=view.aliases if view is not None else (),
            )
        )
    return views


def _versions(by_version: dict[str, list[BundleDescriptor]]) -> tuple[VersionGroup, ...]:
    newest_first = sorted(by_version, key=version_key, reverse=True)
    return tuple(_version_group(v, by_version[v]) for v in newest_first)


_TARGET = operator.attrgetter("target")


def _version_group(version: str, bundles: list[BundleDescriptor]) -> VersionGroup:
    ordered = tuple(sorted(bundles, key=_TARGET))
    created = min((b.created_at for b in ordered if b.created_at), default="")
    return VersionGroup(version, when(created), ordered)


# The version tables are the bulk of a large registry (a row per bundle), so their rows are
# formatted here instead of in a template, where each row costs several times more. Every
# interpolated value is escaped, or checked to need no escaping (one regex search per row).
_UNSAFE = re.compile(r"[&<>\"']")
_ODD = re.compile(r"[\x00-\x20\\]")  # controls, space, backslash
_CMD = f'<td><code class="cmd">{COMMAND} '
_CMD_END = f'<span class="reg">{REGISTRY_PLACEHOLDER}</span></code></td></tr>\n'


def _e(text: str) -> str:
    return html.escape(text) if _UNSAFE.search(text) else text


def version_rows(model: ModelView, root: str) -> Markup:
    """The ``<tbody>`` of each version (newest first) with a row per target."""
    parts = []
    model_id = _e(model.id)
    for group in model.versions:
        version = _e(group.version)
        created = f"<small>{_e(group.created)}</small>" if group.created else ""
        head = f'<th scope="rowgroup" rowspan="{len(group.bundles)}">{version}{created}</th>'
        ref, stem = f"{model_id}@{version}", f"{model_id}-{version}"
        parts.append(f'<tbody id="m-{ref}">\n')
        for bundle in group.bundles:
            parts.append(_row(bundle, ref, stem, head, root))
            head = ""
        parts.append("</tbody>\n")
    return Markup("".join(parts))


def _row(bundle: BundleDescriptor, ref: str, stem: str, head: str, root: str) -> str:
    digest, target, url = bundle.hash, bundle.target, bundle.location.url
    if _UNSAFE.search(f"{digest}{target}{url}"):  # rare: escape each, decide the link slowly
        digest, target = _e(digest), _e(target)
        link = _download(url, f"{stem}-{target}", root)
    elif url.startswith("blobs/"):  # the common case, already known to be safe
        link = f'<a class="dl" href="{root}{url}" download="{stem}-{target}.xyb">download</a>'
    else:
        link = _download(url, f"{stem}-{target}", root)
    return (
        f'<tr>{head}<td>{target}</td><td title="{bundle.size_bytes} bytes">'
        f'{human_size(bundle.size_bytes)}</td><td><details class="hash"><summary><code>'
        f'{digest[:_SHORT_HASH]}</code></summary><code class="full">{digest}</code></details>'
        f"</td><td>{link}</td>{_CMD}{ref} --target {target} --registry {_CMD_END}"
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

    def __init__(self, title: str, budget: int) -> None:
        import jinja2  # the build extra; imported only when pages are rendered

        env = jinja2.Environment(
            loader=jinja2.PackageLoader("registry_build", "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters["when"] = when
        env.globals.update(
            title=title, command=COMMAND, placeholder=REGISTRY_PLACEHOLDER, rows=version_rows
        )
        env.globals.update(
            style=Markup(_compact(env.get_template("style.css").render())),
            script=Markup(_compact(env.get_template("script.js").render())),
        )
        self.budget = budget
        self.page = env.get_template("page.html")
        self.sections = env.get_template("model.html").module
        self.rows = env.get_template("list.html").module

    def single_page(self, models: list[ModelView]) -> bytes | None:
        """Everything on one page, or None as soon as it is measured to exceed the budget."""
        sections, total = [], 0
        for model in models:
            section = str(self.sections.section(model, "", True))  # type: ignore[attr-defined]
            total += len(section.encode())
            if total > self.budget:
                return None
            sections.append(section)
        page = self._page("full", "", sections, len(models), models)
        return page if len(page) <= self.budget else None

    def model_page(self, model: ModelView) -> bytes:
        """One model's page under ``models/``: links climb one level with ``../``."""
        section = str(self.sections.section(model, "../", False))  # type: ignore[attr-defined]
        return self._page("model", "../", [section], 1, [model])

    def front_pages(self, models: list[ModelView]) -> dict[str, bytes]:
        """The compact model list: ``index.html``, continued in ``index-N.html`` when too big."""
        rows = [str(self.rows.row(m)) for m in models]  # type: ignore[attr-defined]
        chunks = list(_chunks(rows, max(self.budget - 64_000, 1)))
        names = ["index.html", *(f"index-{n}.html" for n in range(2, len(chunks) + 1))]
        pages = {}
        for number, chunk in enumerate(chunks):
            nav = {"pages": names, "current": number}
            pages[names[number]] = self._page("list", "", chunk, len(models), models, nav)
        return pages

    def _page(
        self,
        kind: str,
        root: str,
        parts: list[str],
        total: int,
        models: list[ModelView],
        nav: dict[str, Any] | None = None,
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
        )
        return html.encode()


def _compact(source: str) -> str:
    """Drop indentation, blank lines and whole-line ``//`` comments: inlined on every page."""
    lines = (line.strip() for line in source.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("//"))


def _chunks(rows: list[str], budget: int) -> Iterable[list[str]]:
    """Consecutive runs of ``rows`` whose encoded size stays within ``budget`` (at least one)."""
    chunk: list[str] = []
    size = 0
    for row in rows:
        length = len(row.encode())
        if chunk and size + length > budget:
            yield chunk
            chunk, size = [], 0
        chunk.append(row)
        size += length
    if chunk or not rows:
        yield chunk
