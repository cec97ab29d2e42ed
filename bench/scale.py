"""Benchmark the sharded index (format 2) at scale, beside format 1, counted at the server.

The registry: 100,000 descriptors, 5,000 models x 5 versions x 4 targets, alias ``prod`` on each
model, generated directly (no bundles are built: a resolve never downloads a blob, and the
bundle a publish sends is one small file). Format 2 is made by this version's own functions
(shards, ``index.json``, ``index``, ``v1/models``); format 1 is what the version before wrote
(one ``index.json`` holding every entry, every page), and the format-1 client and publisher that
run against it are that version's own code, taken with ``git archive`` from :data:`FORMAT_1` and
run in child processes, as ours are. Requests and bytes are counted by the servers: nginx's
access log (``$request $status $bytes_sent``) and a counting layer in front of moto's S3 server
(the body bytes of each request and response). A directory has no server: there, what a publish
wrote is counted from the files that changed.

=======================================  ==========================================================
case                                     target (issue 12)
=======================================  ==========================================================
cold ``resolve model@alias`` (nginx)     <= 3 requests, <= 1 MB transferred
warm, nothing changed                    1 request, answered 304, <= 2 KB
warm, another model changed              index.json only; the cached shard is reused
publish one new bundle, ``index`` off    <= 12 requests, <= 1.5 MB of metadata uploaded (dir, S3)
same with the model list off too         reported (``--no-model-list``: v1/models not rewritten)
same with ``index`` on                   reported
``index.json`` bytes per model           <= 150
=======================================  ==========================================================

Wall time is given for each case (a client's: its resolve, inside its process; a publisher's: the
whole publish), and the memory of a resolving client: the Python allocations during the resolve
(tracemalloc's peak) and the process's peak RSS.

Format 1 on S3 needs every page and alias view in the bucket (its publisher lists them all and
reads each view): ~10,000 uploads to moto, about a minute; ``--quick`` leaves that case out. The
blobs and descriptors of the 100,000 bundles are in neither the directories nor the bucket: no
case here reads them, but format 1's publisher lists the whole bucket, which in a real one would
cost a LIST request more per 1,000 of those 200,000 objects.

    python -m bench.scale [--models 5000] [--quick]   (needs nginx: apt-get install -y nginx)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import blake3
import msgspec

from bench._util import AWS_ENV, MotoLog, child, free_port, row, scratch
from bench.fetch import nginx_binary, wait_for_port
from registry_build.index import Catalog, outside_documents
from registry_build.render import render_site
from registry_build.state import Published, Shards, build_state, shards_from
from runtime.registry.wire import (
    AliasIndex,
    AliasPointer,
    AliasRecord,
    AliasView,
    BundleDescriptor,
    FileEntry,
    Index,
    IndexV1,
    Location,
    alias_index_key,
    alias_pointer_key,
    alias_record_key,
    blob_key,
    descriptor_key,
    encode,
    encode_pretty,
)
from runtime.storage.memory import MemoryStore

FORMAT_1 = "99ea58a21db9e6b6ad3d535859eafe61d01b99fc"  # the last commit that wrote format 1
REPO = Path(__file__).resolve().parent.parent
TARGETS = ("linux-x86_64", "linux-arm64", "macos-arm64", "universal")
VERSIONS = 5
ALIAS, ALIASED = "prod", "1.3"
BUCKET = "bench-scale"
STAMP = "2026-11-22T08:00:00Z"
ASKED = "model-0042"  # the model the client resolves
OTHER = "model-0043"  # published meanwhile: "another model changed", and the publish on a dir
PUBLISHED = "model-0044"  # the other publishes: one new bundle of this model
MB = 1e6
CHANGED = "warm, another model changed"
NGINX_CONF = """daemon off;
worker_processes 1;
pid {root}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    log_format bench '$request $status $bytes_sent';
    access_log {root}/access.log bench;
    client_body_temp_path {root}/tmp-body;
    proxy_temp_path {root}/tmp-proxy;
    fastcgi_temp_path {root}/tmp-fastcgi;
    uwsgi_temp_path {root}/tmp-uwsgi;
    scgi_temp_path {root}/tmp-scgi;
    default_type application/json;
    server {{ listen 127.0.0.1:{port}; root {site}; }}
}}
"""
RESOLVE = """
import json, sys, time, tracemalloc
from pathlib import Path
from runtime.client.cache import Cache
from runtime.client.registry import Registry
from runtime.registry.wire import INDEX_FORMAT
location, cache, ref, trace = sys.argv[1:5]
if trace == "trace":
    tracemalloc.start()
