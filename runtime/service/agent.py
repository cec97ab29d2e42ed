"""The hive agent: sends this host's heartbeat to the runtime service on an interval.

The workers come from a provider: a JSON file (``--workers-file``), a command printing JSON
(``--workers-cmd``), or none. Either gives a list of worker reports (or ``{"workers": [...]}``),
each with ``worker_id``, ``state`` (``Idle``, ``Busy``, ``Loading``) and ``health_status``
(``healthy``, ``degraded``), and optionally ``model_id``, ``url``, ``backend`` (``cpu``,
``cuda``, ``metal``), ``device_id``, ``vram_bytes``, ``ram_bytes``, ``cpu_percent`` and
``gpu_percent`` (:class:`~runtime.service.types.WorkerReport`; ``examples/list-workers.py`` prints
one). ``last_heartbeat`` may be left out and is then the time of reading. A provider that fails or
prints garbage is logged, and the heartbeat goes out with the last good worker list; a worker the
server would refuse is dropped with a log line.

The heartbeats go through the service's Python client (:mod:`runtime.service.client`, one
kept-alive connection), which makes one attempt each: the agent keeps its own rhythm. It logs
when it starts, when its first heartbeat lands, and when one lands again after failures.

Heartbeats go out every ``interval`` seconds with +-10 % jitter, so hives restarted together do
not stay in step. While the server cannot be reached, or answers 5xx, 408 or 429, the agent backs
off: 1 s, 2 s, 4 s, ... up to ``max_backoff``, and returns to the interval once a heartbeat lands.
Any other refusal (401 unknown token, 403 token of another hive, 400/422 bad hive id or body, ...)
will not go away by retrying: the agent stops with :class:`HeartbeatRefused`, naming the server's
reason, and ``registry-runtime agent`` exits 1.
"""

from __future__ import annotations

import logging
import random
import shlex
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import urllib3

from runtime.errors import RegistryError
from runtime.names import is_name, name_problem
from runtime.service.client import ServiceClient, ServiceError
from runtime.service.types import HiveHeartbeat, WorkerReport
from runtime.storage.location import redact

log = logging.getLogger(__name__)

Provider = Callable[[], list[dict[str, Any]]]

# Answers that say "later", not "no": worth retrying with back-off (as are 5xx and no answer).
RETRY_STATUSES = frozenset({408, 429})
_FIX = {
    401: "give --token-file a token listed in the server's token file",
    403: "use a token bound to this hive (or to no hive), or the --hive-id the token is bound to",
}


class ProviderError(RegistryError, ValueError):
    """Raised when a workers file or command cannot be read or does not give a worker list."""


class AgentConfigError(RegistryError, ValueError):
    """Raised when the agent's settings are unusable (bad server URL or hive id, unreadable token
    file)."""


class HeartbeatRefused(RegistryError):
    """Raised when the server refuses a heartbeat for a reason retrying cannot fix: any 3xx or
    4xx answer but 408 and 429 (a wrong token, a bad hive id or body, a wrong URL)."""


def file_provider(path: Path) -> Provider:
    """Workers read from a JSON file at every heartbeat (so it can change underneath)."""

    def read() -> list[dict[str, Any]]:
        try:
            return _worker_list(path.read_bytes(), f"workers file {path}")
        except OSError as exc:
            raise ProviderError(f"workers file {path}: cannot read it ({exc.strerror})") from exc

    return read


def command_provider(command: str, timeout: float = 10.0) -> Provider:
    """Workers printed as JSON by ``command`` (run without a shell) at every heartbeat."""
    argv = shlex.split(command)

    def run() -> list[dict[str, Any]]:
        try:
            done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProviderError(f"workers command {command!r} failed to run: {exc}") from exc
        if done.returncode != 0:
            raise ProviderError(
                f"workers command {command!r} exited with {done.returncode}: "
                f"{done.stderr.decode(errors='replace').strip()[:200]}"
            )
        return _worker_list(done.stdout, f"workers command {command!r}")

    return run


def no_workers() -> list[dict[str, Any]]:
    """The provider of a hive that reports no workers."""
    return []


def _worker_list(data: bytes, source: str) -> list[dict[str, Any]]:
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise ProviderError(f"{source}: not JSON ({exc})") from exc
    if isinstance(value, dict) and isinstance(value.get("workers"), list):
        value = value["workers"]
    if not isinstance(value, list) or not all(isinstance(w, dict) for w in value):
        raise ProviderError(f"{source}: expected a JSON list of worker objects")
    return value


