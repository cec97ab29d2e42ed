"""``registry-runtime promote | aliases | history | verify``: alias promotion and its audit trail.

Every command takes ``--registry LOC``, defaulting to ``$BUNDLE_REGISTRY``. ``aliases``,
``history`` and ``verify`` only read, so any location serves, ``http(s)://`` included;
``promote`` writes, so it needs a directory or an ``s3://`` location, and on a signed registry
the online key (``--signing-key``, ``$BUNDLE_REGISTRY_SIGNING_KEY``); ``verify`` also checks a
signed registry's metadata, from ``--trust ROOT.json`` when given. Each takes ``--json``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from runtime.cli import Detailed, json_option, registry_location
from runtime.extras import require

Subparsers = Any  # argparse's _SubParsersAction is private


def register(subparsers: Subparsers) -> None:
    """Add the alias commands to ``registry-runtime``."""
    promote = _command(subparsers, "promote", "point an alias of a model at one of its versions")
    promote.add_argument("model")
    promote.add_argument("alias")
    promote.add_argument("version")
    promote.add_argument("--actor", help="who promotes (default: $GITHUB_ACTOR, else the user)")
    promote.add_argument("--reason", default="", help="why, kept in the audit record")
    promote.add_argument(
        "--signing-key",
        metavar="KEY",
        help="the online key (KEYS/online.key or a signer URI) that signs a signed registry's "
        "index (default: $BUNDLE_REGISTRY_SIGNING_KEY)",
    )
    json_option(promote, "the record")
    promote.set_defaults(handler=run_promote)

    listing = _command(subparsers, "aliases", "list a model's aliases and their versions")
    listing.add_argument("model")
    json_option(listing, "the aliases")
    listing.set_defaults(handler=run_aliases)

    hist = _command(subparsers, "history", "show every promotion of an alias, oldest first")
    hist.add_argument("model")
    hist.add_argument("alias")
    json_option(hist, "the records")
    hist.set_defaults(handler=run_history)

    check = _command(
        subparsers, "verify", "re-hash the bundles a ref names and check its alias's chain"
    )
    check.add_argument("ref", help="MODEL, MODEL@VERSION or MODEL@ALIAS")
    check.add_argument("--target", help="only this target's bundle (default: every target)")
    check.add_argument(
        "--trust",
        type=Path,
        metavar="ROOT.json",
        help="check the signed metadata from this pinned root (default: $BUNDLE_REGISTRY_TRUST, "
        "else a signed registry's own first root)",
    )
    json_option(check, "the report")
    check.set_defaults(handler=run_verify)


def _command(subparsers: Subparsers, name: str, text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=text, description=text)
    parser.add_argument(
        "--registry",
        help="registry location: a directory, s3://bucket/prefix, or a URL to read "
        "(default: $BUNDLE_REGISTRY)",
    )
    return parser


def _store(args: argparse.Namespace) -> Any:
    from runtime.storage.location import open_store

    return open_store(registry_location(args.registry))


def run_promote(args: argparse.Namespace) -> int:
    """``promote MODEL ALIAS VERSION``."""
    from runtime.aliases import default_actor, promote_detailed
    from runtime.cli.output import print_json
    from runtime.trust import SIGNING_ENV, signing_from

    store = _store(args)
    if args.signing_key or os.environ.get(SIGNING_ENV):
        require("trust", "--signing-key" if args.signing_key else f"${SIGNING_ENV}")
    done = promote_detailed(
        store, args.model, args.alias, args.version, default_actor(args.actor), args.reason,
        signing=signing_from(args.signing_key),
    )  # fmt: skip
    for warning in done.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    r = done.record
    if args.json:
        print_json({"record": r, "warnings": list(done.warnings)})
        return 0
    was = f" (was {r.previous})" if r.previous else ""
    print(f"{r.model}@{r.alias} -> {r.version}{was}: record {r.seq} by {r.actor}")
    return 0


def run_aliases(args: argparse.Namespace) -> int:
    """``aliases MODEL``: one line per alias."""
    from runtime.aliases import aliases
    from runtime.cli.output import print_json

    views = aliases(_store(args), args.model)
    if args.json:
        fields = ("alias", "version", "seq", "time", "actor", "reason")
        listed = [{f: getattr(v, f) for f in fields} for v in views]
        print_json({"model": args.model, "aliases": listed})
        return 0
    if not views:
        print(f"{args.model} has no aliases")
    for v in views:
        print(f"{v.alias}\t{v.version}\trecord {v.seq}\t{v.time}\t{v.actor}\t{v.reason}")
    return 0


def run_history(args: argparse.Namespace) -> int:
    """``history MODEL ALIAS [--json]``."""
    from runtime.aliases import history
    from runtime.cli.output import print_json

    records = history(_store(args), args.model, args.alias)
    if args.json:
        print_json(records)
        return 0
    for r in records:
        was = r.previous or "-"
        print(f"{r.seq}\t{r.time}\t{was} -> {r.version}\t{r.actor}\t{r.reason}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """``verify REF``: exit 1 with every problem listed when anything does not check out (under
    ``--json`` the failure object carries the report too)."""
    from runtime.aliases import raise_for_problems, verify
    from runtime.cli.fetch import require_trust_extra
    from runtime.errors import IntegrityError

    store = _store(args)
    require_trust_extra(args.trust)
    signed = _verify_signed(store, args.trust)
    report = verify(store, args.ref, args.target)
    if args.json:
        try:
            raise_for_problems(report)
        except IntegrityError as exc:
            raise Detailed(exc, {"report": report, "signed": signed}) from None
        from runtime.cli.output import print_json

        print_json({"report": report, "signed": signed})
        return 0
    _print_verified(report, signed)
    raise_for_problems(report)
    return 0


def _print_verified(report: Any, signed: dict[str, Any] | None) -> None:
    """The ``ok`` lines of what checked out: the signed metadata, each bundle, the chain."""
    if signed is not None:
        pinned = "from the pinned root" if signed["pinned"] else "from the registry's own root 1"
        print(f"ok\tsigned metadata\tversion {signed['version']}, root {signed['root_version']} "
              f"({pinned}), timestamp expires {signed['expires'] or '?'}")  # fmt: skip
    for check in report.bundles:
        if check.ok:
            print(f"ok\t{report.model}@{report.version}\t{check.target}\t{check.hash}")
    if report.chain is not None and not report.chain.problems:
        chain = report.chain
        print(f"ok\t{chain.model}@{chain.alias}\t{chain.records} record(s), chain intact")


def _verify_signed(store: Any, trust: Path | None) -> dict[str, Any] | None:
    """Check a signed registry's metadata (every registry, with a pinned root): what checked
    out, or the refusal as the error; None for a registry that is not signed."""
    from runtime.errors import KeyNotFound
    from runtime.registry.head import marked_signed
    from runtime.registry.index import INDEX_KEY
    from runtime.storage.store import MAX_DOCUMENT
    from runtime.trust import require_trust, trust_from

    root = trust_from(trust)
    if root is None:
        try:
            if not marked_signed(store.get(INDEX_KEY, limit=MAX_DOCUMENT)[0]):
                return None
        except KeyNotFound:
            return None  # verify says what is missing
    require_trust(f"{store.location} is signed: verifying it")
    from runtime.trust.client import check_signed

    report = check_signed(store, root)
    expires = report.expires.strftime("%Y-%m-%dT%H:%M:%SZ") if report.expires else None
    return {
        "version": report.version, "root_version": report.root_version,
        "pinned": report.pinned, "expires": expires,
    }  # fmt: skip
