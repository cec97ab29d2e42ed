"""``registry-runtime``: a thin command line over the runtime package.

Each command group lives in a module of this package exposing ``register(subparsers)``; a
command's handler takes the parsed arguments, calls one typed function and returns an exit code.
Handlers import what they need lazily so that ``--help`` stays fast and a device needs no extras.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from runtime.errors import RegistryError, UsageError
from runtime.storage.location import Location, parse_location

Handler = Callable[[argparse.Namespace], int]
REGISTRY_ENV = "BUNDLE_REGISTRY"

# Modules that contribute subcommands, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "runtime.cli.service",
    "runtime.cli.fetch",
    "runtime.cli.aliases",
)


class NoRegistryError(RegistryError, ValueError):
    """Raised when a command needs a registry and none was given (flag, pipeline or env)."""


def registry_location(explicit: str | None, from_file: Location | None = None) -> Location:
    """The registry to use: ``--registry``, else the pipeline's ``registry:``, else
    ``$BUNDLE_REGISTRY``; parsed here, once."""
    if explicit:
        return parse_location(explicit)
    if from_file is not None:
        return from_file
    chosen = os.environ.get(REGISTRY_ENV)
    if not chosen:
        raise NoRegistryError(
            f"no registry given: pass --registry URL|DIR|s3://BUCKET or set {REGISTRY_ENV}"
        )
    return parse_location(chosen)


def build_parser(prog: str, description: str, modules: Sequence[str]) -> argparse.ArgumentParser:
    """An argparse parser whose subcommands come from ``modules``' ``register`` functions."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run the chosen handler: 0 ok, 1 a user error, 2 bad usage."""
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except UsageError as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RegistryError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a path the user gave that is not what it should be
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"Error: {exc.strerror or exc}{where}: check the path and its permissions",
              file=sys.stderr)  # fmt: skip
        return 1
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``registry-runtime``."""
    parser = build_parser(
        "registry-runtime",
        "Resolve, fetch and promote model bundles; run the hive/worker runtime service.",
        COMMAND_MODULES,
    )
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