def read_token(path: Path) -> str:
    """The first token in a token file (``TOKEN [HIVE_ID]`` lines, ``#`` comments)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise AgentConfigError(f"token file {path}: cannot read it ({exc.strerror})") from exc
    for line in lines:
        words = line.split("#", 1)[0].split()
        if words:
            return words[0]
    raise AgentConfigError(f"token file {path}: no token in it; put the token on the first line")


@dataclass
class AgentConfig:
    """Where and how often the agent reports."""

    server: str
    hive_id: str
    token: str | None = None
    interval: float = 15.0
    max_backoff: float = 60.0
    host: str = field(default_factory=socket.gethostname)
    timeout: float = 5.0


class Agent:
    """Sends heartbeats for one hive; ``rng``, ``now`` and ``http`` are injected for tests."""

    def __init__(
        self,
        config: AgentConfig,
        provider: Provider = no_workers,
        *,
        http: urllib3.PoolManager | None = None,
        rng: random.Random | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not config.server.startswith(("http://", "https://")):
            raise AgentConfigError(
                f"server {config.server!r} is not an http(s) URL; pass --server http://HOST:PORT"
            )
        if not is_name(config.hive_id):
            raise AgentConfigError(f"{name_problem('hive id', config.hive_id)}; fix --hive-id")
        self.config = config
        self.provider = provider
        self.client = ServiceClient(
            config.server, config.token, timeout=config.timeout, retries=0, http=http
        )
        self.rng = rng or random.Random()
        self.now = now
        self.failures = 0
        self.sent = 0
        self.last_good: list[Any] = []  # the provider's last valid worker list
        self._failing = False  # since the last heartbeat that landed

    def heartbeat(self) -> HiveHeartbeat:
        """This hive's heartbeat now. Provider trouble is logged and the last good worker list
        is sent again: one bad run of a workers command must not take the hive's workers out
        of scheduling."""
        now = self.now()
        try:
            raw = self.provider()
            workers = [_report(w, now) for w in raw]
            self.last_good = list(raw)
        except (ProviderError, msgspec.ValidationError) as exc:
            log.warning(
                "hive %s: bad worker list, sending the last good one (%d workers): %s",
                self.config.hive_id, len(self.last_good), exc,
            )  # fmt: skip
            workers = [_report(w, now) for w in self.last_good]
        return HiveHeartbeat(
            hive_id=self.config.hive_id, timestamp=now, workers=workers, host=self.config.host
        )

    def beat_once(self) -> bool:
        """Send one heartbeat: True when the server accepted it, False when it is worth trying
        again (no answer, 5xx, 408, 429); raises :class:`HeartbeatRefused` otherwise."""
        beat = self.heartbeat()
        try:
            self.client.heartbeat(beat)
        except ServiceError as exc:
            if exc.status is not None and exc.status < 500 and exc.status not in RETRY_STATUSES:
                raise self._refused(exc) from None
            self._note_failure(exc)
            return False
        self._note_success(len(beat.workers))
        self.sent += 1
        return True

    def _note_failure(self, exc: ServiceError) -> None:
        hive, server = self.config.hive_id, redact(self.config.server)
        if exc.status is None:
            log.warning("hive %s: server %s unreachable: %s", hive, server, exc.message)
        else:
            log.warning("hive %s: server answered %d", hive, exc.status)
        self._failing = True

    def _note_success(self, workers: int) -> None:
        hive = self.config.hive_id
        if self.sent == 0:
            log.info("hive %s: first heartbeat accepted by %s (%d workers)", hive,
                     redact(self.config.server), workers)  # fmt: skip
        elif self._failing:
            log.info("hive %s: heartbeats accepted again after %d failed attempts", hive,
                     self.failures)  # fmt: skip
        self._failing = False

    def _refused(self, exc: ServiceError) -> HeartbeatRefused:
        status = exc.status or 0
        reason = exc.message
        if exc.location:
            reason += " (point --server at that server)"
        fix = _FIX.get(status, "fix the agent's settings and start it again")
        return HeartbeatRefused(
            f"server {redact(self.config.server)} refused the heartbeat of hive "
            f"{self.config.hive_id!r} ({status}): {reason}; {fix}"
        )

    def next_delay(self, delivered: bool) -> float:
        """Seconds to wait: the interval +-10 % after a delivery, else a growing back-off."""
        if delivered:
            self.failures = 0
            return self.config.interval * self.rng.uniform(0.9, 1.1)
        self.failures += 1
        backoff = min(self.config.max_backoff, 2.0 ** (self.failures - 1))
        return backoff * self.rng.uniform(0.5, 1.0)

    def run(self, stop: threading.Event | None = None) -> None:
        """Send heartbeats until ``stop`` is set (forever without one)."""
        stop = stop or threading.Event()
        log.info("hive %s: sending heartbeats to %s every %g s", self.config.hive_id,
                 redact(self.config.server), self.config.interval)  # fmt: skip
        try:
            while not stop.is_set():
                stop.wait(self.next_delay(self.beat_once()))
        finally:
            self.client.close()


def _report(raw: dict[str, Any], now: datetime) -> WorkerReport:
    if "last_heartbeat" not in raw:
        raw = {**raw, "last_heartbeat": now.isoformat()}
    return msgspec.convert(raw, WorkerReport)
