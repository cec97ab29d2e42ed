"""``registry-runtime list [PATTERN]`` and ``show MODEL@REF``: what a registry holds
(:mod:`runtime.client.catalog`), for people or, with ``--json``, for scripts."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from runtime.cli import json_option
from runtime.cli.fetch import REF_HELP, client_options, open_registry

if TYPE_CHECKING:
    from runtime.client.catalog import Listing, ModelListing, Shown

VERSIONS_SHOWN = 5  # versions a row of `list` names before "+N"
DESCRIPTION_SHOWN = 50
PLACEHOLDER_NOTE = "* holds placeholder bundles (built from a missing source, not the model)"

_LIST = (
    "List the registry's models with their highest version, versions, aliases and targets. "
    "PATTERN is a glob (with *, ? or [) on the model id, else a substring of it; case is "
    "ignored. index.json names every model, latest version and aliases; the versions and "
    "targets come from each matching model's shard, so only the shards of the models that "
    "match are read (a pattern keeps a large registry cheap to list)."
)
_SHOW = (
    "Show the bundle a ref names for this machine: its full descriptor (metadata, files, sizes, "
    "digests), the aliases that name its version and the promotion that put each there "
    "(record, time, actor, reason)."
)


def register(subparsers: Any) -> None:
    """Add ``list`` and ``show``."""
    listing = subparsers.add_parser(
        "list", help="list the registry's models, versions, aliases, targets", description=_LIST
    )
    listing.add_argument(
        "pattern", nargs="?", help="glob or substring of the model id (default: every model)"
    )
    client_options(listing, target=False)
    json_option(listing, "the models")
    listing.set_defaults(handler=list_command)

    show = subparsers.add_parser(
        "show", help="show a bundle's descriptor, files and aliases", description=_SHOW
    )
    show.add_argument("ref", nargs="?", help=REF_HELP)
    client_options(show)
    json_option(show, "the descriptor and its aliases")
    show.set_defaults(handler=show_command)


def list_command(args: argparse.Namespace) -> int:
    """``list [PATTERN]``: a table, one model a row."""
    from runtime.cli.output import print_json
    from runtime.client.catalog import list_models

    found = list_models(open_registry(args), args.pattern)
    if args.json:
        print_json(found)
    else:
        print(listing_text(found), end="")
    return 0


def listing_text(found: Listing) -> str:
    """The table ``list`` prints (a line saying so when no model matches)."""
    from runtime.cli.output import table

    if not found.models:
        matching = f" match {found.pattern!r}" if found.pattern else ""
        return f"no models in {found.registry}{matching}\n"
    header = ["MODEL", "LATEST", "VERSIONS", "ALIASES", "TARGETS", "DESCRIPTION"]
    text = table(header, [_row(m) for m in found.models], right=frozenset())
    marked = any(t.placeholder for m in found.models for v in m.versions for t in v.targets)
    return text + (f"{PLACEHOLDER_NOTE}\n" if marked else "")


def _row(model: ModelListing) -> list[str]:
    versions = [
        v.version + ("*" if any(t.placeholder for t in v.targets) else "") for v in model.versions
    ]
    more = len(versions) - VERSIONS_SHOWN
    shown = ", ".join(versions[:VERSIONS_SHOWN]) + (f" +{more}" if more > 0 else "")
    aliases = ", ".join(f"{a}={v}" for a, v in sorted(model.aliases.items())) or "-"
    description = model.description
    if len(description) > DESCRIPTION_SHOWN:
        description = description[: DESCRIPTION_SHOWN - 3] + "..."
    name = f"{model.id} (default)" if model.default else model.id
    return [name, model.latest, shown, aliases, ", ".join(model.targets), description]


def show_command(args: argparse.Namespace) -> int:
    """``show [MODEL@REF]``: the descriptor, its files and the aliases naming it."""
    from runtime.cli.output import print_json
    from runtime.client.catalog import show

    shown = show(open_registry(args), args.ref, args.target)
    if args.json:
        print_json(shown)
    else:
        print(shown_text(shown), end="")
    return 0


def shown_text(shown: Shown) -> str:
    """What ``show`` prints: the bundle, its metadata, its files, the aliases naming it."""
    from runtime.cli.output import human_size

    b = shown.bundle
    mark = "  [placeholder: built from a missing source, not the model]" if b.placeholder else ""
    fields = {
        "description": b.description, "model type": b.model_type, "blake3": b.hash,
        "sha256": b.sha256, "size": f"{human_size(b.size_bytes)} ({b.size_bytes} bytes)",
        "location": b.blob_key, "created": b.created_at,
    }  # fmt: skip
    lines = [f"{b.id}@{b.version} {b.target}{mark}"]
    lines += _pairs({k: v for k, v in fields.items() if v}, "")
    metadata = {k: v if isinstance(v, str) else json.dumps(v) for k, v in b.metadata.items()}
    lines += ["metadata", *_pairs(metadata, "  ")] if metadata else []
    total = human_size(sum(f.size for f in b.files))
    lines.append(f"files ({len(b.files)}, {total})" if b.files else "files: not listed")
    width = max((len(f.path) for f in b.files), default=0)
    lines += [f"  {f.path:<{width}}  {human_size(f.size):>9}  {f.blake3}" for f in b.files]
    lines.append("aliases" if shown.aliases else "aliases: none")
    for a in shown.aliases:
        said = f": {a.reason}" if a.reason else ""
        by = f"record {a.seq}, {a.time}, by {a.actor}{said}" if a.seq else "(promotion not read)"
        lines.append(f"  {a.alias}  {by}")
    return "\n".join(lines) + "\n"


def _pairs(values: dict[str, str], indent: str) -> list[str]:
    width = max(len(k) for k in values) if values else 0
    return [f"{indent}{k:<{width}}  {v}" for k, v in values.items()]