start = time.perf_counter()
found = Registry(location, cache=Cache(Path(cache)), progress=False).resolve(ref, "universal")
seconds = time.perf_counter() - start
peak = tracemalloc.get_traced_memory()[1]
status = Path("/proc/self/status").read_text().splitlines()  # VmHWM: this process's peak RSS
rss = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
print(json.dumps({"version": found.version, "seconds": seconds, "peak": peak, "rss": rss,
                  "format": INDEX_FORMAT}))
"""
PUBLISH = """
import json, sys, time
from pathlib import Path
from registry_build.publish import publish_registry
from runtime.registry.wire import INDEX_FORMAT
from runtime.storage.location import open_store
src, dest, endpoint, index, models = sys.argv[1:6]
options = {}
if INDEX_FORMAT == 2:
    from registry_build.commit import Options
    options["options"] = Options(xybrid_index=index == "on", model_list=models == "on")
start = time.perf_counter()
store = open_store(dest, endpoint_url=endpoint or None)
report = publish_registry(Path(src), store, progress=False, **options)
print(json.dumps({"seconds": time.perf_counter() - start, "written": report.written,
                  "format": INDEX_FORMAT}))
"""


# -- the registry, both formats -------------------------------------------------------------


def descriptors(models: int) -> list[BundleDescriptor]:
    """``models`` x 5 versions x 4 targets, described as a build describes them."""
    return [
        descriptor(f"model-{m:04d}", f"1.{v}", target)
        for m in range(models)
        for v in range(VERSIONS)
        for target in TARGETS
    ]


def descriptor(model: str, version: str, target: str, digest: str = "") -> BundleDescriptor:
    """A descriptor with the metadata a real model carries (digests made up unless given)."""
    digest = digest or blake3.blake3(f"{model}@{version} {target}".encode()).hexdigest()
    return BundleDescriptor(
        id=model, version=version, target=target, hash=digest, size_bytes=123_456_789,
        location=Location("remote", blob_key(digest)), sha256=digest, model_type="gguf",
        files=(FileEntry("model.gguf", 123_456_000, digest),),
        description=f"{model}: a small language model", created_at=STAMP,
        metadata={"architecture": "llama", "quantization": "Q4_K_M", "license": "apache-2.0",
                  "parameter_count": 1_000_000_000, "context_length": 8192},
    )  # fmt: skip


def alias_documents(models: list[str]) -> dict[str, bytes]:
    """Alias ``prod`` -> 1.3 of each model: its first record, pointer and history view."""
    found = {}
    for model in models:
        record = AliasRecord(model, ALIAS, ALIASED, None, "ci", "bench", STAMP, 1)
        data = encode_pretty(record)
        pointer = AliasPointer(model, ALIAS, ALIASED, 1, blake3.blake3(data).hexdigest(), STAMP)
        view = AliasView(ALIAS, ALIASED, 1, STAMP, "ci", "bench", (record,))
        found[alias_record_key(model, ALIAS, 1)] = data
        found[alias_pointer_key(model, ALIAS)] = encode_pretty(pointer)
        found[alias_index_key(model)] = encode(AliasIndex(model, (view,)))
    return found


@dataclass(frozen=True)
class Registry:
    """The documents of both formats, key -> bytes."""

    format_2: dict[str, bytes]
    format_1: dict[str, bytes]

    @classmethod
    def of(cls, items: list[BundleDescriptor]) -> Registry:
        made = shards_from(items)
        models = sorted(s.model for s in made)
        aliases = {m: {ALIAS: ALIASED} for m in models}
        state = build_state(made, aliases, Shards(MemoryStore()), Published())
        catalog = Catalog.of(state.index, {s.model: s for s in made})
        outside = outside_documents(catalog)
        shared = alias_documents(models)
        digests = {k: blake3.blake3(v).hexdigest() for k, v in sorted(outside.items())}
        index = Index(models=state.index.models, documents=digests)
        second = {"index.json": encode(index), **state.unwritten, **outside, **shared}
        return cls(second, {**outside, **shared, **format_1(catalog, shared)})


def format_1(catalog: Catalog, aliases: dict[str, bytes]) -> dict[str, bytes]:
    """index.json of format 1 (every entry) and every page, as the version before wrote them."""
    views = {
        model: msgspec.json.decode(aliases[alias_index_key(model)], type=AliasIndex)
        for model in catalog.models
    }
    index = IndexV1(models=catalog.models, bundles=catalog.bundles)
    return {"index.json": encode(index), **render_site(catalog, views)}


def write(root: Path, documents: dict[str, bytes]) -> None:
    """Write ``documents`` under ``root``, created world-readable (nginx's workers read them)."""
    for key, data in documents.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def source(root: Path, model: str) -> Path:
    """A built registry of one bundle to publish: ``model`` 1.5, universal, 64 KB."""
    blob = os.urandom(64 << 10)
    digest = blake3.blake3(blob).hexdigest()
    found = msgspec.structs.replace(
        descriptor(model, "1.5", "universal", digest), size_bytes=len(blob), files=()
    )
    write(root, {blob_key(digest): blob, descriptor_key(model, "1.5", "universal"): encode(found)})
    return root


# -- the servers and the two codes --------------------------------------------------------------


@contextlib.contextmanager
def nginx(binary: str, sites: Path, root: Path) -> Iterator[tuple[str, Path]]:
    """nginx serving ``sites`` on a loopback port; yields its URL and its access log."""
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, port=port, site=sites))
    log = root / "stderr.log"
    argv = [binary, "-c", str(conf), "-p", str(root), "-e", str(root / "error.log")]
    with child(argv, log, lambda proc: wait_for_port(port, proc, log)):
        yield f"http://127.0.0.1:{port}", root / "access.log"


