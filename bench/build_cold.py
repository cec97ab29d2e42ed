"""Benchmark 1 of the build: cold pack of a generated 2 GiB multi-file model.

Target: ``pack`` (no digest cache) at >= 0.9x the throughput of the native pipeline
``tar -c | zstd -3 -T0 | b3sum`` over the same files, run in the same invocation. ``pack`` does
more than the pipeline (the manifest's SHA-256 over all content and a BLAKE3 per file, then BLAKE3
and SHA-256 of the bundle), so the ratio shows what that costs. Rounds alternate peer and pack;
the best of each is reported, with CPU seconds (user + system) as a load-independent figure.

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


def run_peer(root: Path, files: list[SourceFile]) -> tuple[float, float, str]:
    """(wall s, CPU s, b3sum output) of tar | zstd -3 -T0 | b3sum over ``files``."""
    names = " ".join(f"'{f.arcname}'" for f in files)
    command = f"set -o pipefail; tar -c -C '{root}' {names} | zstd -3 -T0 -q -c | b3sum"
    before, start = cpu_seconds(resource.RUSAGE_CHILDREN), time.perf_counter()
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    return wall, cpu_seconds(resource.RUSAGE_CHILDREN) - before, out.stdout.split()[0]


def run_pack(files: list[SourceFile], dest: Path) -> tuple[float, float, int]:
    """(wall s, CPU s, bundle size) of one cold ``pack``."""
    before, start = cpu_seconds(resource.RUSAGE_SELF), time.perf_counter()
    result = pack("bench-model", "1.0", "universal", files, dest)
    wall = time.perf_counter() - start
    return wall, cpu_seconds(resource.RUSAGE_SELF) - before, result.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for tool in ("tar", "zstd", "b3sum"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian: apt-get install {tool})")
    total = args.size_mib * 1024 * 1024
    with scratch("build-cold") as root:
        start = time.perf_counter()
        files = generate(root / "src", total, args.files)
        print(
            f"build_cold: {args.size_mib} MiB in {args.files + 1} files, "
            f"generated in {time.perf_counter() - start:.1f} s, {os.cpu_count()} CPUs"
        )
        peer: list[tuple[float, float]] = []
        ours: list[tuple[float, float]] = []
        size = 0
        for round_ in range(args.rounds):
            wall, cpu, _ = run_peer(root / "src", files)
            peer.append((wall, cpu))
            dest = root / f"out-{round_}.xyb"
            wall, cpu, size = run_pack(files, dest)
            ours.append((wall, cpu))
            dest.unlink()
        report(total, size, min(peer), min(ours))


def report(total: int, size: int, peer: tuple[float, float], ours: tuple[float, float]) -> None:
    mb = total / 1e6
    row(
        "tar | zstd -3 -T0 | b3sum",
        f"{mb / peer[0]:7.1f} MB/s  ({peer[0]:.2f} s, CPU {peer[1]:.1f} s)",
    )
    row(
        "pack (cold, no digest cache)",
        f"{mb / ours[0]:7.1f} MB/s  ({ours[0]:.2f} s, CPU {ours[1]:.1f} s)",
    )
    row("bundle size / input", f"{size / total:.3f}")
    row("throughput ratio pack / pipeline (target >= 0.9)", f"{peer[0] / ours[0]:.2f}x")
    row("CPU ratio pipeline / pack", f"{peer[1] / ours[1]:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
