"""Run every benchmark in turn (``make bench``), or the ones named: ``python -m bench index fetch``.

Each benchmark runs a peer tool in the same invocation and prints ratios; none gates anything.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ALL = (
    "build_cold", "build_noop", "index", "pages", "publish", "fetch", "promote", "runtime",
    "replicas", "discover", "scale", "trust",
)  # fmt: skip


def main(names: list[str]) -> int:
    """Run the named benchmarks (all by default); return the number that failed."""
    here = Path(__file__).parent
    failed = 0
    for name in names or ALL:
        if not (here / f"{name}.py").is_file():
            print(f"== {name}: no such benchmark (have: {', '.join(ALL)})")
            failed += 1
            continue
        print(f"== bench.{name}", flush=True)
        failed += (
            subprocess.run([sys.executable, "-m", f"bench.{name}"], check=False).returncode != 0
        )
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
