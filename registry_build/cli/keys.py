"""``registry-build keys init | rotate`` and ``registry-build resign``: the keys of a signed
registry and the refresh of its expiring metadata (:mod:`runtime.trust`)."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry_build.cli.publish import duration, signing_options
from runtime.errors import UsageError
from runtime.storage.location import open_store
from runtime.trust import SIGNING_ENV, require_trust, signing_from

if TYPE_CHECKING:
    from runtime.trust.keys import Expiry


def register(subparsers: Any) -> None:
    """Add the keys and resign commands."""
    keys = subparsers.add_parser("keys", help="make or rotate the keys of a signed registry")
    commands = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    p = commands.add_parser("init", help="a root key, an online key and the first root")
    p.add_argument("keys", type=Path, metavar="KEYS", help="directory for the key files")
    _expiry(p, "root", "365d")
    p.set_defaults(handler=_init)

    p = commands.add_parser(
        "rotate", help="a new root version signed by the old and new root keys, a new online key"
    )
    p.add_argument("keys", type=Path, metavar="KEYS", help="the directory `keys init` wrote")
    p.add_argument("dest", metavar="DEST", help="the signed registry: a directory or s3://")
    p.add_argument(
        "--keep-root-key", action="store_true", help="replace the online key only (renews the root)"
    )
    _expiry(p, "root", "365d")
    _signed_expiry(p)
    _endpoint(p)
    p.set_defaults(handler=_rotate)

    p = subparsers.add_parser(
        "resign", help="sign the registry's metadata anew before it expires (run it daily)"
    )
    p.add_argument("dest", metavar="DEST", help="the signed registry: a directory or s3://")
    signing_options(p, root=False)
    _signed_expiry(p)
    _endpoint(p)
    p.set_defaults(handler=_resign)


def _expiry(parser: argparse.ArgumentParser, role: str, default: str) -> None:
    parser.add_argument(
        f"--{role}-expiry",
        type=duration,
        default=default,
        metavar="DURATION",
        help=f"how long the signed {role} stays valid: 12h, 7d, 2w (default {default})",
    )


def _signed_expiry(parser: argparse.ArgumentParser) -> None:
    for role, default in (("timestamp", "1d"), ("snapshot", "7d"), ("targets", "7d")):
        _expiry(parser, role, default)


def _endpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS_ENDPOINT_URL)")


def _expiries(args: argparse.Namespace) -> Expiry:
    """The expiry options given (the others at their defaults)."""
    require_trust("signing")
    from runtime.trust.keys import Expiry

    days = {
        role: timedelta(seconds=getattr(args, f"{role}_expiry"))
        for role in ("timestamp", "snapshot", "targets", "root")
        if hasattr(args, f"{role}_expiry")
    }
    return Expiry(**days)


def _init(args: argparse.Namespace) -> int:
    require_trust("keys init")
    from runtime.trust.keys import ONLINE_KEY, ROOT_KEY, init_keys

    root = init_keys(args.keys, _expiries(args))
    expires = root.metadata.signed.expires.strftime("%Y-%m-%d")
    print(f"wrote {root.where}: root version 1, expires {expires} (public: clients pin it with "
          "--trust, the first build installs it with --root)", file=sys.stderr)  # fmt: skip
    print(f"wrote {args.keys / ROOT_KEY}: keep it offline; it signs new roots only "
          "(`registry-build keys rotate`)", file=sys.stderr)  # fmt: skip
    print(f"wrote {args.keys / ONLINE_KEY}: CI signs with it (the secret behind "
          f"${SIGNING_ENV})", file=sys.stderr)  # fmt: skip
    return 0


def _rotate(args: argparse.Namespace) -> int:
    require_trust("keys rotate")
    from runtime.trust.repository import rotate

    store = open_store(args.dest, endpoint_url=args.endpoint_url)
    done = rotate(store, args.keys, new_root_key=not args.keep_root_key, expiry=_expiries(args))
    keys = "root and online keys" if done.new_root_key else "online key"
    print(f"rotated {args.dest}: root version {done.before} -> {done.after} (new {keys}; the old "
          f"ones are in {args.keys / 'retired'}); metadata signed anew as version "
          f"{done.resigned.version}; clients follow by themselves", file=sys.stderr)  # fmt: skip
    return 0


def _resign(args: argparse.Namespace) -> int:
    signing = signing_from(args.signing_key, None, _expiries(args))
    if signing is None:
        raise UsageError(
            f"resign needs the online key: pass --signing-key KEY or set {SIGNING_ENV}"
        )
    from runtime.trust.repository import resign

    after = resign(open_store(args.dest, endpoint_url=args.endpoint_url), signing)
    expires = after.expires.strftime("%Y-%m-%dT%H:%M:%SZ") if after.expires else "?"
    print(f"resigned {args.dest}: metadata version {after.version}, timestamp expires {expires}",
          file=sys.stderr)  # fmt: skip
    return 0