class AccessLog:
    """The lines nginx logged since the last :meth:`take`: (method, path, status, bytes sent)."""

    def __init__(self, path: Path) -> None:
        self.path, self.seen = path, 0

    def take(self) -> list[tuple[str, str, int, int]]:
        time.sleep(0.2)  # nginx writes a line once the response is sent
        lines = self.path.read_text().splitlines()
        new, self.seen = lines[self.seen :], len(lines)
        found = []
        for line in new:
            method, path, _, status, sent = line.split(" ")
            found.append((method, path, int(status), int(sent)))
        return found


class Counted:
    """WSGI layer in front of moto: (method, key, status, bytes up, bytes down) per request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str, int, int, int]] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        status: list[str] = []

        def start(line: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(line)
            return start_response(line, headers, exc_info)

        body = b"".join(self.app(environ, start))
        up = environ.get("HTTP_X_AMZ_DECODED_CONTENT_LENGTH") or environ.get("CONTENT_LENGTH")
        key = unquote(environ.get("PATH_INFO", "")).removeprefix(f"/{BUCKET}/")
        if "list-type" in environ.get("QUERY_STRING", ""):
            key = "(list)"
        with self.lock:
            self.seen.append(
                (environ["REQUEST_METHOD"], key, int(status[0][:3]), int(up or 0), len(body))
            )
        return [body]

    def take(self) -> list[tuple[str, str, int, int, int]]:
        with self.lock:
            seen, self.seen = self.seen, []
        return seen


@contextlib.contextmanager
def moto() -> Iterator[tuple[str, Counted]]:
    """moto's S3 server on a loopback port, requests one at a time, counted."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    os.environ.update(AWS_ENV)
    counted = Counted(MotoLog(DomainDispatcherApplication(create_backend_app)))
    server = make_server("127.0.0.1", 0, counted, threaded=True, request_handler=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", counted
    finally:
        server.shutdown()
        thread.join()


def format_1_code(work: Path) -> Path | None:
    """The runtime and registry_build packages of :data:`FORMAT_1`, or None without git."""
    done = subprocess.run(
        ["git", "-C", str(REPO), "archive", FORMAT_1, "runtime", "registry_build"],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        return None
    target = work / "format-1-code"
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archive.extractall(target, filter="data")
    return target


@dataclass
class Codes:
    """How to run each format's code in a child process (format 1: its own packages first)."""

    work: Path
    format_1: Path | None
    env: dict[str, str] = field(default_factory=dict)

    def run(self, fmt: int, script: str, *argv: str) -> dict[str, Any]:
        env = {**os.environ, **self.env, "XDG_CACHE_HOME": str(self.work / "xdg")}
        if fmt == 1 and self.format_1 is not None:
            env["PYTHONPATH"] = str(self.format_1)
        done = subprocess.run(
            [sys.executable, "-c", script, *argv],
            capture_output=True, text=True, cwd=self.work, env=env, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"format {fmt} child failed:\n{done.stderr}")
        answer: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        assert answer["format"] == fmt, answer  # the code of the format asked for ran
        return answer


# -- the cases ------------------------------------------------------------------------------


def resolves(codes: Codes, base: str, log: AccessLog, sites: Path) -> None:
    """Cold, warm, and warm after another model changed, for each format, against nginx."""
    print("Resolve model@alias against nginx (counted in its access log)")
    for fmt in (2, 1):
        if fmt == 1 and codes.format_1 is None:
            row("format 1", "skipped: git archive of the format-1 code failed")
            continue
        cache = str(codes.work / f"cache-{fmt}")
        url, ref = f"{base}/f{fmt}", f"{ASKED}@{ALIAS}"
        for case in ("cold", "warm, nothing changed", CHANGED):
            if case == CHANGED:
                publish_other(codes, fmt, sites / f"f{fmt}")
                log.take()
            answer = codes.run(fmt, RESOLVE, url, cache, ref, "-")
            _resolve_row(fmt, case, log.take(), answer)
        traced = codes.run(fmt, RESOLVE, url, f"{cache}-traced", ref, "trace")  # cold again
        log.take()
        row(
            f"format {fmt}, client memory (a cold resolve)",
            f"peak {traced['peak'] / MB:.1f} MB of Python allocations, "
            f"peak RSS {traced['rss'] / MB:.0f} MB",
        )


def _resolve_row(
    fmt: int, case: str, requests: list[tuple[str, str, int, int]], answer: dict[str, Any]
) -> None:
    sent = sum(r[3] for r in requests)
    shown = ", ".join(f"{p.split('/', 2)[2]} {s}" for _, p, s, _ in requests)
    amount = f"{sent:,} bytes" if sent < 100_000 else f"{sent / MB:.2f} MB"
    row(
        f"format {fmt}, {case}",
        f"{len(requests)} requests, {amount}, {answer['seconds'] * 1e3:.0f} ms ({_short(shown)})",
    )


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def publish_other(codes: Codes, fmt: int, site: Path) -> None:
    """Publish a new version of another model into the served registry (format 2: ``index``
    off, the case of the publish table; format 1: its publisher, the dir case of format 1)."""
    src = source(codes.work / f"src-other-{fmt}", OTHER)
    before = snapshot(site)
    answer = codes.run(fmt, PUBLISH, str(src), str(site), "", "off", "on")
    _publish_row(f"format {fmt}, dir" + (", index off" if fmt == 2 else ""), before, site, answer)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: (size, mtime in ns)."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            st = os.stat(os.path.join(folder, name))
            found[os.path.relpath(os.path.join(folder, name), root)] = (st.st_size, st.st_mtime_ns)
    return found


def _publish_row(label: str, before: dict[str, Any], site: Path, answer: dict[str, Any]) -> None:
    after = snapshot(site)
    changed = {k: v for k, v in after.items() if before.get(k) != v and not k.startswith("blobs/")}
    row(
        f"publish one bundle: {label}",
        f"{len(changed)} files written, {sum(v[0] for v in changed.values()) / MB:.2f} MB of "
        f"metadata, {answer['seconds']:.2f} s",
    )


def dir_publishes(codes: Codes, registry: Registry) -> None:
    """Publish one bundle into a directory: ``index`` on, and the model list off."""
    for label, index, models in (
        ("index on", "on", "on"),
        ("index off, model list off", "off", "off"),
    ):
        site = codes.work / f"pub-{index}-{models}"
        write(site, registry.format_2)
        before = snapshot(site)
        src = source(codes.work / f"src-{index}-{models}", PUBLISHED)
        answer = codes.run(2, PUBLISH, str(src), str(site), "", index, models)
        _publish_row(f"format 2, dir, {label}", before, site, answer)


# (label, format, index, model list): the publish table of issue 12 and its follow-up.
S3_CASES = (
    ("index off", 2, "off", "on"),
    ("index off, model list off", 2, "off", "off"),
    ("index on", 2, "on", "on"),
    ("", 1, "-", "-"),
)


def s3_publishes(codes: Codes, registry: Registry, quick: bool) -> None:
    """Publish one bundle into a bucket prefix holding each format's registry."""
    import boto3

    print("Publish one bundle to S3 (moto, counted in front of it)")
    with moto() as (endpoint, counted):
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        codes.env = {"AWS_ENDPOINT_URL": endpoint}
        for label, fmt, index, models in S3_CASES:
            if fmt == 1 and (quick or codes.format_1 is None):
                row("format 1, s3", "skipped (--quick)" if quick else "skipped: no format-1 code")
                continue
            prefix = f"f{fmt}-{index}-{models}"
            upload(client, prefix, _needed(registry, fmt))
            counted.take()
            src = source(codes.work / f"src-{prefix}", PUBLISHED)
            dest = f"s3://{BUCKET}/{prefix}"
            answer = codes.run(fmt, PUBLISH, str(src), dest, endpoint, index, models)
            _s3_row(
                f"format {fmt}, s3{', ' + label if label else ''}", prefix, counted.take(), answer
            )


def _needed(registry: Registry, fmt: int) -> dict[str, bytes]:
    """What a publisher of ``fmt`` reads of the bucket: format 2 lists nothing, so its index,
    outside documents and the published model's shard and alias view are enough; format 1 lists
    and compares every page and reads every alias view."""
    if fmt == 1:
        return {k: v for k, v in registry.format_1.items() if not k.startswith("aliases/")
                or k.endswith("/index.json")}  # fmt: skip
    docs = registry.format_2
    keep = ("index.json", "index", "v1/models", alias_index_key(PUBLISHED), f"shards/{PUBLISHED}/")
    return {k: v for k, v in docs.items() if k in keep or k.startswith(keep[-1])}


def upload(client: Any, prefix: str, documents: dict[str, bytes]) -> None:
    """Put ``documents`` under ``prefix`` of the bucket (16 at a time)."""

    def put(item: tuple[str, bytes]) -> None:
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/{item[0]}", Body=item[1])

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, documents.items()))


