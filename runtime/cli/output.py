"""How the commands report: JSON on stdout, sizes in human units, aligned tables.

Shared by ``registry-runtime`` and ``registry-build``. Under ``--json`` a command prints one JSON
document on stdout and nothing else (a failure too: :func:`runtime.cli.run`); without it, text
for people: sizes in binary units (``16 KiB``, the units ``--max-extract`` reads), tables with a
header row.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from runtime.registry.wire import encode_pretty

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def print_json(value: object) -> None:
    """``value`` (msgspec structs, dicts, lists, ...) as indented JSON on stdout."""
    sys.stdout.write(encode_pretty(value).decode())


def human_size(size: int) -> str:
    """``size`` bytes for people: ``512 B``, ``1.5 KiB``, ``16 KiB``, ``3.2 GiB``."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            break
    return f"{value:.1f} {unit}" if round(value, 1) < 10 else f"{value:.0f} {unit}"


def utc_time(seconds: float) -> str:
    """A timestamp as RFC 3339 UTC, to the second (``2026-02-13T10:04:05Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int]) -> str:
    """``rows`` under ``header``, in columns two spaces apart; columns in ``right`` (by
    position) are aligned right, as numbers are. Lines carry no trailing spaces."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"
