"""A bundle's files placed in a directory of the user's (:mod:`runtime.client.placement`), from
a real extracted tree under ``tmp_path``."""

from __future__ import annotations

import os
from pathlib import Path

import blake3
import pytest

from runtime.client.placement import LocalDirConflict, place
from runtime.registry.wire import FileEntry

FILES = {"model.bin": b"weights", "tokenizer/vocab.txt": b"a b c"}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "cache" / "trees" / "abc"
    for path, data in FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


def entries() -> tuple[FileEntry, ...]:
    return tuple(FileEntry(p, len(d), blake3.blake3(d).hexdigest()) for p, d in FILES.items())


def test_every_file_is_linked_and_left_alone_when_already_there(tree: Path, tmp_path: Path) -> None:
    placed = place(tree, entries(), tmp_path / "out")
    assert [(p.path, p.how) for p in placed.files] == [
        ("model.bin", "linked"), ("tokenizer/vocab.txt", "linked")
    ]  # fmt: skip
    assert os.path.samefile(tmp_path / "out/tokenizer/vocab.txt", tree / "tokenizer/vocab.txt")
    again = place(tree, entries(), tmp_path / "out")
    assert {p.how for p in again.files} == {"unchanged"}


def test_a_copy_with_the_bundle_bytes_is_kept(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.bin").write_bytes(b"weights")
    placed = place(tree, entries(), tmp_path / "out")
    assert placed.files[0].how == "unchanged"
    assert not os.path.samefile(tmp_path / "out/model.bin", tree / "model.bin")


def test_a_refusal_writes_nothing(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.bin").write_bytes(b"changed")  # same size as the bundle's, other bytes
    with pytest.raises(LocalDirConflict) as refused:
        place(tree, entries(), out)
    assert str(refused.value) == (
        f"--local-dir {out}: these files exist and differ from the bundle's: model.bin; pass "
        "--force to replace them, or choose another directory"
    )
    assert sorted(p.name for p in out.iterdir()) == ["model.bin"]  # no tokenizer/ either
    place(tree, entries(), out, force=True)
    assert (out / "model.bin").read_bytes() == b"weights"


def test_a_file_where_the_bundle_has_a_folder(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "tokenizer").write_bytes(b"in the way")
    with pytest.raises(LocalDirConflict, match=r"in the way of the bundle's files .*: "
                       r"tokenizer/vocab.txt; move them"):  # fmt: skip
        place(tree, entries(), tmp_path / "out", force=True)


def test_a_tree_without_a_file_list(tree: Path, tmp_path: Path) -> None:
    placed = place(tree, (), tmp_path / "out")
    assert sorted(p.path for p in placed.files) == sorted(FILES)
    assert (tmp_path / "out" / "model.bin").read_bytes() == b"weights"
