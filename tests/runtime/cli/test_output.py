"""How the commands report (:mod:`runtime.cli.output`): sizes for people, tables."""

from __future__ import annotations

import pytest

from runtime.cli.output import human_size, table, utc_time


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (16 * 1024, "16 KiB"),
        (10 * 1024 - 1, "10 KiB"),  # not "10.0 KiB"
        (5 * 1024**2 + 1, "5.0 MiB"),
        (3_435_973_837, "3.2 GiB"),
        (2 * 1024**5, "2.0 PiB"),
        (4096 * 1024**5, "4096 PiB"),
    ],
)
def test_human_size(size: int, shown: str) -> None:
    assert human_size(size) == shown


def test_table_aligns_columns_and_numbers() -> None:
    text = table(
        ["NAME", "SIZE", "NOTE"], [["a", "5 B", ""], ["long-name", "16 KiB", "x"]], frozenset({1})
    )
    assert text == "NAME         SIZE  NOTE\na             5 B\nlong-name  16 KiB  x\n"


def test_utc_time() -> None:
    assert utc_time(86400 * 365 + 3661.9) == "1971-01-01T01:01:01Z"
