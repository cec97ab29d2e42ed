"""Benchmark of ``registry-build discover``: a tree of 10,000 files, mostly not models.

Targets: the scan takes <= 2 s, and at most 1 MiB is read per model file. The tree holds
small text files and, among them, large model files made sparse (their headers are real, their
weights are holes): GGUF with a 32k vocabulary (~1B-parameter shapes, ~2.5 GB each), GGUF with a
128k vocabulary (header past the 1 MiB budget), safetensors, ONNX with a big initializer, and
Hugging Face style directories with sharded safetensors. Bytes read are measured twice: by the
readers' own counter and by the kernel (``rchar`` in ``/proc/self/io``).

Peers in the same run: ``find DIR -type f | wc -l`` (the bare walk) and the ``gguf`` package's
``GGUFReader`` (which memory-maps each whole file) over the same GGUF files.

    python -m bench.discover [--files 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench._util import best_of, row, scratch
from registry_build.discover import Scan, scan
from registry_build.formats import READ_BUDGET

GGUF_SMALL_VOCAB, GGUF_BIG_VOCAB, SAFETENSORS, ONNX, HF_DIRS = 40, 4, 20, 10, 5


def _gguf_header(path: Path, vocab: int, layers: int = 16, dim: int = 2048) -> int:
    """Write a real GGUF header for F16 tensors of a llama-like model; return the full size."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(f"bench-{vocab}")
    writer.add_file_type(1)
    writer.add_context_length(4096)
    writer.add_token_list([f"tok{i:06d}" for i in range(vocab)])
    writer.add_token_scores([0.0] * vocab)
    shapes = {"token_embd.weight": (vocab, dim), "output.weight": (vocab, dim)}
    for i in range(layers):
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            shapes[f"blk.{i}.{part}.weight"] = (dim, dim)
        for part in ("ffn_up", "ffn_gate"):
            shapes[f"blk.{i}.{part}.weight"] = (4 * dim, dim)
        shapes[f"blk.{i}.ffn_down.weight"] = (dim, 4 * dim)
    total = 0
    for name, shape in shapes.items():
        nbytes = 2 * shape[0] * shape[1]
        writer.add_tensor_info(name, shape, np.dtype(np.float16), nbytes)
        total += nbytes + (-nbytes % 32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    header = path.stat().st_size
    return header + (-header % 32) + total


def _safetensors(path: Path, tensors: int, rows: int) -> None:
    header, offset = {}, 0
    for i in range(tensors):
        size = 2 * rows * 4096
        header[f"layers.{i}.weight"] = {"dtype": "BF16", "shape": [rows, 4096],
                                         "data_offsets": [offset, offset + size]}  # fmt: skip
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    os.truncate(path, 8 + len(raw) + offset)


def _varint(value: int) -> bytes:
    out = b""
    while value > 0x7F:
        out += bytes([value & 0x7F | 0x80])
        value >>= 7
    return out + bytes([value])


def _tag(field: int, length: int) -> bytes:
    """A length-delimited field's key and length, without its payload."""
    return _varint(field << 3 | 2) + _varint(length)


def _pb(field: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(field << 3) + _varint(payload)
    return _tag(field, len(payload)) + payload


def _onnx(path: Path, rows: int) -> None:
    """An ONNX model with one rows x 4096 float initializer whose data is a hole in the file."""
    size = rows * 4096 * 4
    tensor = _pb(1, rows) + _pb(1, 4096) + _pb(2, 1) + _pb(8, b"W") + _tag(9, size)
    initializer = _tag(5, len(tensor) + size) + tensor
    graph = _tag(7, len(initializer) + size) + initializer
    head = _pb(1, 8) + _pb(2, b"bench") + graph
    with path.open("wb") as f:
        f.write(head)
        f.seek(len(head) + size)
        f.write(_pb(8, _pb(1, b"") + _pb(2, 17)))


def _models(root: Path, template_small: bytes, small_size: int, big: Path) -> list[Path]:
    made = []
    for i in range(GGUF_SMALL_VOCAB):
        path = root / "models" / f"llama-{i:02d}" / "1.0" / "model.gguf"
        path.parent.mkdir(parents=True)
        path.write_bytes(template_small)
        os.truncate(path, small_size)
        made.append(path)
    for i in range(GGUF_BIG_VOCAB):
        path = root / "big-vocab" / f"llama3-{i}.gguf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.hardlink_to(big)
        made.append(path)
    for i in range(SAFETENSORS):
        path = root / "st" / f"encoder-{i:02d}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        _safetensors(path, 200, 1024)
        made.append(path)
    for i in range(ONNX):
        path = root / "onnx" / f"detector-{i}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        _onnx(path, 16384)
        made.append(path)
    for i in range(HF_DIRS):
        d = root / "hf" / f"bert-{i}"
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"architectures": ["BertModel"],
                                                   "max_position_embeddings": 512}))  # fmt: skip
        (d / "tokenizer.json").write_text("{}")
        for shard in (1, 2):
            _safetensors(d / f"model-0000{shard}-of-00002.safetensors", 100, 2048)
        made += sorted(d.iterdir())
    return made


