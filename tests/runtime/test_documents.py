"""Documents people write: hostile ones cost one line of error, never a traceback or the memory."""

# Tables of documents and the exact messages they must produce read best one per line.
# ruff: noqa: E501

from __future__ import annotations

import datetime
from typing import Any

import pytest

from runtime.documents import MAX_DEPTH, parse_json, parse_yaml, quoted
from runtime.errors import ConfigError

DEEP = f"nested more than {MAX_DEPTH} arrays or objects deep: flatten the document"
ANCHORS = (
    "YAML anchors and aliases (&a, *a) are not accepted, as they can expand without bound: "
    "write the value out in full"
)


def laughs(levels: int) -> str:
    """The billion laughs: each level an array of nine aliases of the one before."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, levels + 1):
        lines.append(f"l{n}: &l{n} [{','.join([f'*l{n - 1}'] * 9)}]")
    return "\n".join(lines).replace("&l0", "&a") + "\n"


def problems(parse: Any, text: str, label: str = "doc") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text, label)
    return caught.value.problems


JSON_CASES: list[tuple[str, str, str]] = [
    ("200,000 brackets", "[" * 200_000, f"doc: line 1 column {MAX_DEPTH + 1}: {DEEP}"),
    ("deep objects", '{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1), f"doc: line 1 column {5 * MAX_DEPTH + 1}: {DEEP}"),
    ("deep on line 3", '\n\n  {"a": ' + "[" * MAX_DEPTH, f"doc: line 3 column {3 + 6 + MAX_DEPTH - 1}: {DEEP}"),
    ("duplicate keys", '{"a": 1, "b": 2, "a": 3, "b": 4}', "doc: key 'a' appears twice in one object, and JSON keeps only the last: remove or rename one"),
    ("a 5,000-digit number", "1" * 5000, "doc: a number has 5000 digits, over the 4300-digit limit: shorten it, or quote it to keep it as text"),
    ("lone surrogate", '{"a": "x\\udc00"}', "doc: a string holds \\udc00, half of a UTF-16 pair: fix that escape"),
    ("syntax", '{"a": }', "doc: line 1 column 7: invalid JSON: Expecting value"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "first"), [c[1:] for c in JSON_CASES], ids=[c[0] for c in JSON_CASES]
)
def test_json_refusals_are_one_line(text: str, first: str) -> None:
    assert problems(parse_json, text)[0] == first


def test_json_within_the_bounds_parses() -> None:
    nested = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert parse_json(nested, "doc") is not None
    brackets_in_strings = '{"a": "' + "[{" * 1000 + '\\"[", "b": ["]"]}'
    assert parse_json(brackets_in_strings, "doc") == {"a": "[{" * 1000 + '"[', "b": ["]"]}


YAML_CASES: list[tuple[str, str, str]] = [
    ("billion laughs", laughs(9), f"doc: line 1 column 5: {ANCHORS}"),
    ("an alias before its anchor is refused too", "a: *a\n", f"doc: line 1 column 4: {ANCHORS}"),
    ("an unused anchor", "a: &a 1\n", f"doc: line 1 column 4: {ANCHORS}"),
    ("200,000 brackets", "[" * 200_000, f"doc: line 1 column {MAX_DEPTH + 1}: {DEEP}"),
    ("deep block mappings", "".join(f"{'  ' * n}k:\n" for n in range(MAX_DEPTH + 1)) + "  " * (MAX_DEPTH + 1) + "v\n", f"doc: line {MAX_DEPTH + 1} column {2 * MAX_DEPTH + 1}: {DEEP}"),
    ("python tag", "a: !!python/object/apply:os.system [id]\n", "doc: line 1 column 4: the YAML tag tag:yaml.org,2002:python/object/apply:os.system is not accepted: write a plain value"),
    ("set tag", "a: !!set {x}\n", "doc: line 1 column 4: the YAML tag tag:yaml.org,2002:set is not accepted: write a plain value"),
    ("local tag", "a: !x 1\n", "doc: line 1 column 4: the YAML tag !x is not accepted: write a plain value"),
    ("merge key", "<<: {a: 1}\nb: 2\n", "doc: line 1 column 1: YAML merge keys (<<) are not accepted: write the keys out in full"),
    ("number key", "{1: a}\n", "doc: line 1 column 2: key 1 is not a string: quote it"),
    ("impossible date", "a: 2024-02-30\n", "doc: line 1 column 4: '2024-02-30' is not a valid timestamp: quote it to keep it as text"),
    ("a 5,000-digit number", "a: " + "9" * 5000, f"doc: line 1 column 4: '{'9' * 59}... (5000 characters) is not a valid int: quote it to keep it as text"),
    ("duplicate key", "a: 1\na: 2\n", "doc: line 2 column 1: invalid YAML: key 'a' appears twice in one mapping: keep one"),
    ("lone surrogate", 'a: "\\udc00"\n', "doc: a string holds \\udc00, half of a UTF-16 pair: fix that escape"),
    ("control character", "a: \x01\n", "doc: invalid YAML: unacceptable character #x0001: special characters are not allowed"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "first"), [c[1:] for c in YAML_CASES], ids=[c[0] for c in YAML_CASES]
)
def test_yaml_refusals_are_one_line(text: str, first: str) -> None:
    assert problems(parse_yaml, text) == [first]


def test_yaml_gives_json_data_and_dates() -> None:
    text = 'a: [1, 2.5, true, null, "x"]\nb: {c: d}\nwhen: 2026-02-13\n'
    assert parse_yaml(text, "doc") == {
        "a": [1, 2.5, True, None, "x"],
        "b": {"c": "d"},
        "when": datetime.date(2026, 2, 13),
    }
    nested = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert parse_yaml(nested, "doc") is not None


def test_quoted_cuts_long_values() -> None:
    assert quoted("short") == "'short'"
    assert quoted("x" * 100_000) == f"'{'x' * 59}... (100000 characters)"
    assert quoted(b"bad\xff") == "b'bad\\xff'"
    assert quoted(list(range(1000))).endswith("... (4890 characters)")
