"""A typed Python client of the runtime service, for a router, a scheduler, or the hive agent::

    from runtime.service.client import ServiceClient

    with ServiceClient("http://127.0.0.1:8081", token="...") as service:
        answer = service.schedule("tiny-llama")
        print(answer.worker.worker.url, answer.model_loaded)

The answers are the service's own types (:mod:`runtime.service.types`), decoded with msgspec; the
client needs urllib3 and msgspec only, none of the server's packages.

- **Connections** are kept alive and reused: one urllib3 ``PoolManager`` per client, safe to
  share between threads (or pass your own as ``http``).
- **Timeouts**: every request has ``timeout`` seconds to connect and as many to read.
- **Retries**: a request that got no answer, a 5xx (but 501, which retrying cannot fix) or a 429
  is sent again up to ``retries`` times, after a back-off of ``backoff`` x 2^n seconds (at most
  ``max_backoff``, with jitter; a ``Retry-After`` is honoured). A 4xx is never retried. A request
  that must not be applied twice (a promotion, a deletion) is sent again only when it surely did
  not reach the server (the connection could not be made) or the server answered 429.
- **Errors** are the project's: :class:`ServiceError` (a
  :class:`~runtime.errors.RegistryError`) carries the ``status``, the server's ``message`` and
  the ``field`` it names; :class:`ServiceUnreachable` is one without an answer;
  :class:`ServiceAnswerError` an answer that is not what the route answers.
"""

from __future__ import annotations

import random
import time
import urllib.parse
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal, TypeVar

import msgspec
import urllib3

from runtime.errors import RegistryError
from runtime.service.types import (
    Accepted,
    Health,
    HiveHeartbeat,
    HiveList,
    HiveView,
    ModelList,
    PromoteRequest,
    PromoteResponse,
    ScheduleAnswer,
    ServiceAnswer,
    ServiceBeaten,
    ServiceHealth,
    ServiceHeartbeat,
    ServiceList,
    ServiceRegistration,
    ServiceRemoved,
    ServiceUpdate,
    ServiceWritten,
    WorkerHeartbeat,
    WorkerList,
    WorkerView,
)
from runtime.storage.location import redact

T = TypeVar("T")
Query = Mapping[str, str | float | bool | None]

MAX_MESSAGE = 300
# The connection was never made: the request cannot have been applied.
_NOT_SENT = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)
_ENCODER = msgspec.json.Encoder()
_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}


