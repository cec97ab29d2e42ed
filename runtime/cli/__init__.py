"""``registry-runtime``: a thin command line over the runtime package, and the plumbing that
``registry-build`` shares with it.

Each command group lives in a module of this package exposing ``register(subparsers)``; a
command's handler takes the parsed arguments, calls one typed function and returns an exit code.
Handlers import what they need lazily so that ``--help`` stays fast and a device needs no extras.

Shared by both commands (:func:`build_parser`, :func:`run`):

- ``--version``, from the installed distribution's metadata;
- help that shows every default: an option's argparse default is appended as
  ``(default: ...)`` unless its help already says ``(default: ...)``, as it does for defaults
  worked out when the command runs (an environment variable, this machine's target);
- failures: a :class:`~runtime.errors.RegistryError` is one line, ``Error: ...``, exit 1; a bad
  combination of arguments is argparse's ``error:`` line, exit 2; a module an extra brings that is
  missing is the line naming the extra (:mod:`runtime.extras`); no traceback for any of them;
- ``--json``: a command given it prints one JSON document on stdout and nothing else, and so does
  a failure: ``{"error": MESSAGE, "kind": CLASS, "exit_code": CODE}`` on stdout, with that exit
  code (a bad argument included: kind ``UsageError``, exit 2). A :class:`Detailed` failure
  adds its keys to that object (``verify`` adds its report).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import io
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, NoReturn

from runtime.errors import RegistryError, UsageError
from runtime.extras import DISTRIBUTION, explain, require_for
from runtime.storage.location import Location, parse_location

Handler = Callable[[argparse.Namespace], int]
REGISTRY_ENV = "BUNDLE_REGISTRY"

# Modules that contribute subcommands, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "runtime.cli.service",
    "runtime.cli.fetch",
    "runtime.cli.catalog",
    "runtime.cli.aliases",
)
_JSON_ERRORS: ContextVar[bool] = ContextVar("json_errors", default=False)


class NoRegistryError(RegistryError, ValueError):
    """Raised when a command needs a registry and none was given (flag, pipeline or env)."""


def registry_location(explicit: str | None, from_file: Location | None = None) -> Location:
    """The registry to use: ``--registry``, else the pipeline's ``registry:``, else
    ``$BUNDLE_REGISTRY``; parsed here, once, and checked for the extra its backend needs."""
    if explicit:
        return require_for(parse_location(explicit))
    if from_file is not None:
        return require_for(from_file)
    chosen = os.environ.get(REGISTRY_ENV)
    if not chosen:
        raise NoRegistryError(
            f"no registry given: pass --registry URL|DIR|s3://BUCKET or set {REGISTRY_ENV}"
        )
    return require_for(parse_location(chosen))


def json_option(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    """Add ``--json``: print ``what`` as JSON on stdout (a failure as a JSON object too)."""
    parser.add_argument(
        "--json",
        action="store_true",
        help=f'print {what} as JSON on stdout; a failure as {{"error", "kind", "exit_code"}}',
    )


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows every default (see the module notes)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "(default" in text or action.nargs == 0:  # said already, or a flag: off unless given
            return text
        if action.default in (None, "", [], (), argparse.SUPPRESS):
            return text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text
        shown = f"{action.default:g}" if isinstance(action.default, float) else action.default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


class Detailed(RegistryError):
    """Raised by a handler for a failure whose JSON object says more than its message: the
    ``cause``'s message and kind, plus ``detail``'s keys (``verify --json`` adds its report)."""

    def __init__(self, cause: RegistryError, detail: Mapping[str, object]) -> None:
        super().__init__(str(cause))
        self.kind = type(cause).__name__
        self.detail = detail


class ArgumentsRefused(UsageError):
    """Raised instead of argparse's exit when a command line under ``--json`` does not parse."""


