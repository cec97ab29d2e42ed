"""Registry documents decode into checked values, or fail with one line naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runtime.errors import CorruptDocument
from runtime.registry.wire import (
    AliasPointer,
    AliasRecord,
    BundleDescriptor,
    Index,
    Location,
    Shard,
    blob_key,
    decode_document,
    encode,
)

HEX = "ab" * 32
WHERE = "https://host/index.json"
FIX = "ask the publisher to rebuild it"
TAIL = f"; the registry is corrupt or hostile: {FIX}"
NAME_RULE = (
    "is not a valid name (use 1-128 letters, digits, '.', '_' or '-', starting and ending with a "
    "letter or digit, without '..')"
)
PATH_RULE = (
    "is not a safe relative path (no leading '/', drive, '.' or '..' part, empty part, "
    "backslash or control character)"
)


def entry(**changes: Any) -> dict[str, Any]:
    """An index entry as JSON data, with ``changes`` applied (None removes a field)."""
    fields: dict[str, Any] = {
        "id": "m",
        "version": "1.0",
        "target": "universal",
        "hash": HEX,
        "size_bytes": 10,
        "location": {"kind": "remote", "url": blob_key(HEX)},
        "sha256": HEX,
        "files": [{"path": "model.bin", "size": 10, "blake3": HEX}],
    }
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not None}


def shard_with(**changes: Any) -> bytes:
    return json.dumps({"model": "m", "bundles": [entry(**changes)]}).encode()


def test_a_sound_shard_decodes() -> None:
    shard = decode_document(shard_with(), Shard, WHERE, FIX)
    assert shard.bundles[0].hash == HEX
    assert shard.bundles[0].blob_key == blob_key(HEX)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (
            {"hash": "../../../../tmp/x/PWNED"},
            "$.bundles[0].hash: '../../../../tmp/x/PWNED' is not a 64-character lowercase hex "
            "digest",
        ),
        ({"hash": "/tmp/x/victim"}, "$.bundles[0].hash: '/tmp/x/victim' is not a 64-character "
         "lowercase hex digest"),
        ({"hash": HEX.upper()}, f"$.bundles[0].hash: '{HEX.upper()}' is not a 64-character "
         "lowercase hex digest"),
        ({"hash": HEX + "\n"}, f"$.bundles[0].hash: '{HEX}\\n' is not a 64-character lowercase "
         "hex digest"),
        ({"hash": ""}, "$.bundles[0].hash: '' is not a 64-character lowercase hex digest"),
        ({"sha256": "x"}, "$.bundles[0].sha256: 'x' is neither empty nor a 64-character "
         "lowercase hex digest"),
        ({"size_bytes": -1}, "$.bundles[0].size_bytes: -1 is not a size from 0 to "
         "1099511627776 bytes (1 TiB)"),
        ({"size_bytes": 2**40 + 1}, "$.bundles[0].size_bytes: 1099511627777 is not a size from "
         "0 to 1099511627776 bytes (1 TiB)"),
        ({"size_bytes": "10"}, "$.bundles[0].size_bytes: '10': expected `int`, got `str`"),
        ({"id": "../m"}, f"$.bundles[0].id: '../m' {NAME_RULE}"),
        ({"version": "1.0/../../x"}, f"$.bundles[0].version: '1.0/../../x' {NAME_RULE}"),
        ({"target": "a\nb"}, f"$.bundles[0].target: 'a\\nb' {NAME_RULE}"),
        ({"id": "m" * 5000}, f"$.bundles[0].id: '{'m' * 69}... (5000 characters) {NAME_RULE}"),
        ({"location": {"url": "../../etc/passwd"}}, "$.bundles[0].location.url: "
         "'../../etc/passwd' is not a relative key of letters, digits, '.', '_', '-' and '/'"),
        ({"location": {"url": "https://evil/x.xyb"}}, "$.bundles[0].location.url: "
         "'https://evil/x.xyb' is not a relative key of letters, digits, '.', '_', '-' and '/'"),
        ({"files": [{"path": "../x", "size": 1, "blake3": HEX}]},
         f"$.bundles[0].files[0].path: '../x' {PATH_RULE}"),
        ({"files": [{"path": "/etc/passwd", "size": 1, "blake3": HEX}]},
         f"$.bundles[0].files[0].path: '/etc/passwd' {PATH_RULE}"),
        ({"files": [{"path": "C:x", "size": 1, "blake3": HEX}]},
         f"$.bundles[0].files[0].path: 'C:x' {PATH_RULE}"),
        ({"files": [{"path": "a//b", "size": 1, "blake3": HEX}]},
         f"$.bundles[0].files[0].path: 'a//b' {PATH_RULE}"),
        ({"files": [{"path": "a/./b", "size": 1, "blake3": HEX}]},
         f"$.bundles[0].files[0].path: 'a/./b' {PATH_RULE}"),
        ({"files": [{"path": "a\\b", "size": 1, "blake3": HEX}]},
         f"$.bundles[0].files[0].path: 'a\\\\b' {PATH_RULE}"),
        ({"files": [{"path": "m.bin", "size": 1, "blake3": "no"}]},
         "$.bundles[0].files[0].blake3: 'no' is not a 64-character lowercase hex digest"),
        ({"files": [{"path": "m.bin", "size": -5, "blake3": HEX}]},
         "$.bundles[0].files[0].size: -5 is not a size from 0 to 1099511627776 bytes (1 TiB)"),
        ({"hash": None}, "$.bundles[0]: object missing required field `hash`"),
    ],
)  # fmt: skip
def test_a_hostile_shard_entry_is_one_line_naming_the_field(
    changes: dict[str, Any], problem: str
) -> None:
    with pytest.raises(CorruptDocument) as caught:
        decode_document(shard_with(**changes), Shard, WHERE, FIX)
    assert str(caught.value) == f"{WHERE}: {problem}{TAIL}"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\xff", " is not valid JSON (JSON is malformed: invalid character (byte 0))"),
        (b"[" * 200_000, ": $: expected `object`, got `array`"),
        (b'{"bundles": [], "metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
         " nests arrays or objects too deeply to be a registry document"),
        (b'{"models": {"../x": {}}}', f": $.models: a key {NAME_RULE}"),
    ],
)  # fmt: skip
def test_a_document_that_is_not_an_index(data: bytes, problem: str) -> None:
    with pytest.raises(CorruptDocument) as caught:
        decode_document(data, Index, WHERE, FIX)
    assert str(caught.value) == f"{WHERE}{problem}{TAIL}"


def record(**changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "model": "m",
        "alias": "prod",
        "version": "1.0",
        "previous": None,
        "actor": "alice",
        "reason": "",
        "time": "2026-01-01T00:00:00.000Z",
        "seq": 1,
        "prev_digest": "",
    }
    return json.dumps({**fields, **changes}).encode()


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"seq": 2}, "$: record 2 has prev_digest '': it is empty in record 1 and the digest of "
         "the record before in every later one"),
        ({"prev_digest": HEX}, f"$: record 1 has prev_digest '{HEX}': it is empty in record 1 "
         "and the digest of the record before in every later one"),
        ({"seq": 0}, "$.seq: 0 is not a sequence number from 1 to 2147483647"),
        ({"seq": 2, "prev_digest": "../x"}, "$.prev_digest: '../x' is neither empty nor a "
         "64-character lowercase hex digest"),
        ({"alias": "prod/../../x"}, f"$.alias: 'prod/../../x' {NAME_RULE}"),
        ({"previous": ".."}, f"$.previous: '..' {NAME_RULE}"),
        ({"actor": "mallory\x1b[2J"}, "$.actor: 'mallory\\x1b[2J' holds a control character"),
        ({"reason": "line one\nline two"}, "$.reason: 'line one\\nline two' holds a control "
         "character"),
        ({"actor": "a" * 257}, f"$.actor: '{'a' * 69}... (257 characters): expected `str` of "
         "length <= 256"),
    ],
)  # fmt: skip
def test_a_hostile_alias_record(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(CorruptDocument) as caught:
        decode_document(record(**changes), AliasRecord, "r.json", FIX)
    assert str(caught.value) == f"r.json: {problem}{TAIL}"


def test_a_pointer_digest_is_checked() -> None:
    pointer = {"model": "m", "alias": "prod", "version": "1.0", "seq": 1, "record_digest": "x"}
    with pytest.raises(CorruptDocument) as caught:
        decode_document(json.dumps(pointer).encode(), AliasPointer, "p.json", FIX)
    assert str(caught.value) == (
        f"p.json: $.record_digest: 'x' is not a 64-character lowercase hex digest{TAIL}"
    )


def test_what_the_build_side_writes_reads_back() -> None:
    descriptor = BundleDescriptor(
        "m", "1.0", "linux-x86_64", HEX, 3, Location("remote", blob_key(HEX)), created_at="now"
    )
    assert decode_document(encode(descriptor), BundleDescriptor, WHERE, FIX) == descriptor


def test_a_descriptor_without_url_reads_its_blob_by_digest() -> None:
    descriptor = decode_document(
        json.dumps(entry(location={"kind": "remote"})).encode(), BundleDescriptor, WHERE, FIX
    )
    assert descriptor.blob_key == f"blobs/{HEX}.xyb"
