"""The plumbing both commands share (:mod:`runtime.cli`): ``--version``, ``--json`` results and
failures, help that shows every default."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from registry_build.cli import main as build_main
from runtime.cli import Parser, json_option, main, run
from runtime.errors import RegistryError
from runtime.names import detect_target
from runtime.registry.wire import BundleDescriptor

VERSION = importlib.metadata.version("bundle-registry")
Run = Callable[..., tuple[int, str, str]]
Site = tuple[Path, dict[tuple[str, str, str], BundleDescriptor]]
MAINS = {"registry-runtime": main, "registry-build": build_main}


@pytest.mark.parametrize("program", sorted(MAINS))
def test_version_in_process_and_installed(
    program: str, capsys: pytest.CaptureFixture[str], command: Run
) -> None:
    with pytest.raises(SystemExit) as done:
        MAINS[program](["--version"])
    assert (done.value.code, *capsys.readouterr()) == (0, f"{program} {VERSION}\n", "")
    assert command(program, "--version") == (0, f"{program} {VERSION}\n", "")


# (argv, error, kind, exit code); {root}: the registry, {tmp}: the test's directory
FAILURES = [
    (["resolve", "ghost"], "model 'ghost' is not in the index of {root} (models: real, stub)",
     "ResolveError", 1),
    (["fetch", "ghost@1.0"], "model 'ghost' is not in the index of {root} (models: real, stub)",
     "ResolveError", 1),
    (["show", "real@9.9"], "model 'real' has no version or alias '9.9' in {root} (versions: 1.0; "
     "aliases: none)", "ResolveError", 1),
    (["list", "--registry", "{tmp}/nowhere"], "{tmp}/nowhere has no index.json: is it a registry? "
     "Build one with `registry-build build`, or check --registry / BUNDLE_REGISTRY", "NoIndex", 1),
    (["cache", "rm", "real"], "nothing to remove for real: the cache {tmp}/xdg/bundle-registry has "
     "not resolved it from {root} (`registry-runtime cache ls` lists what it holds)",
     "NotCached", 1),
    (["cache", "ls", "--cache-dir", ""], "argument --cache-dir: is empty: name a directory",
     "UsageError", 2),
    (["cache", "prune", "--keep-days", "-1"],
     "argument --keep-days: expected a number of days >= 0, got '-1'", "UsageError", 2),
    (["aliases", "ghost"], "model 'ghost' is not in the index of {root} (models: real, stub)",
     "ResolveError", 1),
    (["history", "real", "prod"], "model 'real' has no alias 'prod' in {root} (aliases: none)",
     "ResolveError", 1),
    (["promote", "real", "prod", "9.9", "--actor", "a"], "model 'real' has no version '9.9' in "
     "{root} (versions: 1.0): publish it first or pick one of those", "ResolveError", 1),
    (["resolve", "real", "--bogus"], "unrecognized arguments: --bogus", "UsageError", 2),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "error", "kind", "code"), FAILURES, ids=lambda v: str(v)[:20])
def test_a_failure_under_json_is_one_object_on_stdout(
    stub_site: Site, tmp_path: Path, cli: Run, argv: list[str], error: str, kind: str, code: int
) -> None:
    where = {"root": str(stub_site[0]), "tmp": str(tmp_path)}
    done, out, err = cli(*[a.format(**where) for a in argv], "--json")
    assert (done, err) == (code, "")
    assert json.loads(out) == {"error": error.format(**where), "kind": kind, "exit_code": code}


def test_a_failure_without_json_is_one_line(
    stub_site: Site, cli: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("resolve", "ghost") == (
        1, "", f"Error: model 'ghost' is not in the index of {stub_site[0]} (models: real, stub)\n"
    )  # fmt: skip
    with pytest.raises(SystemExit) as done:
        main(["resolve", "--bogus"])
    last = capsys.readouterr().err.splitlines()[-1]
    assert (done.value.code, last) == (
        2,
        "registry-runtime: error: unrecognized arguments: --bogus",
    )


def test_verify_failing_under_json_carries_its_report(stub_site: Site, cli: Run) -> None:
    root, published = stub_site
    blob = root / published[("real", "1.0", "universal")].location.url
    blob.write_bytes(b"damaged")
    code, out, err = cli("verify", "real@1.0", "--json")
    said = json.loads(out)
    assert (code, err) == (1, "")
    assert (said["kind"], said["exit_code"], said["signed"]) == ("IntegrityError", 1, None)
    assert said["error"].startswith("real@1.0: 1 problem found:")
    assert said["report"]["model"] == "real" and not said["report"]["bundles"][0]["ok"]


def test_every_reporting_command_speaks_json(stub_site: Site, cli: Run) -> None:
    """Each command that reports something, in an order where each has something to say."""
    keys = [
        (["promote", "stub", "production", "0.2", "--actor", "ci"], {"record", "warnings"}),
        (["resolve"], {"id", "version", "target", "hash", "size_bytes", "location", "sha256"}),
        (["fetch", "stub@production"], {"bundles"}),
        (["cache", "ls"], {"cache", "total_bytes", "bundles"}),
        (["list"], {"registry", "pattern", "default", "models"}),
        (["show", "stub@production"], {"bundle", "aliases"}),
        (["aliases", "stub"], {"model", "aliases"}),
        (["verify", "stub@production"], {"report", "signed"}),
        (["cache", "rm", "stub@production"], {"cache", "removed"}),
        (["cache", "prune"], {"cache", "removed_bundles", "freed_bytes", "removed_partials"}),
    ]
    for argv, expected in keys:
        code, out, _ = cli(*argv, "--json")
        assert (argv, code, set(json.loads(out))) == (argv, 0, expected)
    code, out, _ = cli("history", "stub", "production", "--json")
    assert (code, [r["version"] for r in json.loads(out)]) == (0, ["0.2"])


def _demo_parser(handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    parser = Parser(prog="demo")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    step = commands.add_parser("step")
    json_option(step)
    step.set_defaults(handler=handler)
    return parser


def test_a_failure_after_output_leaves_only_the_error_on_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def half_done(_: argparse.Namespace) -> int:
        print('{"partial": true}')
        raise RegistryError("the second half failed")

    assert run(_demo_parser(half_done), ["step", "--json"]) == 1
    said = {"error": "the second half failed", "kind": "RegistryError", "exit_code": 1}
    assert json.loads(capsys.readouterr().out) == said


def test_a_missing_module_that_an_extra_brings_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def deep(_: argparse.Namespace) -> int:
        raise ModuleNotFoundError("No module named 'botocore.session'", name="botocore.session")

    assert run(_demo_parser(deep), ["step"]) == 1
    assert capsys.readouterr().err == (
        "Error: demo step needs boto3: pip install 'bundle-registry[s3]'\n"
    )


def test_a_missing_module_no_extra_brings_keeps_its_traceback() -> None:
    def broken(_: argparse.Namespace) -> int:
        raise ModuleNotFoundError("No module named 'nowhere'", name="nowhere")

    with pytest.raises(ModuleNotFoundError, match="nowhere"):
        run(_demo_parser(broken), ["step"])


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["resolve"], "--target TARGET platform target (default: this machine's, "
         f"{detect_target()} here, then universal)"),
        (["resolve"], "--registry REGISTRY registry location: a directory, an http(s):// URL or "
         "s3://BUCKET/PREFIX (default: $BUNDLE_REGISTRY)"),
        (["fetch"], "--offline use only the cache, no network (default: "
         "$BUNDLE_REGISTRY_OFFLINE=1, else off)"),
        (["cache", "ls"], "cache directory (default: $BUNDLE_REGISTRY_CACHE, else "
         "$XDG_CACHE_HOME/bundle-registry, else ~/.cache/bundle-registry; {cache} here)"),
        (["cache", "prune"], "--keep-days KEEP_DAYS keep bundles used within this many days "
         "(default: 30)"),
        (["serve"], "--db DB with --state memory: the SQLite file for services and the hive "
         "catalog (default: registry-runtime.db)"),
        (["serve"], "--ttl TTL hive liveness TTL in seconds (default: 30)"),
        (["serve"], "--port PORT port to listen on (default: 8081)"),
        (["agent"], "--interval INTERVAL seconds between heartbeats (default: 15)"),
        (["list"], "pattern glob or substring of the model id (default: every model)"),
        (["show"], "ref MODEL, MODEL@VERSION or MODEL@ALIAS (default: the registry's default "
         "model)"),
    ],
)  # fmt: skip
def test_help_shows_defaults(
    argv: list[str],
    shown: str,
    client_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "2000")  # no line breaks inside a path
    assert shown.format(cache=client_env) in _help(argv, capsys)


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def _option_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's help text as ``--help`` prints it, by its first option string."""
    blocks: dict[str, str] = {}
    current = ""
    for line in parser.format_help().splitlines():
        if line.startswith("  -"):
            current = line.split()[0].rstrip(",")
        if current:
            blocks[current] = blocks.get(current, "") + " " + line.strip()
    return blocks


def test_every_option_with_a_default_shows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "2000")
    captured: list[argparse.ArgumentParser] = []
    monkeypatch.setattr("runtime.cli.run", lambda parser, _: captured.append(parser) or 0)
    main([])
    checked, silent = [], []
    for parser in _parsers(captured[0]):
        shown = _option_help(parser)
        for action in parser._actions:
            if action.option_strings and action.nargs != 0 and action.default not in (None, "", []):
                checked.append(f"{parser.prog} {action.option_strings[0]}")
                if "(default" not in shown[action.option_strings[0]]:
                    silent.append(checked[-1])
    assert (len(checked) >= 8, silent) == (True, [])  # serve, agent, cache prune
