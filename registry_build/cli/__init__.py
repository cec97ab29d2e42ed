"""``registry-build``: a thin command line over the build side.

Each command group lives in a module of this package exposing ``register(subparsers)``; the
handler parses nothing itself beyond argparse and calls one typed function.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from runtime.cli import build_parser, run

# Modules that contribute subcommands, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "registry_build.cli.build",
    "registry_build.cli.publish",
    "registry_build.cli.keys",
    "registry_build.cli.discover",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``registry-build``."""
    parser = build_parser(
        "registry-build",
        "Build a static registry of model bundles from bundles.json and publish it.",
        COMMAND_MODULES,
    )
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
