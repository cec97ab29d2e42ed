"""``registry-build build``, ``list``, ``clean`` and ``serve``."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from registry_build.build import BuildOptions, BuildReport, BundleResult, Job, build, clean
from registry_build.cli.publish import commit_options, no_index, signing_options
from registry_build.config import load_config
from runtime.cli import json_option
from runtime.cli.output import human_size, print_json
from runtime.extras import require

DEFAULT_CONFIG = "bundles.json"
DEFAULT_OUT = "site"


def register(subparsers: Any) -> None:
    """Add the build, list, clean and serve commands."""
    p = subparsers.add_parser("build", help="build bundles, index and pages from bundles.json")
    p.add_argument(
        "--config", type=Path, default=Path(DEFAULT_CONFIG), help="bundles.json or .yaml"
    )
    p.add_argument(
        "--out", type=_location, default=DEFAULT_OUT, help="output directory or s3://bucket/prefix"
    )
    p.add_argument(
        "--only", nargs="+", default=[], metavar="MODEL_ID", help="build only these models"
    )
    p.add_argument("--jobs", type=_positive, default=1, help="bundles to build in parallel")
    p.add_argument("--strict", action="store_true", help="unknown keys in the config are errors")
    p.add_argument("--level", type=int, default=3, choices=range(1, 23), metavar="1-22",
                   help="zstd level (default 3)")  # fmt: skip
    p.add_argument("--alias", metavar="NAME", help="point NAME at each built model's version")
    p.add_argument("--actor", help="who promotes (default: $GITHUB_ACTOR, else the user name)")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL)")
    no_index(p)
    signing_options(p)
    json_option(p, "a report of every bundle, the keys written and the promotions")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(handler=_build)

    p = subparsers.add_parser("list", help="list the bundles that bundles.json defines")
    p.add_argument(
        "--config", type=Path, default=Path(DEFAULT_CONFIG), help="bundles.json or .yaml to read"
    )
    json_option(p, "one object per target (model, version, platform, source, fallback)")
    p.set_defaults(handler=_list)

    p = subparsers.add_parser("clean", help="remove a built registry directory and its build state")
    p.add_argument(
        "--out",
        type=_location,
        default=DEFAULT_OUT,
        help="the registry directory to remove (only what a build writes in it)",
    )
    p.set_defaults(handler=_clean)

    p = subparsers.add_parser(
        "serve", help="serve a built registry on this machine, with the content types of a host"
    )
    p.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help="the registry directory")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    p.add_argument("--port", type=_port, default=8000, help="the port (0: any free one)")
    p.add_argument(
        "--watch",
        action="store_true",
        help="build again (into --out) when --config or a source it names changes",
    )
    p.add_argument(
        "--config", type=Path, default=Path(DEFAULT_CONFIG), help="what --watch builds from"
    )
    p.add_argument(
        "--interval", type=float, default=1.0, help="seconds between --watch's looks at the files"
    )
    p.set_defaults(handler=_serve)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535, got {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class _Progress:
    """On a terminal a tqdm bar like fetch's: the source bytes packed of their total, and the
    bundles done of theirs; one line per bundle otherwise; nothing under --quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.done, self.total = 0, 0
        self.lock = threading.Lock()  # --jobs: bundles finish on several threads

    def start(self, jobs: list[Job]) -> None:
        """Open the bar once the jobs, and so the totals, are known."""
        self.total = len(jobs)
        if self.quiet or not sys.stderr.isatty():
            return
        from tqdm import tqdm

        self.bar = tqdm(
            total=sum(job.input_bytes for job in jobs), unit="B", unit_scale=True,
            unit_divisor=1024, desc=self._desc(), file=sys.stderr,
        )  # fmt: skip

    def _desc(self) -> str:
        return f"build {self.done}/{self.total} bundles"

    def __call__(self, job: Job, result: BundleResult) -> None:
        if self.quiet:
            return
        with self.lock:
            self.done += 1
            if self.bar is None:
                print(_result_line(job, result), file=sys.stderr, flush=True)
                return
            self.bar.set_description_str(self._desc(), refresh=False)
            self.bar.set_postfix_str(job.label, refresh=False)
            self.bar.update(job.input_bytes)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _result_line(job: Job, result: BundleResult) -> str:
    d = result.descriptor
    extra = " (placeholder)" if result.placeholder else ""
    return (
        f"{result.status:9} {job.label}{extra}  {human_size(d.size_bytes)}  "
        f"blake3:{d.hash[:12]}  {result.seconds:.2f}s"
    )


def _build(args: argparse.Namespace) -> int:
    require("build", "registry-build build")  # before a bundle is packed: it renders the pages
    commits = commit_options(args)
    options = BuildOptions(
        only=tuple(args.only), jobs=args.jobs, strict=args.strict, level=args.level,
        alias=args.alias, actor=args.actor, endpoint_url=args.endpoint_url,
        progress=not (args.quiet or args.json), xybrid_index=commits.xybrid_index,
        model_list=commits.model_list, signing=commits.signing,
    )  # fmt: skip
    progress = _Progress(args.quiet or args.json)
    try:
        report = build(args.config, args.out, options, on_bundle=progress, on_start=progress.start)
    finally:
        progress.close()
    for warning in report.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    if args.json:
        print_json(_report_json(report))
    elif not args.quiet:
        for line in report.promoted:
            print(f"promoted  {line}", file=sys.stderr)
        if report.published is not None:
            print(report.published.summary(), file=sys.stderr)
        print(_summary(report), file=sys.stderr)
    return 0


def _summary(report: BuildReport) -> str:
    built = sum(r.status == "built" for r in report.results)
    return (
        f"{len(report.results)} bundles ({built} built, {len(report.results) - built} unchanged), "
        f"{len(report.written)} files written to {report.out}"
    )


def _report_json(report: BuildReport) -> dict[str, Any]:
    return {
        "out": report.out,
        "bundles": [
            {"status": r.status, "placeholder": r.placeholder, "descriptor": r.descriptor}
            for r in report.results
        ],
        "written": report.written,
        "promoted": report.promoted,
        "warnings": list(report.warnings),
    }


def _list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    rows = [
        {
            "key": b.key,
            "model_id": b.model_id,
            "version": b.version,
            "platform": t.platform,
            "model_type": t.model_type,
            "source": t.source,
            "fallback": t.fallback,
            "source_missing": t.missing,
        }
        for b in config.bundles
        for t in b.targets
    ]
    for warning in config.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        note = "  (missing: placeholder)" if row["source_missing"] else ""
        print(f"{row['model_id']}@{row['version']}  {row['platform']:14} {row['source']}{note}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from registry_build.preview import Preview, Rebuild, check_registry

    rebuild = None
    if args.watch:
        require("build", "registry-build serve --watch")
        rebuild = Rebuild(args.config, args.out, args.interval)
        rebuild.run()  # what is served is the current build
    with Preview(check_registry(args.out), args.host, args.port) as preview:
        print(f"serving {args.out} at {preview.url} (Ctrl-C stops)", file=sys.stderr, flush=True)
        preview.run(rebuild)
    return 0


def _clean(args: argparse.Namespace) -> int:
    removed = clean(args.out)
    print(f"removed {args.out}" if removed else f"nothing to remove at {args.out}", file=sys.stderr)
    return 0


def _location(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: name a directory or s3://bucket/prefix")
    return text