class Parser(argparse.ArgumentParser):
    """argparse's parser with :class:`HelpFormatter`, and JSON errors under ``--json``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        if _JSON_ERRORS.get():
            raise ArgumentsRefused(message)
        super().error(message)


class _Version(argparse.Action):
    """``--version``: the installed distribution's version, read only when asked for."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        try:
            version = importlib.metadata.version(DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            version = f"unknown ({DISTRIBUTION} is not installed: pip install -e .)"
        print(f"{parser.prog} {version}")  # on stdout, as argparse's own version action does
        parser.exit(0)


def build_parser(prog: str, description: str, modules: Sequence[str]) -> argparse.ArgumentParser:
    """A parser (:class:`Parser`: defaults in help, ``--version``) whose subcommands come from
    ``modules``' ``register`` functions."""
    parser = Parser(prog=prog, description=description)
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="print the installed version and exit"
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=Parser
    )
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


@dataclass(frozen=True)
class Failure:
    """How a command failed: the message, its kind (an exception class), the exit code, and the
    line argparse-style usage errors print instead of ``Error: ...``."""

    message: str
    kind: str
    code: int
    line: str
    detail: Mapping[str, object] = field(default_factory=dict)

    def report(self, as_json: bool) -> int:
        """Print the failure (one JSON object on stdout, or its line on stderr); the code."""
        if as_json:
            from runtime.cli.output import print_json

            said = {"error": self.message, "kind": self.kind, "exit_code": self.code}
            print_json({**self.detail, **said})
        else:
            print(self.line, file=sys.stderr)
        return self.code


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run the chosen handler: 0 ok, 1 a user error, 2 bad usage, 130
    interrupted (see the module notes for ``--json``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = wants_json(argv)
    token = _JSON_ERRORS.set(as_json)
    try:
        args = parser.parse_args(argv)
    except ArgumentsRefused as exc:
        return Failure(str(exc), "UsageError", 2, "").report(as_json)
    finally:
        _JSON_ERRORS.reset(token)
    try:
        return _captured(args) if as_json else int(args.handler(args))
    except (RegistryError, OSError, ModuleNotFoundError, KeyboardInterrupt) as exc:
        failure = failure_of(exc, f"{parser.prog} {args.command}")
        if failure is None:
            raise
        return failure.report(as_json)


def wants_json(argv: Sequence[str]) -> bool:
    """Whether the command line asks for JSON (``--json`` before any ``--``)."""
    options = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in options


def _captured(args: argparse.Namespace) -> int:
    """Run the handler with stdout held back, so that a failure leaves nothing on stdout but
    its JSON object."""
    with contextlib.redirect_stdout(io.StringIO()) as held:
        code = int(args.handler(args))
    sys.stdout.write(held.getvalue())
    return code


def failure_of(exc: BaseException, command: str) -> Failure | None:
    """The failure ``exc`` means for ``command`` (``registry-runtime fetch``); None for one that
    is not the user's (a bug: its traceback is the report)."""
    if isinstance(exc, UsageError):
        return Failure(str(exc), "UsageError", 2, f"{command}: error: {exc}")
    if isinstance(exc, ModuleNotFoundError):
        missing = explain(exc, command)
        return None if missing is None else _error(missing)
    if isinstance(exc, Detailed):
        return Failure(str(exc), exc.kind, 1, f"Error: {exc}", exc.detail)
    if isinstance(exc, RegistryError):
        return _error(exc)
    if isinstance(exc, KeyboardInterrupt):
        return Failure("interrupted", "KeyboardInterrupt", 130, "Interrupted.")
    if isinstance(exc, OSError):  # a path the user gave that is not what it should be
        where = f" ({exc.filename})" if exc.filename else ""
        message = f"{exc.strerror or exc}{where}: check the path and its permissions"
        return Failure(message, type(exc).__name__, 1, f"Error: {message}")
    return None


def _error(exc: Exception) -> Failure:
    return Failure(str(exc), type(exc).__name__, 1, f"Error: {exc}")


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
