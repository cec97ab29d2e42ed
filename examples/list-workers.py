#!/usr/bin/env python3
"""Print this host's workers as the JSON that ``registry-runtime agent --workers-cmd`` reads.

    registry-runtime agent --server http://127.0.0.1:8081 --hive-id gpu-01 \\
        --token-file my-token \\
        --workers-cmd "examples/list-workers.py --model tiny-llama --port 9000"

One worker per GPU that ``nvidia-smi`` lists, with its load and memory (``--cpu``, or no
``nvidia-smi``: one CPU worker). Worker ``i`` serves ``--model`` at ``http://HOST:(PORT + i)``.
With ``--probe``, each worker's ``/health`` is asked: a worker that does not answer 2xx within a
second is ``degraded``, and the scheduler leaves it alone. The output, one object per worker::

    [{"worker_id": "gpu-01-gpu0", "state": "Idle", "health_status": "healthy",
      "model_id": "tiny-llama", "url": "http://10.0.0.5:9000", "backend": "cuda",
      "device_id": 0, "gpu_percent": 35.0, "vram_bytes": 1073741824}]

``worker_id``, ``state`` (Idle, Busy or Loading) and ``health_status`` (healthy or degraded) are
required; the rest is optional. A real script would ask each model server whether it is idle,
busy or loading; this one reports every worker Idle. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import urllib.request
from typing import Any

MIB = 1024 * 1024


def gpus() -> list[tuple[int, float, int]]:
    """(index, utilisation %, memory used in bytes) of each GPU ``nvidia-smi`` lists."""
    if shutil.which("nvidia-smi") is None:
        return []
    query = ["nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used",
             "--format=csv,noheader,nounits"]  # fmt: skip
    done = subprocess.run(query, capture_output=True, text=True, timeout=10, check=True)
    found = []
    for line in done.stdout.splitlines():
        index, load, used = (part.strip() for part in line.split(","))
        found.append((int(index), float(load), int(float(used) * MIB)))
    return found


def healthy(url: str) -> bool:
    """Whether ``url``/health answers 2xx within a second."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1.0) as answer:
            status: int = answer.status
            return 200 <= status < 300
    except OSError:
        return False


def workers(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The worker reports of this host."""
    found = [] if args.cpu else gpus()
    devices: list[tuple[int, float | None, int | None]] = [*found] or [(0, None, None)]
    reports = []
    for i, (index, load, used) in enumerate(devices):
        url = f"http://{args.host}:{args.port + i}"
        report: dict[str, Any] = {
            "worker_id": f"{args.prefix}-{'gpu' if found else 'cpu'}{index}",
            "state": "Idle",
            "health_status": "healthy" if not args.probe or healthy(url) else "degraded",
            "model_id": args.model,
            "url": url,
            "backend": "cuda" if found else "cpu",
            "device_id": index,
        }
        if found:
            report.update(gpu_percent=load, vram_bytes=used)
        reports.append(report)
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", required=True, help="the model the workers serve")
    parser.add_argument("--host", default=socket.gethostname(), help="where they listen")
    parser.add_argument("--port", type=int, default=9000, help="the first worker's port")
    parser.add_argument("--prefix", default=socket.gethostname(), help="worker id prefix")
    parser.add_argument("--cpu", action="store_true", help="one CPU worker, GPUs or not")
    parser.add_argument("--probe", action="store_true", help="ask each worker's /health")
    args = parser.parse_args(argv)
    json.dump(workers(args), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