def make_tree(root: Path, files: int) -> tuple[list[Path], int]:
    """Build the tree; return a sample of its GGUF files and the count of files made."""
    template = root.parent / "template.gguf"
    small_size = _gguf_header(template, 32000)
    big = root.parent / "big.gguf"
    big_size = _gguf_header(big, 128256)
    os.truncate(big, big_size)
    made = _models(root, template.read_bytes(), small_size, big)
    others = files - len(made)
    for i in range(others):
        suffix = ("py", "txt", "json")[i % 3]
        path = root / "src" / f"pkg{i // 100:03d}" / f"file{i % 100:02d}.{suffix}"
        if i % 100 == 0:
            path.parent.mkdir(parents=True)
        path.write_text(f"# file {i}\n")
    # GGUFReader parses whole vocabularies into NumPy (minutes for all): compare on a sample.
    small = [p for p in made if p.name == "model.gguf"][:8]
    big_vocab = [p for p in made if p.parent.name == "big-vocab"][:2]
    return small + big_vocab, len(made) + others


def _rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def _gguf_reader(paths: list[Path]) -> None:
    import gguf

    for path in paths:
        gguf.GGUFReader(path)


def main() -> None:
    """Build the tree, time discover and its peers, print figures and ratios."""
    parser = argparse.ArgumentParser(prog="python -m bench.discover")
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    with scratch("discover") as tmp:
        root = tmp / "tree"
        ggufs, count = make_tree(root, args.files)
        apparent = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        before = _rchar()
        start = time.perf_counter()
        found = scan(root)
        first = time.perf_counter() - start
        rchar = _rchar() - before
        again = best_of(3, lambda: scan(root))
        find = f"find {root} -type f | wc -l"
        find_s = best_of(
            3, lambda: subprocess.run(find, shell=True, check=True, capture_output=True)
        )
        start = time.perf_counter()
        _gguf_reader(ggufs)
        peer_gguf = time.perf_counter() - start
        start = time.perf_counter()
        for path in ggufs:
            scan_one(path)
        ours_gguf = time.perf_counter() - start
        _report(Figures(found, count, apparent, first, again, rchar, find_s, ggufs, peer_gguf,
                        ours_gguf))  # fmt: skip


def scan_one(path: Path) -> None:
    """Read one GGUF header the way discover does."""
    from registry_build.formats import ReadMeter, read_file

    read_file(path, ReadMeter())


@dataclass
class Figures:
    """What one run measured."""

    found: Scan
    count: int
    apparent: int
    first: float
    again: float
    rchar: int
    find_s: float
    ggufs: list[Path]
    peer_gguf: float
    ours_gguf: float


def _report(f: Figures) -> None:
    s, first, again, find_s, rchar = f.found.stats, f.first, f.again, f.find_s, f.rchar
    count, apparent, ggufs = f.count, f.apparent, f.ggufs
    ours_gguf, peer_gguf = f.ours_gguf, f.peer_gguf
    print(f"discover over {count} files ({apparent / 2**40:.2f} TiB apparent, sparse), "
          f"{s.found} models, {len(s.notes)} notes, {len(s.errors)} errors")  # fmt: skip
    row("discover wall, first run (target <= 2 s)", f"{first:.3f} s")
    row("discover wall, best of 3 more", f"{again:.3f} s")
    row("peer: find DIR -type f | wc -l, best of 3", f"{find_s:.3f} s")
    row("ratio discover / find", f"{again / find_s:.1f}x")
    row("model files read", f"{s.files_read}")
    row("max bytes read from one file (target <= 1 MiB)",
        f"{s.max_bytes_per_file} ({s.max_bytes_per_file / READ_BUDGET:.2f} MiB)")  # fmt: skip
    row("mean bytes read per model file", f"{s.bytes_read / max(s.files_read, 1):.0f}")
    row("kernel rchar during the scan (all reads)", f"{rchar} bytes")
    mapped = sum(p.stat().st_size for p in ggufs)
    row(f"GGUF headers: ours over {len(ggufs)} files", f"{ours_gguf:.3f} s")
    row(
        "peer: gguf.GGUFReader over the same files",
        f"{peer_gguf:.3f} s, maps {mapped / 2**30:.0f} GiB",
    )
    row("ratio ours / GGUFReader (time)", f"{ours_gguf / peer_gguf:.3f}x")


if __name__ == "__main__":
    main()
