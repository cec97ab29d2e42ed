"""``registry-build publish``, ``reindex``, ``verify`` and ``gc``."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from registry_build.commit import Options
from runtime.storage.location import open_store
from runtime.storage.store import Store
from runtime.trust import SIGNING_ENV, signing_from

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
NO_INDEX_WARNING = (
    "--no-index: `index`, the bare array that Xybrid's GET /index reads, is not updated, so "
    "Xybrid clients do not see the bundles published from now on (the copy there stays as it "
    "was); publish without --no-index, or run `registry-build reindex`, to bring it back"
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
    p.set_defaults(handler=_publish)

    p = subparsers.add_parser("reindex", help="rebuild index and pages from descriptors/ alone")
    p.add_argument("dest", metavar="DEST", help="a directory or s3://bucket/prefix")
    no_index(p)
    signing_options(p)
    _endpoint(p)
    p.set_defaults(handler=_reindex)

    p = subparsers.add_parser("verify", help="hash every blob the index names; exit 1 if any fail")
    p.add_argument("dest", metavar="DEST", help="a directory or s3://bucket/prefix")
    _endpoint(p)
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
    p.set_defaults(handler=_gc)


def no_index(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-index``: leave ``index`` (Xybrid's GET /index) as it is, for very large
    registries, where rewriting every bundle's entry costs more than the bundle published."""
    parser.add_argument(
        "--no-index",
        dest="xybrid_index",
        action="store_false",
        help="do not update `index`, the bare array Xybrid's GET /index reads (very large "
        "registries: it holds every bundle); index.json, shards and v1/models stay current",
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
    """The commit options the arguments ask for; warns on stderr what ``--no-index`` loses."""
    if not args.xybrid_index:
        print(f"Warning: {NO_INDEX_WARNING}", file=sys.stderr)
    signing = signing_from(args.signing_key, args.root)
    return Options(xybrid_index=args.xybrid_index, signing=signing)


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
    from registry_build.publish import Promote, publish_registry

    promote = (
        None if args.alias is None else Promote(args.alias, args.actor, "registry-build publish")
    )
    report = publish_registry(
        args.src, _store(args), promote=promote, progress=not args.quiet,
        options=commit_options(args),
    )  # fmt: skip
    print(report.summary(), file=sys.stderr)
    for line in report.promoted:
        print(f"promoted {line}", file=sys.stderr)
    return 0


def _reindex(args: argparse.Namespace) -> int:
    from registry_build.maintenance import reindex

    written = reindex(_store(args), options=commit_options(args))
    print(f"reindexed {args.dest}: wrote {len(written)} objects", file=sys.stderr)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from registry_build.maintenance import verify

    checked, problems = verify(_store(args))
    for problem in problems:
        print(problem, file=sys.stderr)
    found = f"{len(problems)} problem{'' if len(problems) == 1 else 's'}"
    print(f"verified {checked} blobs in {args.dest}: {found}", file=sys.stderr)
    return 1 if problems else 0


def _gc(args: argparse.Namespace) -> int:
    from registry_build.maintenance import gc

    doomed = gc(_store(args), args.grace, dry_run=args.dry_run)
    for info in doomed:
        print(f"{info.key}\t{info.size}")
    verb = "would delete" if args.dry_run else "deleted"
    total = sum(i.size for i in doomed) / 1e6
    blobs = sum(i.key.startswith("blobs/") for i in doomed)
    shards = len(doomed) - blobs
    print(f"{verb} {blobs} blobs and {shards} shards ({total:.1f} MB)", file=sys.stderr)
    return 0
