"""``registry-runtime resolve``, ``fetch``, ``cache ls|prune``: the client on the command line."""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path
from typing import Any

from runtime.cli import registry_location
from runtime.documents import quoted
from runtime.errors import UsageError
from runtime.storage.location import Location

MAX_EXTRACT_ENV = "BUNDLE_MAX_EXTRACT"
_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"\s*(\d{1,16})\s*([A-Za-z]*)\s*")


def register(subparsers: Any) -> None:
    """Add the client's commands."""
    resolve = subparsers.add_parser("resolve", help="show which bundle a ref names here")
    resolve.add_argument("ref", help="MODEL, MODEL@VERSION or MODEL@ALIAS")
    _client_options(resolve)
    resolve.add_argument("--json", action="store_true", help="print the descriptor as JSON")
    resolve.set_defaults(handler=resolve_command)

    fetch = subparsers.add_parser(
        "fetch", help="download, verify and cache a bundle; print its path"
    )
    fetch.add_argument("ref", nargs="?", help="MODEL, MODEL@VERSION or MODEL@ALIAS")
    fetch.add_argument("--pipeline", type=Path, help="fetch every stage of a Xybrid pipeline.yaml")
    fetch.add_argument("--extract", action="store_true", help="print the extracted directory")
    fetch.add_argument(
        "--max-extract",
        type=_size,
        metavar="SIZE",
        help="refuse to extract a bundle larger than this, e.g. 200GiB "
        f"(default: ${MAX_EXTRACT_ENV}, else 1000x the bundle's size, at least 256MiB, at most "
        "64GiB)",
    )
    _client_options(fetch)
    fetch.set_defaults(handler=fetch_command)

    cache = subparsers.add_parser("cache", help="list or prune the local bundle cache")
    commands = cache.add_subparsers(dest="cache_command", metavar="COMMAND", required=True)
    ls = commands.add_parser("ls", help="list cached bundles, most recently used first")
    ls.add_argument("--cache-dir", type=_directory, help="cache directory")
    ls.set_defaults(handler=cache_ls_command)
    prune = commands.add_parser("prune", help="remove bundles not used for N days")
    prune.add_argument("--keep-days", type=_days, default=30.0, help="default: 30")
    prune.add_argument("--cache-dir", type=_directory, help="cache directory")
    prune.set_defaults(handler=cache_prune_command)


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", help="URL, directory or s3:// (default: $BUNDLE_REGISTRY)")
    parser.add_argument("--target", help="platform target (default: this machine, then universal)")
    parser.add_argument("--offline", action="store_true", help="use only the cache, no network")
    parser.add_argument("--cache-dir", type=_directory, help="cache directory")
    trust_option(parser)


def trust_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--trust ROOT.json``: verify the registry's signed metadata from that root."""
    parser.add_argument(
        "--trust",
        type=Path,
        metavar="ROOT.json",
        help="verify index.json through the registry's signed metadata from this pinned root "
        "(KEYS/root.json); refuse a registry that fails (default: $BUNDLE_REGISTRY_TRUST)",
    )


def _registry(
    args: argparse.Namespace, from_file: Location | None = None, max_extract: int | None = None
) -> Any:
    from runtime.client.cache import Cache
    from runtime.client.registry import Registry
    from runtime.trust import trust_from

    location = registry_location(args.registry, from_file)
    cache = Cache(args.cache_dir)
    return Registry(
        location, cache=cache, offline=args.offline, max_extract_bytes=max_extract,
        trust=trust_from(args.trust),
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
    from runtime.registry.wire import encode_pretty

    descriptor = _registry(args).resolve(args.ref, args.target)
    if args.json:
        print(encode_pretty(descriptor).decode(), end="")
    else:
        d = descriptor
        print(f"{d.id}@{d.version} {d.target} {d.hash} {d.size_bytes}")
    return 0


def fetch_command(args: argparse.Namespace) -> int:
    """Fetch one ref or every stage of a pipeline; print the paths."""
    from runtime.client.pipeline import fetch_pipeline, load_pipeline

    if (args.ref is None) == (args.pipeline is None):
        raise UsageError("fetch needs exactly one of REF or --pipeline FILE")
    ceiling = _max_extract(args)
    pipeline = None if args.pipeline is None else load_pipeline(args.pipeline)
    registry = _registry(args, pipeline.registry if pipeline else None, ceiling)
    if pipeline is not None:
        paths = fetch_pipeline(pipeline, registry, target=args.target, extract=args.extract)
    else:
        paths = [(registry.extract if args.extract else registry.fetch)(args.ref, args.target)]
    for path in paths:
        print(path)
    return 0


def cache_ls_command(args: argparse.Namespace) -> int:
    """List the cached bundles."""
    from runtime.client.cache import Cache

    cache = Cache(args.cache_dir)
    entries = cache.entries()
    if not entries:
        print(f"no bundles cached in {cache.root}")
    for e in entries:
        used = time.strftime("%Y-%m-%d %H:%M", time.gmtime(e.last_used))
        tree = "extracted" if e.extracted else "-"
        print(f"{e.digest[:16]}  {e.label:<40} {e.size:>12}  {used} UTC  {tree}")
    return 0


def cache_prune_command(args: argparse.Namespace) -> int:
    """Remove bundles not used for ``--keep-days`` days."""
    from runtime.client.cache import Cache

    cache = Cache(args.cache_dir)
    report = cache.prune(args.keep_days)
    print(
        f"removed {report.blobs} bundle(s) ({report.freed_bytes} bytes) and "
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
