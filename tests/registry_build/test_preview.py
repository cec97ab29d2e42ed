"""``registry-build serve``: a built registry over HTTP with a static host's content types, and
``--watch`` rebuilding it; run as a user runs it, in a process of its own on a free port."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry_build.cli import main

REPO = Path(__file__).resolve().parents[2]
MAIN = "import sys; from registry_build.cli import main; sys.exit(main())"


class Served:
    """A running ``registry-build serve``: its URL and the lines of its stderr."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(cwd / "xdg")}
        self.process = subprocess.Popen(
            [sys.executable, "-c", MAIN, "serve", *argv], cwd=cwd, env=env, text=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        started = self.wait_for("serving ")
        self.url = started.split(" at ", 1)[1].split(" ", 1)[0]

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, start: str, timeout: float = 30) -> str:
        """The next stderr line that starts with ``start``."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            if line.startswith(start):
                return line

    def get(self, path: str) -> tuple[str, str, bytes]:
        """(Content-Type, Cache-Control, body) of ``path``."""
        with urllib.request.urlopen(f"{self.url}/{path}", timeout=10) as response:
            headers = response.headers
            return headers["Content-Type"], headers["Cache-Control"], response.read()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.reader.join(timeout=10)
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """bundles.json with one model and its source, next to each other."""
    (tmp_path / "m.gguf").write_bytes(b"GGUF" + bytes(64))
    target = {"platform": "universal", "model_file": "m.gguf", "model_type": "gguf",
              "source_path": "m.gguf"}  # fmt: skip
    bundles = {"m": {"model_id": "m", "version": "1.0", "targets": [target]}}
    (tmp_path / "bundles.json").write_text(json.dumps({"bundles": bundles}))
    return tmp_path


@pytest.fixture
def served(project: Path) -> Iterator[Served]:
    server = Served(["--port", "0", "--watch", "--interval", "0.1"], project)
    try:
        yield server
    finally:
        server.stop()


def test_serve_sends_the_registry_content_types_on_loopback(served: Served) -> None:
    assert served.url.startswith("http://127.0.0.1:")
    for path in ("index", "v1/models", "index.json"):
        kind, cache, body = served.get(path)
        assert (kind, cache) == ("application/json", "no-cache"), path
        json.loads(body)
    index = json.loads(served.get("index")[2])
    assert served.get("descriptors/m/1.0/universal.json")[0] == "application/json"
    assert served.get(f"blobs/{index[0]['hash']}.xyb")[0] == "application/zstd"
    assert served.get("")[0] == "text/html; charset=utf-8"  # / is index.html


def test_watch_rebuilds_when_a_source_changes(served: Served, project: Path) -> None:
    before = json.loads(served.get("index")[2])[0]["created_at"]
    time.sleep(1.1)  # created_at has whole seconds
    future = time.time() + 5
    os.utime(project / "m.gguf", (future, future))
    assert served.wait_for("rebuilt ") == f"rebuilt {Path('site')}: 1 bundles built"
    assert json.loads(served.get("index")[2])[0]["created_at"] == before  # same bytes: kept


def test_watch_rebuilds_when_bundles_json_changes(served: Served, project: Path) -> None:
    config = json.loads((project / "bundles.json").read_text())
    config["bundles"]["m2"] = {**config["bundles"]["m"], "version": "1.1"}
    (project / "bundles.json").write_text(json.dumps(config))
    served.wait_for("rebuilt ")
    assert json.loads(served.get("index.json")[2])["models"]["m"]["latest"] == "1.1"


def test_serve_refuses_a_directory_that_is_not_a_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--out", str(tmp_path / "nothing"), "--port", "0"]) == 1
    assert capsys.readouterr().err == (
        f"Error: {tmp_path / 'nothing'} holds no index.json: it is not a built registry; build "
        f"one with `registry-build build --out {tmp_path / 'nothing'}`, or serve it with --watch, "
        "which builds first\n"
    )


def test_serve_on_a_port_in_use_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.json").write_text('{"format": 2, "models": {}}')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--out", str(site), "--port", str(port)]) == 1
    assert capsys.readouterr().err == (
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use; stop what uses it "
        "or choose another --port\n"
    )
