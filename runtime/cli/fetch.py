"""``registry-runtime resolve``, ``fetch``, ``cache ls|rm|prune``: the client on the command line.

``fetch --local-dir DIR`` places the bundle's files in DIR (:mod:`runtime.client.placement`):
hard links to the cache's extracted copy when DIR is on the cache's file system, made read-only
since they are the cache's files too (copy one before editing it in place; an editor that saves
by renaming a new file over it leaves the cache alone), else copies; never symbolic links. A file
already in DIR that differs from the bundle's is replaced only with ``--force``.

Environment: ``$BUNDLE_REGISTRY`` (the registry), ``$BUNDLE_REGISTRY_CACHE`` (the cache
directory), ``$BUNDLE_REGISTRY_OFFLINE=1`` (use only the cache), ``$BUNDLE_REGISTRY_TRUST`` (a
pinned root), ``$BUNDLE_MAX_EXTRACT`` (the extraction ceiling).
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.cli import json_option, registry_location
from runtime.documents import quoted
from runtime.errors import RegistryError, UsageError
from runtime.extras import require
from runtime.storage.location import Location

if TYPE_CHECKING:
    from runtime.client.cache import CacheEntry
    from runtime.client.registry import Registry
    from runtime.registry.wire import BundleDescriptor

MAX_EXTRACT_ENV = "BUNDLE_MAX_EXTRACT"
_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"\s*(\d{1,16})\s*([A-Za-z]*)\s*")
REF_HELP = "MODEL, MODEL@VERSION or MODEL@ALIAS (default: the registry's default model)"


class NotCached(RegistryError, FileNotFoundError):
    """Raised by ``cache rm`` when the bundle a ref names is not in the cache."""


def register(subparsers: Any) -> None:
    """Add the client's commands."""
    resolve = subparsers.add_parser(
        "resolve", help="show which bundle a ref names here", description=_RESOLVE
    )
    resolve.add_argument("ref", nargs="?", help=REF_HELP)
    client_options(resolve)
    json_option(resolve, "the descriptor")
    resolve.set_defaults(handler=resolve_command)
    _fetch_parser(subparsers)
    _cache_parsers(subparsers)


_RESOLVE = (
    "Print the bundle a ref names for this machine: MODEL@VERSION TARGET BLAKE3 SIZE, and "
    "'placeholder' when it is one (built from a missing source)."
)


_FETCH = (
    "Download, verify and cache a bundle (or every stage of a pipeline) and print its path: the "
    ".xyb, with --extract its extracted directory, with --local-dir DIR that directory, where "
    "the files are hard links to the cache's extracted copy when DIR is on the cache's file "
    "system (read-only, since they are the cache's files too: copy one before editing it in "
    "place), else copies; never symbolic links. A file in DIR that differs from the bundle's is "
    "replaced only with --force."
)


def _fetch_parser(subparsers: Any) -> None:
    fetch = subparsers.add_parser(
        "fetch",
        help="download, verify and cache a bundle; print its path",
        description=_FETCH,
    )
    fetch.add_argument("ref", nargs="?", help=REF_HELP)
    fetch.add_argument(
        "--pipeline", type=Path, metavar="FILE", help="fetch every stage of a Xybrid pipeline.yaml"
    )
    fetch.add_argument("--extract", action="store_true", help="print the extracted directory")
    fetch.add_argument(
        "--local-dir",
        type=_directory,
        metavar="DIR",
        help="place the bundle's files in DIR (hard links to the cache's read-only copy on the "
        "same file system, else copies) and print DIR",
    )
    fetch.add_argument(
        "--force", action="store_true", help="with --local-dir: replace files that differ"
    )
    fetch.add_argument(
        "--max-extract",
        type=_size,
        metavar="SIZE",
        help="refuse to extract a bundle larger than this, e.g. 200GiB "
        f"(default: ${MAX_EXTRACT_ENV}, else 1000x the bundle's size, at least 256MiB, at most "
        "64GiB)",
    )
    client_options(fetch)
    json_option(fetch, "each bundle and its path")
    fetch.set_defaults(handler=fetch_command)


def _cache_parsers(subparsers: Any) -> None:
    cache = subparsers.add_parser("cache", help="list, remove or prune the local bundle cache")
    commands = cache.add_subparsers(dest="cache_command", metavar="COMMAND", required=True)
    ls = commands.add_parser("ls", help="list cached bundles, most recently used first")
    cache_dir_option(ls)
    json_option(ls, "the cached bundles")
    ls.set_defaults(handler=cache_ls_command)
    rm = commands.add_parser(
        "rm",
        help="remove one bundle (blob, extracted files, descriptor) from the cache",
        description="Remove the bundle a ref names from the cache: its blob, extracted files "
        "and descriptor. The ref is resolved from the registry's index as last cached, without "
        "the network.",
    )
    rm.add_argument("ref", help="MODEL, MODEL@VERSION or MODEL@ALIAS")
    client_options(rm, offline=False)
    json_option(rm, "the removed bundle")
    rm.set_defaults(handler=cache_rm_command)
    prune = commands.add_parser("prune", help="remove bundles not used for N days")
    prune.add_argument(
        "--keep-days", type=_days, default=30.0, help="keep bundles used within this many days"
    )
    cache_dir_option(prune)
    json_option(prune, "what was removed")
    prune.set_defaults(handler=cache_prune_command)


