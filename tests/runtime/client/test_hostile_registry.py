"""A generated suite of hostile registries (issue 10): whatever a registry says, the read commands
end with one clear line, write nothing outside the cache, and stay within bounded memory.

Each example starts from a small sound registry in a directory (``index.json`` of format 2 with
its alias map, the model's shard, a descriptor, a blob, alias ``prod`` with its pointer, two
records and the alias view) and breaks it: fields of any document (the shard's too) replaced by
hostile values (paths that climb out, absolute paths into the sentinel
tree, control characters, huge or negative numbers, wrong types), whole documents replaced or
removed, stray files, and a blob made of hostile tar members (names with '..', absolute names,
links, devices, FIFOs, directories, long names, chained long names, huge declared sizes, an RLE
bomb, garbage). The blob is named by its real digest, so the download verifies and extraction
itself is put to the test. Layout of one example::

    work/registry/   the hostile registry        snapshotted: read commands change nothing here
    work/sentinel/   what hostile paths aim at   snapshotted
    work/cache/      --cache-dir: the only place anything may be written

``fetch --extract``, ``resolve``, ``aliases``, ``history`` and ``verify`` run in-process through
:func:`runtime.cli.main` (fast, tracemalloc bounds Python's memory); a few fixed registries also
go through the console script in a real process under an RLIMIT_AS.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import resource
import subprocess
import tarfile
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest
import zstandard
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support.registries import (
    Member,
    bundle_members,
    file_entries,
    long_name_entry,
    manifest_json,
    member,
    rle_frame,
    tar_bytes,
    xyb_bytes,
)

from runtime.cli import main
from runtime.registry.xyb import raw_frame, tar_header

SENTINEL = "{SENTINEL}"  # replaced by the absolute path of work/sentinel when written
RECORD_TIME = "2026-01-01T00:00:00.000Z"
BOMB_BYTES = 64 * 1024**2
CEILING = "16MiB"
PEAK_LIMIT = 64 * 1024**2  # bytes Python may allocate while one example's commands run
LINE_LIMIT = 2000  # characters of one output line: long hostile values must be cut
EXAMPLES = 120
SHARD = "{SHARD}"  # the shard's document until it is named by its digest
SHARD_REF = "{SHARD_REF}"  # replaced by [digest, size] of the shard as written

ESCAPES = [
    "../../sentinel/victim",
    "../../../sentinel/victimdir",
    f"{SENTINEL}/victim",
    "/etc/passwd",
    "blobs/../../sentinel/x",
    "..",
    ".",
    "",
    "a\nb",
    "\x1b[2J",
    "C:\\x",
    "https://evil.example/x.xyb",
    "A" * 64,
    "0" * 64,
    "prod",
    "1.0",
    "universal",
    "m",
    "index",
    "x" * 5000,
]
hostile_values = st.one_of(
    st.sampled_from(ESCAPES),
    st.text(max_size=30),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([None, True, [], {}, 1.5, -1, 2**40 + 1, 2**63, [[[["deep"]]]]]),
    st.lists(st.sampled_from(ESCAPES), max_size=3),
)
hostile_documents = st.sampled_from(
    [
        None,  # removed
        b"",
        b"\xff\xfe",
        b"[" * 100_000,
        b'{"format": 2, "models": {"m": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}",
        b'{"model": "m", "bundles": [' + b"[" * 50_000 + b"]" * 50_000 + b"]}",
        b'{"format": 1, "bundles": []}',
        b'"' + b"x" * 1_000_000 + b'"',
        b"{}",
        b"[]",
        b"null",
    ]
)
names = st.one_of(
    st.sampled_from(
        ["model.bin", "../../sentinel/evil", "/tmp/evil", "a/../../b", "dir/", "a\\b", "bad\x07",
         "manifest.json", "sub/model.bin", "d/" + "x" * 300, "l" * 150, "./x", "a//b"]
    ),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1,
            max_size=20),
)  # fmt: skip
KINDS = {
    "file": tarfile.REGTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "device": tarfile.CHRTYPE,
    "directory": tarfile.DIRTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def digest(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def encoded(document: Any) -> bytes:
    return json.dumps(document).encode()


# -- building one registry ----------------------------------------------------------------------


@st.composite
def hostile_members(draw: st.DrawFn) -> tuple[bytes, list[dict[str, Any]]]:
    """A blob of 1-4 drawn tar members after a manifest listing them, and a files list."""
    members: list[Member] = []
    for _ in range(draw(st.integers(1, 4))):
        name, kind = draw(names), draw(st.sampled_from(sorted(KINDS)))
        data = draw(st.binary(max_size=64)) if kind == "file" else None
        link = draw(st.sampled_from(["/etc/passwd", "../../sentinel", "model.bin"]))
        members.append(member(name, data, type=KINDS[kind], linkname=link, devmajor=1))
    files = {info.name: data or b"" for info, data in members}
    manifest = member("manifest.json", manifest_json("m", "1.0", "universal", files)[0])
    try:
        blob = xyb_bytes([manifest, *members])
    except (ValueError, UnicodeEncodeError):  # a name tarfile itself refuses to write
        blob = xyb_bytes([manifest])
    regular = {i.name: d for i, d in members if d is not None}
    listed = draw(st.sampled_from(["exact", "empty"]))
    entries = [] if listed == "empty" else [_entry(e) for e in file_entries(regular)]
    return blob, entries


def _entry(entry: Any) -> dict[str, Any]:
    return {"path": entry.path, "size": entry.size, "blake3": entry.blake3}


def _manifest_head(name: str) -> bytes:
    manifest = manifest_json("m", "1.0", "universal", {name: b""})[0]
    raw = tar_bytes([member("manifest.json", manifest)])
    return raw[: 512 + len(manifest) + -len(manifest) % 512]


def _bomb() -> bytes:
    """64 MiB of zeros as one file, in about 2 KB."""
    head = _manifest_head("big.bin") + tar_header("big.bin", BOMB_BYTES)
    return raw_frame(head) + rle_frame(BOMB_BYTES + 1024)


def _chain() -> bytes:
    """5,000 GNU long-name entries in a row before one file."""
    chain = b"".join(long_name_entry(b"n" * 120) for _ in range(5000))
    raw = _manifest_head("n" * 120) + chain + tar_header("n" * 100, 0) + bytes(1024)
    return zstandard.ZstdCompressor().compress(raw)


BOMB, CHAIN = _bomb(), _chain()


@st.composite
def blobs(draw: st.DrawFn) -> tuple[bytes, list[dict[str, Any]]]:
    """A sound blob, hostile members, a bomb, a huge declared size, a long-name chain or junk."""
    kind = draw(st.sampled_from(["sound", "members", "bomb", "huge", "chain", "garbage"]))
    if kind == "members":
        return draw(hostile_members())
    if kind == "bomb":
        big = {"path": "big.bin", "size": BOMB_BYTES, "blake3": "ab" * 32}
        return BOMB, draw(st.sampled_from([[], [big]]))
    if kind == "huge":
        size = draw(st.sampled_from([2**40, 2**62, 8**11 + 1]))
        return zstandard.ZstdCompressor().compress(_manifest_head("h") + tar_header("h", size)), []
    if kind == "chain":
        return CHAIN, []
    if kind == "garbage":
        return draw(st.binary(max_size=200)), []
    files = {"model.bin": b"weights"}
    entries = [_entry(e) for e in file_entries(files)]
    return xyb_bytes(bundle_members("m", "1.0", "universal", files)), entries


def sound_documents(blob: bytes, files: list[dict[str, Any]]) -> dict[str, Any]:
    """Store key -> JSON data of every document of a sound registry holding ``blob``."""
    blob_digest = digest(blob)
    descriptor = {
        "id": "m",
        "version": "1.0",
        "target": "universal",
        "hash": blob_digest,
        "size_bytes": len(blob),
        "location": {"kind": "remote", "url": f"blobs/{blob_digest}.xyb"},
        "sha256": hashlib.sha256(blob).hexdigest(),
        "files": files,
    }
    entry = {k: v for k, v in descriptor.items() if k != "files"}
    model = {"latest": "1.0", "shard": SHARD_REF, "aliases": {"prod": "1.0"}}
    first = _record(1, None, "")
    second = _record(2, "1.0", digest(encoded(first)))
    pointer = {"model": "m", "alias": "prod", "version": "1.0", "seq": 2,
               "record_digest": digest(encoded(second)), "time": RECORD_TIME}  # fmt: skip
    alias = {"alias": "prod", "version": "1.0", "seq": 2, "time": RECORD_TIME, "actor": "ci",
             "reason": "go", "history": [first, second]}  # fmt: skip
    return {
        "index.json": {"format": 2, "models": {"m": model}},
        SHARD: {"model": "m", "description": "d", "bundles": [entry]},
        "descriptors/m/1.0/universal.json": descriptor,
        "aliases/m/prod.json": pointer,
        "aliases/m/prod/1.json": first,
        "aliases/m/prod/2.json": second,
        "aliases/m/index.json": {"model": "m", "aliases": [alias]},
    }


def name_shard(written: dict[str, bytes | None]) -> None:
    """Store the shard under its digest, and write [digest, size] where index.json asks for it
    (unless a hostile value took that place)."""
    data = written.pop(SHARD)
    ref = json.dumps([digest(data or b""), len(data or b"")]).encode()
    written[f"shards/m/{digest(data or b'')}.json"] = data  # None: removed
    index = written.get("index.json")
    if index is not None:
        written["index.json"] = index.replace(encoded(SHARD_REF), ref)


def _record(seq: int, previous: str | None, prev_digest: str) -> dict[str, Any]:
    return {"model": "m", "alias": "prod", "version": "1.0", "previous": previous,
            "actor": "ci", "reason": "go", "time": RECORD_TIME, "seq": seq,
            "prev_digest": prev_digest}  # fmt: skip


def paths_in(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``document`` (itself included, as ())."""
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths_in(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths_in(value, (*prefix, index))
    return found


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    """``document`` with the value at ``path`` replaced (a copy along the path)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[head] = replaced(document[head], rest, value)
    return copy


@st.composite
def hostile_registries(draw: st.DrawFn) -> dict[str, bytes | None]:
    """Store key -> bytes (None: removed) of one hostile registry, SENTINEL still a placeholder."""
    blob, files = draw(blobs())
    documents = sound_documents(blob, files)
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(sorted(documents)))
        path = draw(st.sampled_from(paths_in(documents[key])))
        documents[key] = replaced(documents[key], path, draw(hostile_values))
    written: dict[str, bytes | None] = {k: encoded(d) for k, d in documents.items()}
    tampered = draw(st.booleans())  # the shard replaced after index.json named it, or before
    if tampered:
        name_shard(written)
    for _ in range(draw(st.integers(0, 2))):
        written[draw(st.sampled_from(sorted(written)))] = draw(hostile_documents)
    if not tampered:
        name_shard(written)
    strays = ["aliases/m/a b.json", "aliases/m/prod/9999999999.json", "aliases/m/prod/x.json",
              "aliases/m/prod/01.json", "aliases/m/Prod.json"]  # fmt: skip
    for key in draw(st.lists(st.sampled_from(strays), max_size=2, unique=True)):
        written[key] = draw(st.sampled_from([b"{}", written["aliases/m/prod/1.json"] or b""]))
    written[f"blobs/{digest(blob)}.xyb"] = blob
    return written


# -- running the commands -----------------------------------------------------------------------


@contextlib.contextmanager
def example_dirs() -> Iterator[tuple[Path, Path, Path]]:
    """(registry, sentinel, cache) in a fresh directory; the sentinel tree holds bait."""
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        sentinel = root / "sentinel"
        (sentinel / "victimdir").mkdir(parents=True)
        (sentinel / "victim.json").write_text("mine")
        (sentinel / "victimdir.xyb").write_bytes(b"mine too")
        (sentinel / "victimdir" / "file").write_bytes(b"and mine")
        yield root / "registry", sentinel, root / "cache"


def write_registry(root: Path, sentinel: Path, files: dict[str, bytes | None]) -> None:
    for key, data in files.items():
        if data is None:
            continue
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.replace(SENTINEL.encode(), str(sentinel).encode()))


def commands(registry: Path, cache: Path) -> list[list[str]]:
    client = ["--registry", str(registry), "--cache-dir", str(cache), "--target", "universal"]
    store = ["--registry", str(registry)]
    return [
        ["fetch", "m@1.0", "--extract", "--max-extract", CEILING, *client],
        ["fetch", "m@prod", "--extract", "--max-extract", CEILING, *client],
        ["resolve", "m@prod", *client],
        ["resolve", "m", *client],
        ["aliases", "m", *store],
        ["history", "m", "prod", *store],
        ["verify", "m@prod", *store],
    ]


def snapshot(root: Path, skip: Path) -> dict[str, object]:
    """Every path under ``root`` but ``skip``: a directory, a link's target or a file's bytes."""
    found: dict[str, object] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if Path(folder, d) != skip)
        for name in [*dirs, *files]:
            path = Path(folder, name)
            if path.is_symlink():
                found[str(path)] = ("link", os.readlink(path))
            else:
                found[str(path)] = "dir" if path.is_dir() else path.read_bytes()
    return found


def in_process(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def check_output(argv: list[str], code: int, out: str, err: str) -> None:
    """Exit 0, or 1 with one ``Error:`` line (after notices; verify lists problems below it)."""
    what = f"{argv[:2]} exit {code}:\n{err}"
    assert code in (0, 1), what
    assert not CONTROL.search(out + err), what
    assert all(len(line) <= LINE_LIMIT for line in (out + err).splitlines()), what
    lines = err.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("Error: ")]
    assert len(errors) == (code == 1), what
    head = errors[0] if errors else len(lines)
    assert all(line.startswith("registry-runtime: ") for line in lines[:head]), what
    assert all(line.startswith("  - ") for line in lines[head + 1 :]), what


def _outcome(code: int, err: str) -> str:
    """What happened, in a few words, for hypothesis' statistics (--hypothesis-show-statistics)."""
    if code == 0:
        return "ok"
    message = next(line for line in err.splitlines() if line.startswith("Error: "))
    for words, label in _OUTCOMES:
        if words in message:
            return label
    return "other refusal"


_OUTCOMES = [
    ("the registry is corrupt or hostile", "a document refused at decode"),
    ("extraction ceiling", "extraction ceiling"),
    ("removed from the cache", "bundle refused, removed from the cache"),
    ("index.json names", "shard refused: size or digest"),
    ("as the highest version", "index and shard disagree"),
    ("has BLAKE3", "download refused: digest"),
    ("has no ", "nothing by that name"),
    ("is damaged", "damaged alias"),
    ("problem", "verify found problems"),
]


def check_cache(cache: Path) -> None:
    """No link anywhere in the cache, and no extraction left half-done."""
    for folder, dirs, files in os.walk(cache):
        for name in [*dirs, *files]:
            assert not Path(folder, name).is_symlink(), Path(folder, name)
    trees = cache / "trees"
    done = trees.iterdir() if trees.is_dir() else iter(())
    assert [p.name for p in done if not re.fullmatch("[0-9a-f]{64}", p.name)] == []


@pytest.fixture(scope="module", autouse=True)
def _no_ambient_configuration() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name in ("BUNDLE_REGISTRY", "BUNDLE_MAX_EXTRACT", "XDG_CACHE_HOME"):
            patch.delenv(name, raising=False)
        yield


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(hostile_registries())
def test_hostile_registries_fail_cleanly_and_touch_nothing_outside_the_cache(
    files: dict[str, bytes | None],
) -> None:
    with example_dirs() as (registry, sentinel, cache):
        write_registry(registry, sentinel, files)
        before = snapshot(registry.parent, cache)
        tracemalloc.start()
        try:
            for argv in commands(registry, cache):
                code, out, err = in_process(argv)
                check_output(argv, code, out, err)
                event(f"{' '.join(argv[:2])}: {_outcome(code, err)}")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert snapshot(registry.parent, cache) == before
        assert peak < PEAK_LIMIT
        if cache.exists():
            check_cache(cache)


# -- a few through a real process ---------------------------------------------------------------


def _limited() -> None:
    limit = 1024**3  # address space: a bomb or a deep document would need far more
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


FIXED = {
    "the issue's attack": ("sound", {"hash": "../../sentinel/victim"}),
    "a bomb": ("bomb", {}),
    "a long-name chain": ("chain", {}),
    "a deep index": ("sound", {"index.json": b"[" * 200_000}),
}


def fixed_registry(kind: str, change: dict[str, Any]) -> dict[str, bytes | None]:
    if kind in ("bomb", "chain"):
        blob, files = (BOMB if kind == "bomb" else CHAIN), []
    else:
        blob = xyb_bytes(bundle_members("m", "1.0", "universal", {"model.bin": b"w"}))
        files = [_entry(e) for e in file_entries({"model.bin": b"w"})]
    documents = sound_documents(blob, files)
    for key in (SHARD, "descriptors/m/1.0/universal.json"):
        if "hash" in change:
            bundle = documents[key]["bundles"][0] if key == SHARD else documents[key]
            bundle["hash"] = change["hash"]
    written: dict[str, bytes | None] = {k: encoded(d) for k, d in documents.items()}
    name_shard(written)
    written.update({k: v for k, v in change.items() if k != "hash"})
    written[f"blobs/{digest(blob)}.xyb"] = blob
    return written


@pytest.mark.parametrize("case", sorted(FIXED))
def test_a_few_through_a_real_process(case: str) -> None:
    with example_dirs() as (registry, sentinel, cache):
        write_registry(registry, sentinel, fixed_registry(*FIXED[case]))
        before = snapshot(registry.parent, cache)
        for argv in commands(registry, cache):
            done = subprocess.run(
                ["registry-runtime", *argv],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                preexec_fn=_limited,
            )
            check_output(argv, done.returncode, done.stdout, done.stderr)
            if argv[:2] == ["fetch", "m@1.0"]:
                assert done.returncode == 1, done.stderr
        assert snapshot(registry.parent, cache) == before
