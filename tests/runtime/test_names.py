"""Names, natural version order, targets and refs."""

from __future__ import annotations

import re

import msgspec
import pytest

from runtime.errors import InvalidNameError, RefError
from runtime.names import (
    NAME_PATTERN,
    TARGETS,
    Ref,
    canonical_target,
    check_name,
    detect_target,
    highest_version,
    is_name,
    parse_ref,
    version_key,
)
from runtime.registry.wire import Name


@pytest.mark.parametrize(
    "value", ["a", "whisper-tiny", "Llama_3.2", "1.0.0-rc.1", "2026-02-13_001", "x" * 128]
)
def test_valid_names(value: str) -> None:
    assert is_name(value)


INVALID_NAMES = [
    "",
    "-a",
    "a-",
    ".hidden",
    "a/b",
    "a..b",
    "..",
    "a b",
    "é",
    "x" * 129,
    "a@b",
    "a\\b",
]


@pytest.mark.parametrize("value", [*INVALID_NAMES, "a\n", "a\nb", "\na", "a\r"])
def test_invalid_names(value: str) -> None:
    assert not is_name(value)


@pytest.mark.parametrize("value", [*INVALID_NAMES, "a\n", "a..b", "whisper", "1.0.0-rc.1"])
def test_the_name_pattern_is_the_name_rule(value: str) -> None:
    """msgspec's ``Meta(pattern=...)`` (registry documents, service requests) decides as is_name,
    a trailing newline included (Python's bare ``$`` would let "a\\n" through)."""
    try:
        msgspec.json.decode(msgspec.json.encode(value), type=Name)
        decoded = True
    except msgspec.ValidationError:
        decoded = False
    assert decoded == is_name(value) == bool(re.search(NAME_PATTERN, value))


def test_a_long_bad_name_is_cut_in_the_message() -> None:
    with pytest.raises(InvalidNameError) as info:
        check_name("model", "x" * 100_000 + "/")
    assert str(info.value) == (
        f"model '{'x' * 59}... (100001 characters) is not a valid name: use 1-128 letters, "
        "digits, '.', '_' or '-', starting and ending with a letter or digit, without '..'"
    )


def test_check_name_message() -> None:
    with pytest.raises(InvalidNameError) as info:
        check_name("alias", "../prod")
    assert str(info.value) == (
        "alias '../prod' is not a valid name: use 1-128 letters, digits, '.', '_' or '-', "
        "starting and ending with a letter or digit, without '..'"
    )


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("1.9", "1.10"),
        ("1.0.0-rc.1", "1.0.0"),
        ("1.0.0-alpha", "1.0.0-beta"),
        ("1.0.0-rc.2", "1.0.0-rc.10"),
        ("2026-02-13_001", "2026-02-13_002"),
        ("2026-02-13_999", "2026-02-14_001"),
        ("1.0", "1.0.1"),
        ("v2", "v10"),
        ("0.9.9", "1"),
    ],
)
def test_natural_version_order(low: str, high: str) -> None:
    assert version_key(low) < version_key(high)
    assert highest_version([high, low]) == high


def test_version_order_is_total() -> None:
    versions = ["1.0", "1-0", "1.0.0", "1.00"]
    assert sorted(versions, key=version_key) == sorted(
        sorted(versions, key=version_key), key=version_key
    )
    assert len({version_key(v) for v in versions}) == 4


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("macos-arm64", "macos-arm64"),
        ("ios-aarch64", "ios-arm64"),
        ("android-arm", "android-arm32"),
        ("linux-aarch64", "linux-arm64"),
        ("macos-aarch64", "macos-arm64"),
        ("LINUX-x86_64", "linux-x86_64"),
        ("universal", "universal"),
        ("ios-x64", None),
        ("windows-aarch64", None),
    ],
)
def test_target_synonyms(spelling: str, canonical: str | None) -> None:
    assert canonical_target(spelling) == canonical


def test_detect_target_is_canonical() -> None:
    assert detect_target() in TARGETS


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("whisper", Ref("whisper")),
        ("whisper@1.2", Ref("whisper", "1.2")),
        ("whisper@production", Ref("whisper", "production")),
        (" whisper@1.2 ", Ref("whisper", "1.2")),
    ],
)
def test_parse_ref(text: str, ref: Ref) -> None:
    assert parse_ref(text) == ref
    assert str(ref) == text.strip()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("@1.0", "ref '@1.0' has no model before '@': write MODEL@VERSION or MODEL@ALIAS"),
        (
            "whisper@",
            "ref 'whisper@' has nothing after '@': write whisper@VERSION, whisper@ALIAS, "
            "or just whisper for the highest version",
        ),
        ("a@b@c", "ref 'a@b@c' has more than one '@': write MODEL@VERSION or MODEL@ALIAS"),
        (
            "whisper@../x",
            "ref 'whisper@../x': selector '../x' is not a valid name: use 1-128 letters, digits, "
            "'.', '_' or '-', starting and ending with a letter or digit, without '..'",
        ),
    ],
)
def test_bad_refs(text: str, message: str) -> None:
    with pytest.raises(RefError) as info:
        parse_ref(text)
    assert str(info.value) == message
