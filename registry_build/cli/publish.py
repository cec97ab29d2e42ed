"""``registry-build publish``, ``reindex``, ``verify`` and ``gc``."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from registry_build.commit import Options
from runtime.cli import Detailed, json_option
from runtime.cli.output import human_size, print_json
from runtime.errors import IntegrityError
from runtime.extras import require
from runtime.storage.location import open_store
from runtime.storage.store import Store
from runtime.trust import SIGNING_ENV, signing_from

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
NO_INDEX_WARNING = (
    "--no-index: `index`, the bare array that Xybrid's GET /index reads, is not updated, so "
    "Xybrid clients do not see the bundles published from now on (the copy there stays as it "
    "was); publish without --no-index, or run `registry-build reindex`, to bring it back"
)
NO_MODEL_LIST_WARNING = (
    "--no-model-list: `v1/models`, the OpenAI-style model list (GET /v1/models), and the "
    "browse page's model list (index.html, index-N.html) are not updated, so OpenAI-style "
    "clients and the list do not show the models published from now on (each model's own page "
    "is current, and the list's filter box finds it by name over http); publish without "
    "--no-model-list, or run `registry-build reindex`, to bring them back"
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def register(subparsers: Any) -> None:
    """Add the publish, reindex, verify and gc commands."""
    p = subparsers.add_parser("publish", help="copy a built registry to a directory or s3://")
    p.add_argument("src", type=Path, metavar="SRC", help="a built registry directory")
    p.add_argument("dest", metavar="DEST", help="a directory or s3://bucket/prefix")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--alias", metavar="NAME", help="point NAME at each model's newest version")
    p.add_argument("--actor", help="who promotes (default: $GITHUB_ACTOR, else the user name)")
    no_index(p)
    signing_options(p)
    _endpoint(p)
    json_option(p, "what was uploaded, written and promoted")
    p.set_defaults(handler=_publish)

    p = subparsers.add_parser("reindex", help="rebuild index and pages from descriptors/ alone")
    p.add_argument("dest", metavar="DEST", help="a directory or s3://bucket/prefix")
    p.add_argument(
        "--init",
        action="store_true",
        help="start an empty registry at DEST when it holds no descriptors (otherwise refused: "
        "a typo in DEST would start one)",
    )
    no_index(p)
    signing_options(p)
    _endpoint(p)
    json_option(p, "the keys written")
    p.set_defaults(handler=_reindex)

    p = subparsers.add_parser("verify", help="hash every blob the index names; exit 1 if any fail")
    p.add_argument("dest", metavar="DEST", help="a directory or s3://bucket/prefix")
    _endpoint(p)
    json_option(p, "the blobs checked and the problems found")
    p.set_defaults(handler=_verify)

    p = subparsers.add_parser(
        "gc",
        help="delete blobs, shards (and old signed metadata) nothing names, older than --grace",
    )
    p.add_argument("dest", metavar="DEST", help="a directory or s3://bucket/prefix")
    p.add_argument(
        "--grace",
        type=duration,
        default="7d",
        help="keep blobs younger than this: 90s, 30m, 12h, 7d, 2w (default 7d)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    _endpoint(p)
    json_option(p, "what was (or would be) deleted")
    p.set_defaults(handler=_gc)


def no_index(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-index`` and ``--no-model-list``: leave ``index`` (Xybrid's GET /index), or
    ``v1/models`` and the model list pages, as they are, for very large registries, where
    rewriting an entry per bundle or per model costs more than the bundle published."""
    parser.add_argument(
        "--no-index",
        dest="xybrid_index",
        action="store_false",
        help="do not update `index`, the bare array Xybrid's GET /index reads (very large "
        "registries: it holds every bundle); index.json, shards and v1/models stay current",
    )
    parser.add_argument(
        "--no-model-list",
        dest="model_list",
        action="store_false",
        help="do not update `v1/models` (OpenAI-style clients' GET /v1/models) nor the page's "
        "model list made from it (very large registries: they hold every model); index.json, "
        "shards and each model's page stay current",
    )


