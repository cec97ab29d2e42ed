"""Documents that people write (``bundles.json``/``.yaml``, ``pipeline.yaml``, a
``model_metadata.json``): parsed into plain data, with a bound on what a hostile one can cost.

One reader for both formats, and what comes out is JSON's data model (objects with string keys,
arrays, strings, numbers, booleans, null), plus dates from YAML so that callers can say "quote it":

- nesting is bounded (:data:`MAX_DEPTH`): before parsing for JSON, while composing for YAML, so a
  ``[`` repeated 200,000 times is one line of error, not a ``RecursionError``;
- YAML anchors (``&a``) and aliases (``*a``) are refused where they first appear, before anything
  expands: a few hundred bytes of nested aliases otherwise expand to gigabytes. So are explicit tags
  (``!!python/object``, ``!!binary``, ``!!set``, ``!x``) and keys that are not strings;
- a key appears once per object;
- no string holds half of a UTF-16 pair (``"\\ud800"``), which no UTF-8 file can carry.

Every problem is a :class:`~runtime.errors.ConfigError` whose line names the document (the
``label`` the caller gives), the line and column where known, and the fix. :func:`quoted` cuts a
value for such a line: a document can hold a string of any size, a message stays short.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from runtime.errors import ConfigError

MAX_DEPTH = 64  # arrays and objects inside each other; a bundles document needs five
MAX_DIGITS = 4300  # digits of an integer: Python's own limit for int(str)
QUOTE_LIMIT = 60  # characters of a value shown in a message

_JSON_NESTING = re.compile(r'"(?:[^"\\]++|\\.)*+"?|[\[\]{}]', re.DOTALL)


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for a message, cut after ``limit`` characters (saying how long it was)."""
    return shorten(repr(value), limit, len(value) if isinstance(value, str) else None)


def shorten(text: str, limit: int = QUOTE_LIMIT, length: int | None = None) -> str:
    """``text`` itself when short, else its first ``limit`` characters and its ``length``
    (by default its own)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) if length is None else length} characters)"


def parse_json(text: str, label: str) -> Any:
    """The data of the JSON document ``text``; raises ConfigError naming ``label``."""
    too_deep = _json_too_deep(text)
    if too_deep is not None:
        raise ConfigError([f"{label}: {_where(text, too_deep)}{_deep_problem()}"])
    duplicates: list[str] = []
    try:
        document = json.loads(
            text,
            object_pairs_hook=functools.partial(_unique_pairs, duplicates),
            parse_int=functools.partial(_bounded_int, label),
        )
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [f"{label}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}"]
        ) from None
    if duplicates:
        raise ConfigError(
            [
                f"{label}: key {quoted(key)} appears twice in one object, and JSON keeps only "
                "the last: remove or rename one"
                for key in dict.fromkeys(duplicates)
            ]
        )
    return _no_lone_surrogates(document, label)


def _json_too_deep(text: str) -> int | None:
    """The offset where ``text`` first nests deeper than MAX_DEPTH (strings skipped), or None."""
    depth = 0
    for match in _JSON_NESTING.finditer(text):
        opening = text[match.start()]
        if opening in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return match.start()
        elif opening in "]}":
            depth -= 1
    return None


def _where(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    column = offset - text.rfind("\n", 0, offset)
    return f"line {line} column {column}: "


def _deep_problem() -> str:
    return f"nested more than {MAX_DEPTH} arrays or objects deep: flatten the document"


def _unique_pairs(duplicates: list[str], pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                duplicates.append(key)
            seen.add(key)
    return obj


def _bounded_int(label: str, digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_DIGITS:
        raise ConfigError(
            [
                f"{label}: a number has {len(digits)} digits, over the {MAX_DIGITS}-digit limit: "
                "shorten it, or quote it to keep it as text"
            ]
        )
    return int(digits)


def _no_lone_surrogates(document: Any, label: str) -> Any:
    try:
        json.dumps(document, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end].encode("utf-8", "backslashreplace").decode()
        raise ConfigError(
            [f"{label}: a string holds {bad}, half of a UTF-16 pair: fix that escape"]
        ) from None
    return document


class _Refused(Exception):
    """A YAML construct this reader does not accept (anchor, alias, tag, depth, key type)."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.mark = mark


def parse_yaml(text: str, label: str) -> Any:
    """The data of the YAML document ``text``; raises ConfigError naming ``label``."""
    import yaml

    try:
        return _no_lone_surrogates(yaml.load(text, Loader=_loader()), label)
    except _Refused as exc:
        raise ConfigError([f"{label}: {_mark(exc.mark)}{exc.problem}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{label}: {_mark(mark)}invalid YAML: {problem}"]) from None


def _mark(mark: Any) -> str:
    return f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""


@functools.cache
def _loader() -> type:
    """A SafeLoader that refuses what :mod:`runtime.documents` refuses (built on first use, so
    that importing this module does not import yaml)."""
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()  # type: ignore[no-untyped-call]
            _check_event(event, self.depth)
            self.depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep)
            except ValueError:  # int() over its digit limit, a date like 2024-02-30
                kind = str(node.tag).rpartition(":")[2]
                raise _Refused(
                    f"{quoted(node.value)} is not a valid {kind}: quote it to keep it as text",
                    node.start_mark,
                ) from None

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[str] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise _Refused(
                        "YAML merge keys (<<) are not accepted: write the keys out in full",
                        key_node.start_mark,
                    )
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, str):
                    raise _Refused(
                        f"key {quoted(key)} is not a string: quote it", key_node.start_mark
                    )
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {quoted(key)} appears twice in one mapping: keep one",
                        key_node.start_mark,
                    )  # fmt: skip
                seen.add(key)
            return super().construct_mapping(node, deep)

    return Loader


def _check_event(event: Any, depth: int) -> None:
    """Refuse an alias, an anchor, an explicit tag or one level too many, before composing."""
    import yaml

    if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
        name = event.anchor
        raise _Refused(
            f"YAML anchors and aliases (&{shorten(name)}, *{shorten(name)}) are not accepted, "
            "as they can expand without bound: write the value out in full",
            event.start_mark,
        )
    if getattr(event, "tag", None) is not None:
        raise _Refused(
            f"the YAML tag {shorten(event.tag)} is not accepted: write a plain value",
            event.start_mark,
        )
    nests = isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent)
    if nests and depth >= MAX_DEPTH:
        raise _Refused(_deep_problem(), event.start_mark)