class ServiceError(RegistryError):
    """Raised when the runtime service refuses a request. ``status`` is the HTTP status (None
    when there was no answer), ``message`` the server's reason, ``field`` the part of the request
    it names, ``location`` where a redirect points, ``retry_after`` the seconds it asked to
    wait."""

    def __init__(
        self,
        text: str,
        *,
        status: int | None,
        message: str,
        field: str | None = None,
        location: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(text)
        self.status = status
        self.message = message
        self.field = field
        self.location = location
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Whether sending the request again may succeed: no answer, 429, or a 5xx but 501."""
        status = self.status
        return status is None or status == 429 or (status >= 500 and status != 501)


class ServiceUnreachable(ServiceError, ConnectionError):
    """Raised when the service gave no answer: refused, reset, or timed out. ``reached`` is
    False when the connection was never made (the request cannot have been applied)."""

    reached = True


class ServiceAnswerError(ServiceError, ValueError):
    """Raised when an answer's body is not what the route answers (not a registry-runtime
    server, or another version)."""


class ClientConfigError(RegistryError, ValueError):
    """Raised when the client is given an unusable service URL or setting."""


class ServiceClient:
    """The routes of one runtime service at ``url``; ``token`` goes with every request."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 8.0,
        http: urllib3.PoolManager | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ClientConfigError(
                f"service URL {_cut(redact(url))!r} is not an http(s) URL; use http://HOST:PORT"
            )
        if retries < 0 or not timeout > 0:
            raise ClientConfigError(
                f"retries={retries}, timeout={timeout}: retries must be 0 or more and the "
                "timeout more than 0 seconds"
            )
        self.url = url.rstrip("/")
        self.shown = redact(self.url)
        self.token = token
        self.timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.http = http or urllib3.PoolManager(maxsize=8, retries=False)
        self.sleep = sleep
        self.rng = rng or random.Random()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the kept-alive connections."""
        self.http.clear()

    # -- hives, workers, scheduling -------------------------------------------------------------

    def heartbeat(self, beat: HiveHeartbeat) -> Accepted:
        """Send a hive's heartbeat (its whole state)."""
        return self._call("POST", "/v1/heartbeat", Accepted, body=beat)

    def worker_heartbeat(self, beat: WorkerHeartbeat) -> WorkerView:
        """Send one worker's health between its hive's heartbeats."""
        return self._call("POST", "/v1/worker-heartbeat", WorkerView, body=beat)

    def schedule(
        self,
        model: str | None = None,
        *,
        fallback: Literal["any", "none"] | None = None,
        spread: Literal[1, 2] | None = None,
    ) -> ScheduleAnswer:
        """The worker to use for ``model`` (None: the registry's default model);
        ``fallback="none"`` asks for a worker with the model loaded or nothing (a 503)."""
        query = {"model": model, "fallback": fallback, "spread": spread}
        return self._call("GET", "/v1/schedule", ScheduleAnswer, query=query)

    def hives(self, *, online: bool | None = None, max_age: float | None = None) -> HiveList:
        """The hives held and catalogued (``online``: only those online)."""
        query = {"online": online, "max_age": max_age}
        return self._call("GET", "/v1/hives", HiveList, query=query)

    def hive(self, hive_id: str) -> HiveView:
        """One hive."""
        return self._call("GET", f"/v1/hives/{_part(hive_id)}", HiveView)

    def forget_hive(self, hive_id: str) -> None:
        """Forget a hive, its workers and its catalog row."""
        self._call_empty("DELETE", f"/v1/hives/{_part(hive_id)}", idempotent=False)

    def workers(
        self,
        *,
        model: str | None = None,
        backend: str | None = None,
        state: str | None = None,
        hive: str | None = None,
    ) -> WorkerList:
        """The workers on online hives matching every filter given."""
        query = {"model": model, "backend": backend, "state": state, "hive": hive}
        return self._call("GET", "/v1/workers", WorkerList, query=query)

    def worker(self, worker_id: str) -> WorkerView:
        """One worker."""
        return self._call("GET", f"/v1/workers/{_part(worker_id)}", WorkerView)

    def models(self) -> ModelList:
        """The registry's models with where they are loaded and how much they are used."""
        return self._call("GET", "/v1/models", ModelList)

    # -- services ---------------------------------------------------------------------------

    def services(self, *, healthy: bool | None = None, status: str | None = None) -> ServiceList:
        """The registered services matching the filters given."""
        query = {"healthy": healthy, "status": status}
        return self._call("GET", "/services", ServiceList, query=query)

    def service(self, name: str) -> ServiceAnswer:
        """One service."""
        return self._call("GET", f"/services/{_part(name)}", ServiceAnswer)

    def register_service(self, registration: ServiceRegistration) -> ServiceAnswer:
        """Register (or overwrite) a service; the service as stored."""
        return self._call("POST", "/services", ServiceWritten, body=registration).service

    def update_service(self, name: str, change: ServiceUpdate) -> ServiceAnswer:
        """Change the fields ``change`` gives of a service."""
        path = f"/services/{_part(name)}"
        return self._call("PUT", path, ServiceWritten, body=change).service

    def service_heartbeat(self, name: str, status: str | None = None) -> ServiceAnswer:
        """A service's heartbeat, optionally with a new status."""
        path = f"/services/{_part(name)}/heartbeat"
        beat = ServiceHeartbeat(status=status)
        return self._call("POST", path, ServiceBeaten, body=beat).service

    def remove_service(self, name: str) -> None:
        """Deregister a service."""
        self._call("DELETE", f"/services/{_part(name)}", ServiceRemoved, idempotent=False)

    def check_service(self, name: str) -> ServiceHealth:
        """Have the server check a service's health endpoint now."""
        return self._call("GET", f"/services/{_part(name)}/health", ServiceHealth)

    # -- the registry and the server --------------------------------------------------------

    def promote(
        self, model: str, alias: str, version: str, actor: str, reason: str = ""
    ) -> PromoteResponse:
        """Point ``model@alias`` at ``version`` (needs an admin token and ``serve
        --registry``); sent again only when it surely did not arrive."""
        body = PromoteRequest(model, alias, version, actor, reason)
        return self._call("POST", "/v1/promote", PromoteResponse, body=body, idempotent=False)

    def health(self) -> Health:
        """The server's own state."""
        return self._call("GET", "/health", Health)

    # -- one request --------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        answer: type[T],
        *,
        body: object = None,
        query: Query | None = None,
        idempotent: bool = True,
    ) -> T:
        resp = self._exchange(method, path, body, query, idempotent)
        try:
            return _decoder(answer).decode(resp.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ServiceAnswerError(
                f"{method} {self.shown}{path}: the answer ({resp.status}) is not a "
                f"{answer.__name__} ({_cut(str(exc))}); is {self.shown} a registry-runtime "
                "server of this version?",
                status=resp.status, message=str(exc),
            ) from None  # fmt: skip

    def _call_empty(self, method: str, path: str, *, idempotent: bool = True) -> None:
        self._exchange(method, path, None, None, idempotent)

    def _exchange(
        self, method: str, path: str, body: object, query: Query | None, idempotent: bool
    ) -> urllib3.BaseHTTPResponse:
        """The 2xx answer to one request, retried as the module notes say; raises
        :class:`ServiceError`."""
        url = self.url + path + _query(query)
        data = None if body is None else _ENCODER.encode(body)
        attempt = 0
        while True:
            result = self._attempt(method, url, path, data)
            if not isinstance(result, ServiceError):
                return result
            if attempt >= self.retries or not _again(result, idempotent):
                raise result
            self.sleep(self._delay(attempt, result.retry_after))
            attempt += 1

    def _attempt(
        self, method: str, url: str, path: str, data: bytes | None
    ) -> urllib3.BaseHTTPResponse | ServiceError:
        """One try: the answer if it is a 2xx, else the error."""
        try:
            resp = self.http.request(
                method, url, body=data, headers=self._headers(data), timeout=self.timeout,
                retries=False, redirect=False,
            )  # fmt: skip
        except urllib3.exceptions.HTTPError as exc:
            return self._unreachable(method, path, exc)
        if 200 <= resp.status < 300:
            return resp
        return self._refusal(method, path, resp)

    def _headers(self, data: bytes | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        cap = min(self.max_backoff, self.backoff * 2.0**attempt)
        delay = cap * self.rng.uniform(0.5, 1.0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff))
        return delay

    def _unreachable(self, method: str, path: str, exc: Exception) -> ServiceUnreachable:
        reason = _cut(redact(str(exc)) or type(exc).__name__, MAX_MESSAGE)
        error = ServiceUnreachable(
            f"{method} {self.shown}{path}: no answer ({reason}); is the service running there?",
            status=None, message=reason,
        )  # fmt: skip
        error.reached = not isinstance(exc, _NOT_SENT)
        return error

    def _refusal(self, method: str, path: str, resp: urllib3.BaseHTTPResponse) -> ServiceError:
        message, field = _reason(resp)
        location = resp.headers.get("location")
        if location:
            location = redact(location)
            message = f"a redirect to {location}"
        return ServiceError(
            f"{method} {self.shown}{path}: the service answered {resp.status}: {message}",
            status=resp.status, message=message, field=field, location=location,
            retry_after=_seconds(resp.headers.get("retry-after")),
        )  # fmt: skip


def _again(error: ServiceError, idempotent: bool) -> bool:
    """Whether to send a request again after ``error``: see the module notes."""
    if not error.retryable:
        return False
    unsent = isinstance(error, ServiceUnreachable) and not error.reached
    return idempotent or unsent or error.status == 429


def _reason(resp: urllib3.BaseHTTPResponse) -> tuple[str, str | None]:
    """The server's reason on one line (its JSON ``error``, or the text) and the field."""
    try:
        body = msgspec.json.decode(resp.data)
    except msgspec.DecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        field = body.get("field")
        return _one_line(body["error"]), field if isinstance(field, str) else None
    text = resp.data.decode("utf-8", "replace") or "no reason given"
    return _one_line(text), None


def _one_line(text: str) -> str:
    return _cut(" ".join(text.split()), MAX_MESSAGE)


def _seconds(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds (an HTTP date is not honoured: None)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def _query(query: Query | None) -> str:
    if not query:
        return ""
    pairs = {k: _text(v) for k, v in query.items() if v is not None}
    return "?" + urllib.parse.urlencode(pairs) if pairs else ""


def _text(value: str | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _part(value: str) -> str:
    """``value`` as one path segment."""
    return urllib.parse.quote(value, safe="")


def _decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    if kind not in _DECODERS:
        _DECODERS[kind] = msgspec.json.Decoder(kind)
    return _DECODERS[kind]


def _cut(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