def signing_options(parser: argparse.ArgumentParser, root: bool = True) -> None:
    """Add ``--signing-key`` (and ``--root``): sign what the command commits to a signed
    registry."""
    parser.add_argument(
        "--signing-key",
        metavar="KEY",
        help="the online key that signs the registry's metadata: a key file (KEYS/online.key) "
        f"or a signer URI such as awskms:... (default: ${SIGNING_ENV}); needed on a signed "
        "registry",
    )
    if root:
        parser.add_argument(
            "--root",
            type=Path,
            metavar="ROOT.json",
            help="install this trust root (KEYS/root.json) when the registry has no signed "
            "metadata yet; later commits need only the key",
        )


def commit_options(args: argparse.Namespace) -> Options:
    """The commit options the arguments ask for; warns on stderr what ``--no-index`` and
    ``--no-model-list`` lose."""
    if not args.xybrid_index:
        print(f"Warning: {NO_INDEX_WARNING}", file=sys.stderr)
    if not args.model_list:
        print(f"Warning: {NO_MODEL_LIST_WARNING}", file=sys.stderr)
    signing = signing_from(args.signing_key, args.root)
    return Options(xybrid_index=args.xybrid_index, model_list=args.model_list, signing=signing)


def _endpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url",
        default=None,
        help="S3-compatible endpoint (MinIO, R2); default AWS_ENDPOINT_URL or AWS",
    )


def duration(text: str) -> float:
    """Seconds in ``90s``, ``30m``, ``12h``, ``7d`` or ``2w``; a bare number is refused."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: write a number with s, m, h, d or w (e.g. 7d)"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def _store(args: argparse.Namespace) -> Store:
    return open_store(args.dest, endpoint_url=args.endpoint_url)


def _publish(args: argparse.Namespace) -> int:
    from registry_build.publish import Promote, publish_registry, source_default

    require("build", "registry-build publish")  # it renders the pages
    promote = (
        None if args.alias is None else Promote(args.alias, args.actor, "registry-build publish")
    )
    options = replace(commit_options(args), default=source_default(args.src))
    report = publish_registry(
        args.src, _store(args), promote=promote, progress=not (args.quiet or args.json),
        options=options,
    )  # fmt: skip
    if args.json:
        print_json(report)
        return 0
    print(report.summary(), file=sys.stderr)
    for line in report.promoted:
        print(f"promoted {line}", file=sys.stderr)
    return 0


def _reindex(args: argparse.Namespace) -> int:
    from registry_build.maintenance import reindex

    require("build", "registry-build reindex")  # it renders the pages
    written = reindex(_store(args), options=commit_options(args), init=args.init)
    if args.json:
        print_json({"dest": args.dest, "written": written})
        return 0
    print(f"reindexed {args.dest}: wrote {len(written)} objects", file=sys.stderr)
    return 0


class VerifyFailed(IntegrityError):
    """Raised by ``verify --json`` when a blob, shard, descriptor or the signed metadata does
    not check out (the JSON failure carries the problems)."""


def _verify(args: argparse.Namespace) -> int:
    from registry_build.maintenance import verify

    checked, problems = verify(_store(args))
    found = f"{len(problems)} problem{'' if len(problems) == 1 else 's'}"
    summary = f"verified {checked} blobs in {args.dest}: {found}"
    if args.json:
        report = {"dest": args.dest, "checked": checked, "problems": [vars(p) for p in problems]}
        if problems:
            raise Detailed(VerifyFailed(summary), report)
        print_json(report)
        return 0
    for problem in problems:
        print(problem, file=sys.stderr)
    print(summary, file=sys.stderr)
    return 1 if problems else 0


def _gc(args: argparse.Namespace) -> int:
    from registry_build.maintenance import gc

    doomed = gc(_store(args), args.grace, dry_run=args.dry_run)
    blobs = sum(i.key.startswith("blobs/") for i in doomed)
    total = sum(i.size for i in doomed)
    if args.json:
        listed = [{"key": i.key, "size": i.size} for i in doomed]
        print_json({"dest": args.dest, "dry_run": args.dry_run, "objects": listed, "bytes": total})
        return 0
    for info in doomed:
        print(f"{info.key}\t{info.size}")
    verb = "would delete" if args.dry_run else "deleted"
    shards = len(doomed) - blobs
    print(f"{verb} {blobs} blobs and {shards} shards ({human_size(total)})", file=sys.stderr)
    return 0
