"""``registry-build discover DIR [--write PATH | --merge PATH] [--json]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from registry_build.discover import Result, Stats, discover, dump


def register(subparsers: Any) -> None:
    """Add the discover command."""
    p = subparsers.add_parser(
        "discover",
        help="find models in a directory and describe them as bundles.json entries",
        description="Walk DIR, read each model's headers (never its weights) and propose "
        "bundles.json entries. Without --write or --merge the document is printed.",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="directory to scan")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--write", type=Path, metavar="PATH", help="write a new bundles.json")
    where.add_argument(
        "--merge", type=Path, metavar="PATH", help="add to an existing bundles.json, keeping edits"
    )
    p.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    p.set_defaults(handler=_discover)


def _discover(args: Any) -> int:
    result = discover(args.dir, write=args.write, merge_into=args.merge)
    if args.json:
        report = {"changes": list(result.changes), "stats": result.stats.as_dict()}
        if args.write is None and args.merge is None:
            report["document"] = result.document
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    _print_human(args, result)
    return 0


def _print_human(args: Any, result: Result) -> None:
    if args.merge is not None:
        for line in result.changes or [f"{args.merge}: nothing to change"]:
            print(line)
    elif args.write is not None:
        print(f"wrote {args.write} ({len(result.document['bundles'])} bundles)")
    else:
        sys.stdout.write(dump(result.document).decode("utf-8"))
    for line in _stats_lines(result.stats):
        print(line, file=sys.stderr)


def _stats_lines(stats: Stats) -> list[str]:
    lines = [f"error: {line}" for line in stats.errors]
    lines += [f"note: {line}" for line in stats.notes]
    lines.append(
        f"scanned {stats.scanned} files, found {stats.found} models, added {stats.added}, "
        f"updated {stats.updated}, errors {len(stats.errors)}; read {stats.bytes_read} header "
        f"bytes from {stats.files_read} files (at most {stats.max_bytes_per_file} from one)"
    )
    return lines
