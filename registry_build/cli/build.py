"""``registry-build build``, ``list`` and ``clean``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from registry_build.build import BuildOptions, BuildReport, BundleResult, Job, build, clean
from registry_build.cli.publish import commit_options, no_index, signing_options
from registry_build.config import load_config

DEFAULT_CONFIG = "bundles.json"
DEFAULT_OUT = "site"


def register(subparsers: Any) -> None:
    """Add the build, list and clean commands."""
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
    p.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(handler=_build)

    p = subparsers.add_parser("list", help="list the bundles that bundles.json defines")
    p.add_argument("--config", type=Path, default=Path(DEFAULT_CONFIG))
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_list)

    p = subparsers.add_parser("clean", help="remove a built registry directory and its build state")
    p.add_argument("--out", type=_location, default=DEFAULT_OUT)
    p.set_defaults(handler=_clean)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class _Progress:
    """A tqdm bar on a terminal, one line per bundle otherwise, nothing under --quiet."""

    def __init__(self, quiet: bool, total: int | None = None) -> None:
        self.quiet = quiet
        self.bar: Any = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="bundle", file=sys.stderr)

    def __call__(self, job: Job, result: BundleResult) -> None:
        if self.quiet:
            return
        line = _result_line(job, result)
        if self.bar is not None:
            self.bar.set_postfix_str(job.label, refresh=False)
            self.bar.update(1)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _result_line(job: Job, result: BundleResult) -> str:
    d = result.descriptor
    extra = " (placeholder)" if result.placeholder else ""
    return (
        f"{result.status:9} {job.label}{extra}  {_size(d.size_bytes)}  "
        f"blake3:{d.hash[:12]}  {result.seconds:.2f}s"
    )


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _build(args: argparse.Namespace) -> int:
    commits = commit_options(args)
    options = BuildOptions(
        only=tuple(args.only), jobs=args.jobs, strict=args.strict, level=args.level,
        alias=args.alias, actor=args.actor, endpoint_url=args.endpoint_url,
        progress=not (args.quiet or args.json),
        xybrid_index=commits.xybrid_index, signing=commits.signing,
    )  # fmt: skip
    progress = _Progress(args.quiet or args.json)
    try:
        report = build(args.config, args.out, options, on_bundle=progress)
    finally:
        progress.close()
    for warning in report.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    if args.json:
        sys.stdout.buffer.write(msgspec.json.encode(_report_json(report)) + b"\n")
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
        sys.stdout.buffer.write(msgspec.json.encode(rows) + b"\n")
        return 0
    for row in rows:
        note = "  (missing: placeholder)" if row["source_missing"] else ""
        print(f"{row['model_id']}@{row['version']}  {row['platform']:14} {row['source']}{note}")
    return 0


def _clean(args: argparse.Namespace) -> int:
    removed = clean(args.out)
    print(f"removed {args.out}" if removed else f"nothing to remove at {args.out}", file=sys.stderr)
    return 0


def _location(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: name a directory or s3://bucket/prefix")
    return text