def _s3_row(
    label: str, prefix: str, seen: list[tuple[str, str, int, int, int]], answer: dict[str, Any]
) -> None:
    keys = [(m, k.removeprefix(f"{prefix}/"), s, up) for m, k, s, up, _ in seen]
    metadata = sum(up for m, k, _, up in keys if m == "PUT" and not k.startswith("blobs/"))
    row(
        f"publish one bundle: {label}",
        f"{len(seen)} requests, {metadata / MB:.2f} MB of metadata uploaded, "
        f"{answer['seconds']:.2f} s",
    )
    if len(seen) <= 16:
        for method, key, status, up in keys:
            print(f"      {method:6} {key} {status}" + (f" ({up:,} bytes)" if up else ""))


# -- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="leave out format 1 on S3")
    args = parser.parse_args()
    binary = nginx_binary()
    if binary is None:
        print("skipped: nginx not found (Debian: apt-get install -y nginx)")
        return 0
    with scratch("scale") as work:
        work.chmod(0o755)  # nginx workers run as an unprivileged user when started by root
        run(binary, work, args)
    return 0


def run(binary: str, work: Path, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    items = descriptors(args.models)
    registry = Registry.of(items)
    made = time.perf_counter() - started
    count = len(items)
    print(f"Registry: {count:,} descriptors, {args.models:,} models ({made:.1f} s to make)")
    for fmt, docs in ((2, registry.format_2), (1, registry.format_1)):
        per = len(docs["index.json"]) / args.models
        row(
            f"format {fmt}: index.json", f"{len(docs['index.json']) / MB:.2f} MB, {per:.0f} B/model"
        )
    codes = Codes(work, format_1_code(work))
    sites = work / "sites"
    for fmt, docs in ((2, registry.format_2), (1, registry.format_1)):
        write(sites / f"f{fmt}", docs)
    dir_publishes(codes, registry)
    with nginx(binary, sites, work) as (base, log):
        resolves(codes, base, AccessLog(log), sites)
    s3_publishes(codes, registry, args.quick)


if __name__ == "__main__":
    sys.exit(main())