def client_options(
    parser: argparse.ArgumentParser, *, target: bool = True, offline: bool = True
) -> None:
    """Add ``--registry``, ``--target``, ``--offline``, ``--cache-dir`` and ``--trust``."""
    from runtime.names import detect_target

    parser.add_argument(
        "--registry",
        help="registry location: a directory, an http(s):// URL or s3://BUCKET/PREFIX "
        "(default: $BUNDLE_REGISTRY)",
    )
    if target:
        parser.add_argument(
            "--target",
            help=f"platform target (default: this machine's, {detect_target()} here, then "
            "universal)",
        )
    if offline:
        parser.add_argument(
            "--offline",
            action="store_true",
            help="use only the cache, no network (default: $BUNDLE_REGISTRY_OFFLINE=1, else off)",
        )
    cache_dir_option(parser)
    trust_option(parser)


def cache_dir_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--cache-dir``, with the directory used when it is not given."""
    from runtime.client.cache import default_root

    here = str(default_root()).replace("%", "%%")
    parser.add_argument(
        "--cache-dir",
        type=_directory,
        help="cache directory (default: $BUNDLE_REGISTRY_CACHE, else "
        f"$XDG_CACHE_HOME/bundle-registry, else ~/.cache/bundle-registry; {here} here)",
    )


def trust_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--trust ROOT.json``: verify the registry's signed metadata from that root."""
    parser.add_argument(
        "--trust",
        type=Path,
        metavar="ROOT.json",
        help="verify index.json through the registry's signed metadata from this pinned root "
        "(KEYS/root.json); refuse a registry that fails (default: $BUNDLE_REGISTRY_TRUST)",
    )


def require_trust_extra(explicit: Path | None) -> None:
    """Check, before any work, that a root given (``--trust`` or its variable) can be used."""
    from runtime.trust import TRUST_ENV

    if explicit is not None:
        require("trust", "--trust")
    elif os.environ.get(TRUST_ENV):
        require("trust", f"${TRUST_ENV}")


def open_registry(
    args: argparse.Namespace,
    from_file: Location | None = None,
    max_extract: int | None = None,
    offline: bool | None = None,
    quiet: bool = False,
) -> Registry:
    """The client's :class:`~runtime.client.registry.Registry` for the options of
    :func:`client_options` (``offline`` None: ``--offline``, else the environment's); every
    extra they need is checked first. ``quiet`` drops the client's notices."""
    location = registry_location(args.registry, from_file)
    require_trust_extra(args.trust)
    from runtime.client.cache import Cache
    from runtime.client.registry import Registry, stderr_notice
    from runtime.trust import trust_from

    if offline is None:
        offline = True if getattr(args, "offline", False) else None
    return Registry(
        location, cache=Cache(args.cache_dir), offline=offline, max_extract_bytes=max_extract,
        trust=trust_from(args.trust), notice=(lambda _: None) if quiet else stderr_notice,
    )  # fmt: skip


def _max_extract(args: argparse.Namespace) -> int | None:
    """The extraction ceiling: ``--max-extract``, else ``$BUNDLE_MAX_EXTRACT``, else None (the
    automatic ceiling of :class:`runtime.registry.xyb.Limits`)."""
    if args.max_extract is not None:
        return int(args.max_extract)
    text = os.environ.get(MAX_EXTRACT_ENV)
    try:
        return _size(text) if text else None
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"${MAX_EXTRACT_ENV}: {exc}") from None


def resolve_command(args: argparse.Namespace) -> int:
    """Print the bundle a ref resolves to."""
    from runtime.cli.output import print_json

    d = open_registry(args).resolve(args.ref, args.target)
    if args.json:
        print_json(d)
    else:
        mark = " placeholder" if d.placeholder else ""
        print(f"{d.id}@{d.version} {d.target} {d.hash} {d.size_bytes}{mark}")
    return 0


def fetch_command(args: argparse.Namespace) -> int:
    """Fetch one ref or every stage of a pipeline; print the paths."""
    from runtime.client.pipeline import load_pipeline, resolve_pipeline

    _check_fetch_options(args)
    ceiling = _max_extract(args)
    pipeline = None if args.pipeline is None else load_pipeline(args.pipeline)
    registry = open_registry(args, pipeline.registry if pipeline else None, ceiling)
    if pipeline is not None:
        entries = resolve_pipeline(pipeline, registry, target=args.target)
    else:
        entries = [registry.resolve(args.ref, args.target)]
    fetched = [_fetch_one(registry, entry, args) for entry in entries]
    if args.json:
        from runtime.cli.output import print_json

        print_json({"bundles": fetched})
    else:
        for done in fetched:
            print(done["path"])
    return 0


