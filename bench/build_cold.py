"""Benchmark 1 of the build: cold pack of a generated 2 GiB multi-file model.

``pack`` (no digest cache) writes and fsyncs the bundle, so its peer must write too: the target is
>= 1.0x the throughput of ``tar -c | zstd -3 -T0 | tee FILE | b3sum`` over the same files, run in
the same invocation. The pipeline that writes nothing (``... | zstd -3 -T0 | b3sum``) is measured
beside it, to show what writing costs; pack's old target against it was >= 0.9x. ``pack`` still
does more than either pipeline (the manifest's SHA-256 over all content and a BLAKE3 per file,
then BLAKE3 and SHA-256 of the bundle, and an fsync; ``tee`` does not fsync). Rounds alternate
the peers and pack; the best of each is reported, with CPU seconds (user + system) as a
load-independent figure.

The data looks like float16 weights: random mantissa bytes, exponent bytes from a narrow
distribution, so zstd finds some but not much to squeeze (like real checkpoints).

    python -m bench.build_cold [--size-mib 2048] [--files 6] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path

from bench._util import row, scratch
from registry_build.bundle import SourceFile, pack

BLOCK = 64 * 1024 * 1024
# exponent-like bytes: sign bit random, a handful of exponents, mostly small magnitudes
_EXPONENTS = [0x20, 0x24, 0x28, 0x28, 0x2C, 0x2C, 0x2C, 0x30, 0x30, 0x30, 0x30, 0x34, 0x34, 0x38]
_TABLE = bytes(
    (_EXPONENTS[i % len(_EXPONENTS)] | (i & 0x03) | (0x80 if i & 0x80 else 0)) for i in range(256)
)


def weights(size: int) -> bytes:
    """``size`` bytes that compress like float16 weights (about 0.85x at zstd level 3)."""
    data = bytearray(os.urandom(size))
    data[1::2] = data[1::2].translate(_TABLE)
    return bytes(data)


def generate(root: Path, total: int, count: int) -> list[SourceFile]:
    """``count`` weight files totalling ``total`` bytes (uneven sizes) and a small config."""
    sizes = [total // count + (i - count // 2) * BLOCK // 4 for i in range(count)]
    sizes[-1] += total - sum(sizes)
    files = []
    for index, size in enumerate(sizes):
        path = root / "weights" / f"model-{index + 1:05d}-of-{count:05d}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            for start in range(0, size, BLOCK):
                handle.write(weights(min(BLOCK, size - start)))
        files.append(SourceFile(str(path.relative_to(root)), path=path))
    config = root / "config.json"
    config.write_text('{"architecture": "bench", "dtype": "float16"}\n')
    files.append(SourceFile("config.json", path=config))
    return files


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_peer(root: Path, files: list[SourceFile], out: Path | None) -> tuple[float, float, str]:
    """(wall s, CPU s, b3sum output) of tar | zstd -3 -T0 [| tee ``out``] | b3sum over ``files``."""
    names = " ".join(f"'{f.arcname}'" for f in files)
    tee = f" | tee '{out}'" if out is not None else ""
    command = f"set -o pipefail; tar -c -C '{root}' {names} | zstd -3 -T0 -q -c{tee} | b3sum"
    before, start = cpu_seconds(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    return wall, cpu_seconds(resource.RUSAGE_CHILDREN) - before, done.stdout.split()[0]


def run_pack(files: list[SourceFile], dest: Path) -> tuple[float, float, int]:
    """(wall s, CPU s, bundle size) of one cold ``pack``."""
    before, start = cpu_seconds(resource.RUSAGE_SELF), time.perf_counter()
    result = pack("bench-model", "1.0", "universal", files, dest)
    wall = time.perf_counter() - start
    return wall, cpu_seconds(resource.RUSAGE_SELF) - before, result.size


Timing = tuple[float, float]  # (wall s, CPU s)
TOOLS = {"tar": "tar", "zstd": "zstd", "tee": "coreutils", "b3sum": "b3sum"}  # tool: package
PEERS = ("tar | zstd -3 -T0 | tee FILE | b3sum", "tar | zstd -3 -T0 | b3sum (writes nothing)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for tool, package in TOOLS.items():
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian: apt-get install {package})")
    total = args.size_mib * 1024 * 1024
    with scratch("build-cold") as root:
        start = time.perf_counter()
        files = generate(root / "src", total, args.files)
        print(
            f"build_cold: {args.size_mib} MiB in {args.files + 1} files, "
            f"generated in {time.perf_counter() - start:.1f} s, {os.cpu_count()} CPUs"
        )
        writing, bare, ours, size = measure(root, files, args.rounds)
        report(total, size, writing, bare, ours)


def measure(root: Path, files: list[SourceFile], rounds: int) -> tuple[Timing, Timing, Timing, int]:
    """Best (wall, CPU) of the writing peer, the bare peer and pack, and the bundle's size."""
    writing: list[Timing] = []
    bare: list[Timing] = []
    ours: list[Timing] = []
    size = 0
    for round_ in range(rounds):
        peer_out = root / f"peer-{round_}.tar.zst"
        wall, cpu, _ = run_peer(root / "src", files, peer_out)
        writing.append((wall, cpu))
        peer_out.unlink()
        wall, cpu, _ = run_peer(root / "src", files, None)
        bare.append((wall, cpu))
        dest = root / f"out-{round_}.xyb"
        wall, cpu, size = run_pack(files, dest)
        ours.append((wall, cpu))
        dest.unlink()
    return min(writing), min(bare), min(ours), size


def report(total: int, size: int, writing: Timing, bare: Timing, ours: Timing) -> None:
    mb = total / 1e6
    for label, (wall, cpu) in zip(
        (*PEERS, "pack (cold, no digest cache)"), (writing, bare, ours), strict=True
    ):
        row(label, f"{mb / wall:7.1f} MB/s  ({wall:.2f} s, CPU {cpu:.1f} s)")
    row("bundle size / input", f"{size / total:.3f}")
    row("throughput pack / writing peer (target >= 1.0)", f"{writing[0] / ours[0]:.2f}x")
    row("throughput pack / bare peer (writes nothing)", f"{bare[0] / ours[0]:.2f}x")
    row("CPU writing peer / pack", f"{writing[1] / ours[1]:.2f}x")
    row("CPU bare peer / pack", f"{bare[1] / ours[1]:.2f}x")


if __name__ == "__main__":
    main()
