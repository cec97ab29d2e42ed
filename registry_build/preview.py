"""A built registry served on this machine, as a static host serves it (``registry-build serve``,
like ``mkdocs serve``), and rebuilt when its config or a source changes (``--watch``).

``python -m http.server`` sends ``index`` and ``v1/models`` as ``application/octet-stream``, so a
browser downloads them and a client that checks the type refuses them. Here every object gets the
Content-Type the S3 backend uploads it with (:func:`runtime.storage.store.content_headers`:
``index``, ``index.json``, ``v1/models``, shards and descriptors ``application/json``, blobs
``application/zstd``, pages ``text/html``) and ``Cache-Control: no-cache``, so that a page
reloaded after a rebuild is the new one. It listens on loopback unless told otherwise.

``--watch`` looks at the ``stat()`` of the config and of every file its targets pack (sources,
``model_metadata``) every ``interval`` seconds, and builds again into the served directory when
one changed, appeared or went (a build replaces files by rename, so a reader never sees half of
one). A failed build is reported and the last good registry stays served.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from registry_build.config import load_config
from runtime.errors import RegistryError
from runtime.storage.store import content_headers

Snapshot = dict[Path, tuple[int, int] | None]


class NotARegistryError(RegistryError, NotADirectoryError):
    """Raised when ``serve`` is pointed at a directory that is not a built registry."""


class PortUnavailable(RegistryError, OSError):
    """Raised when ``serve`` cannot listen where it was asked to."""


class _Handler(SimpleHTTPRequestHandler):
    """Files under the registry directory with the registry's content types, uncached."""

    root: Path

    def guess_type(self, path: str | Any) -> str:
        try:
            key = Path(path).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return "application/octet-stream"
        return content_headers(key)[0]

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None  # quiet: the start line says where it listens


class Preview:
    """An HTTP server over ``root`` (a built registry directory) on ``host``:``port`` (0: a
    free port); use it as a context manager, then :meth:`run`."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = Path(root).resolve()
        handler = type("Handler", (_Handler,), {"root": self.root})
        try:
            self.server = ThreadingHTTPServer(
                (host, port), partial(handler, directory=str(self.root))
            )
        except OSError as exc:  # in use, not allowed (a port under 1024), or no such address
            raise PortUnavailable(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; stop what uses it or "
                "choose another --port"
            ) from None
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        """Where it listens: ``http://127.0.0.1:8000``."""
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Preview:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.server_close()

    def run(self, rebuild: Rebuild | None = None) -> None:
        """Serve until interrupted; with ``rebuild``, build again whenever it sees a change."""
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the preview
                while True:
                    time.sleep(rebuild.interval if rebuild is not None else 3600)
                    if rebuild is not None and rebuild.changed():
                        rebuild.run()
        finally:
            self.server.shutdown()
            thread.join()


def check_registry(root: Path) -> Path:
    """``root``, when it is a built registry directory (it has ``index.json``)."""
    if not (Path(root) / "index.json").is_file():
        raise NotARegistryError(
            f"{root} holds no index.json: it is not a built registry; build one with "
            f"`registry-build build --out {root}`, or serve it with --watch, which builds first"
        )
    return Path(root)


class Rebuild:
    """``--watch``: what to build (``config`` into ``out``) and how often to look for changes."""

    def __init__(self, config: Path, out: Path, interval: float = 1.0) -> None:
        self.config, self.out, self.interval = Path(config), Path(out), interval
        self.seen: Snapshot = self.snapshot()

    def watched(self) -> list[Path]:
        """The config and every file its targets pack (the config alone while it is invalid)."""
        try:
            config = load_config(self.config)
        except RegistryError:
            return [self.config]
        files = [self.config]
        for bundle in config.bundles:
            if bundle.model_metadata is not None:
                files.append(bundle.model_metadata)
            for target in bundle.targets:
                files += [path for _, path in target.files]
                files += [p for p in (target.source_path, target.source_dir) if p is not None]
        return files

    def snapshot(self) -> Snapshot:
        """(size, mtime in ns) of each watched file; None for one that is not there."""
        found: Snapshot = {}
        for path in self.watched():
            try:
                st = path.stat()
                found[path] = (st.st_size, st.st_mtime_ns)
            except OSError:
                found[path] = None
        return found

    def changed(self) -> bool:
        """Whether a watched file changed since the last look (and remember this one)."""
        now = self.snapshot()
        changed, self.seen = now != self.seen, now
        return changed

    def run(self) -> bool:
        """Build once; report the outcome on stderr. False when the build failed."""
        from registry_build.build import BuildOptions, build

        try:
            report = build(self.config, str(self.out), BuildOptions())
        except RegistryError as exc:
            print(f"Error: {exc} (still serving the last build)", file=sys.stderr, flush=True)
            return False
        built = sum(r.status == "built" for r in report.results)
        print(f"rebuilt {self.out}: {built} bundles built", file=sys.stderr, flush=True)
        self.seen = self.snapshot()
        return True