def _check_fetch_options(args: argparse.Namespace) -> None:
    if args.ref is not None and args.pipeline is not None:
        raise UsageError("fetch takes a REF or --pipeline FILE, not both")
    if args.local_dir is not None and args.pipeline is not None:
        raise UsageError("--local-dir places the files of one bundle: give a REF, not --pipeline")
    if args.force and args.local_dir is None:
        raise UsageError("--force replaces files in a --local-dir: give --local-dir DIR too")


def _fetch_one(
    registry: Registry, entry: BundleDescriptor, args: argparse.Namespace
) -> dict[str, Any]:
    """Fetch (extract, place) one resolved bundle; what ``--json`` says of it."""
    done: dict[str, Any] = {
        "id": entry.id, "version": entry.version, "target": entry.target, "hash": entry.hash,
        "size_bytes": entry.size_bytes, "placeholder": entry.placeholder,
    }  # fmt: skip
    if args.local_dir is not None:
        placement = registry.extract_into(entry, args.local_dir, force=args.force)
        done["path"] = str(placement.directory)
        done["files"] = [{"path": p.path, "how": p.how} for p in placement.files]
    elif args.extract:
        done["path"] = str(registry.extract_bundle(entry))
    else:
        done["path"] = str(registry.fetch_bundle(entry))
    return done


def cache_ls_command(args: argparse.Namespace) -> int:
    """List the cached bundles: a table with a header and human sizes, or JSON."""
    from runtime.cli.output import human_size, print_json, table, utc_time
    from runtime.client.cache import Cache

    cache = Cache(args.cache_dir)
    entries = cache.entries()
    total = sum(e.size for e in entries)
    if args.json:
        bundles = [_cached(e) | {"last_used": utc_time(e.last_used)} for e in entries]
        print_json({"cache": str(cache.root), "total_bytes": total, "bundles": bundles})
        return 0
    if not entries:
        print(f"no bundles cached in {cache.root}")
        return 0
    rows = [
        [e.digest[:16], e.label, human_size(e.size), _minute(e.last_used),
         "yes" if e.extracted else "no"]
        for e in entries
    ]  # fmt: skip
    header = ["DIGEST", "BUNDLE", "SIZE", "LAST USED (UTC)", "EXTRACTED"]
    print(table(header, rows, right=frozenset({2})), end="")
    count = f"{len(entries)} bundle{'s' if len(entries) != 1 else ''}"
    print(f"{count}, {human_size(total)}, in {cache.root}")
    return 0


def _minute(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(seconds))


def _cached(entry: CacheEntry) -> dict[str, Any]:
    d = entry.descriptor
    return {
        "digest": entry.digest, "id": d.id if d else None, "version": d.version if d else None,
        "target": d.target if d else None, "size_bytes": entry.size, "extracted": entry.extracted,
    }  # fmt: skip


def cache_rm_command(args: argparse.Namespace) -> int:
    """Remove the bundle a ref names (resolved from the cached index) from the cache."""
    from runtime.cli.output import human_size, print_json
    from runtime.client.mirror import OfflineMiss

    registry = open_registry(args, offline=True, quiet=True)  # the cache is the point here
    try:
        entry = registry.resolve(args.ref, args.target)
    except OfflineMiss:
        raise NotCached(
            f"nothing to remove for {args.ref}: the cache {registry.cache.root} has not resolved "
            f"it from {registry.location} (`registry-runtime cache ls` lists what it holds)"
        ) from None
    cached = registry.cache.entry(entry.hash)
    if cached is None:
        raise NotCached(
            f"{entry.id}@{entry.version} ({entry.target}) is not in the cache "
            f"{registry.cache.root}: nothing to remove (`registry-runtime cache ls` lists it)"
        )
    registry.cache.remove(entry.hash)
    if args.json:
        print_json({"cache": str(registry.cache.root), "removed": _cached(cached)})
    else:
        print(f"removed {cached.label} ({human_size(cached.size)}) from {registry.cache.root}")
    return 0


def cache_prune_command(args: argparse.Namespace) -> int:
    """Remove bundles not used for ``--keep-days`` days."""
    from runtime.cli.output import human_size, print_json
    from runtime.client.cache import Cache

    cache = Cache(args.cache_dir)
    report = cache.prune(args.keep_days)
    if args.json:
        print_json({
            "cache": str(cache.root), "removed_bundles": report.blobs,
            "freed_bytes": report.freed_bytes, "removed_partials": report.partials,
        })  # fmt: skip
        return 0
    print(
        f"removed {report.blobs} bundle(s) ({human_size(report.freed_bytes)}) and "
        f"{report.partials} abandoned partial download(s) from {cache.root}"
    )
    return 0


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not 0 <= days < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of days >= 0, got {text!r}")
    return days


def _size(text: str) -> int:
    match = _SIZE.fullmatch(text)
    unit = _UNITS.get(match[2].lower()) if match else None
    if match is None or unit is None or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(
            f"{quoted(text)} is not a size: write a positive number of bytes, or one followed by "
            "KiB, MiB, GiB or TiB (e.g. 200GiB)"
        )
    return int(match[1]) * unit


def _directory(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: name a directory")
    return Path(text)
