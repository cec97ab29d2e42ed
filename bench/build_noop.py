"""Benchmark 2 of the build: no-op rebuild of 1,000 small bundles.

Target: <= 0.5 s wall and zero content bytes read. The rebuild runs as a fresh process
(`registry-build build`), as CI would run it, with a Python audit hook counting every open of a
source file. Peer in the same run: re-hashing every source with `sha256sum` (what a build without
a stat cache must at least do to know nothing changed).

    python -m bench.build_noop [--bundles 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench._util import row, scratch

AUDIT = """
import sys
opened = 0
src = sys.argv.pop(1)
def hook(event, args):
    global opened
    if event == "open" and isinstance(args[0], str) and args[0].startswith(src):
        opened += 1
sys.addaudithook(hook)
from registry_build.cli import main
code = main(sys.argv[1:])
print(opened)
sys.exit(code)
"""


def make_config(root: Path, count: int) -> Path:
    src = root / "src"
    src.mkdir()
    bundles = {}
    for i in range(count):
        name = f"model-{i:04d}"
        (src / f"{name}.bin").write_bytes(os.urandom(2048))
        bundles[name] = {
            "model_id": name, "version": "1.0", "description": f"Model {i}",
            "targets": [{"platform": "universal", "model_file": "model.bin", "model_type": "onnx",
                         "source_path": f"src/{name}.bin"}],
        }  # fmt: skip
    config = root / "bundles.json"
    config.write_text(json.dumps({"bundles": bundles}))
    return config


def run_build(root: Path, config: Path, *extra: str) -> tuple[float, int]:
    env = {**os.environ, "XDG_CACHE_HOME": str(root / "cache")}
    argv = [sys.executable, "-c", AUDIT, str(root / "src"), "build", "--config", str(config),
            "--out", str(root / "site"), "--quiet", *extra]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - start, int(proc.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundles", type=int, default=1000)
    args = parser.parse_args()
    with scratch("noop") as root:
        config = make_config(root, args.bundles)
        cold, cold_opens = run_build(root, config, "--jobs", "2")
        noop, noop_opens = min(run_build(root, config) for _ in range(3))
        files = sorted(str(p) for p in (root / "src").iterdir())
        start = time.perf_counter()
        subprocess.run(["sha256sum", *files], capture_output=True, check=True)
        peer = time.perf_counter() - start
    print(f"No-op rebuild of {args.bundles} bundles (fresh process, best of 3)")
    row("cold build (--jobs 2)", f"{cold:.2f} s, {cold_opens} source opens")
    row("no-op rebuild, wall", f"{noop:.3f} s (target <= 0.5 s)")
    row("no-op rebuild, source files opened", f"{noop_opens} (target 0)")
    row("peer: sha256sum of every source", f"{peer:.3f} s")
    row("ratio no-op / peer", f"{noop / peer:.2f}x")


if __name__ == "__main__":
    main()
