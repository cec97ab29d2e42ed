"""The registry's models as the service sees them (``serve --registry``), merged with live state.

The registry's model list is its static ``v1/models`` document (the OpenAI-style list a build
writes). :class:`RegistryModels` reads it from the registry's store with a conditional read, so
an unchanged document costs no body: in the background every ``interval`` seconds, and at each
``GET /v1/models`` (but for :data:`QUIET` seconds after a failed read, so that a registry that is
down does not make every request wait on it). What it read last stays in use while the registry
cannot be read. The
document comes from outside, so each card is decoded into typed fields (an ``id`` that is not a
name is a corrupt document, 502); its other keys (a model's metadata) are passed through.

- **The default model** is the one whose card has ``"default": true``: ``/v1/schedule`` without
  ``model`` schedules it. Without ``--registry``, or when the registry names none, that request
  is a 400 (:class:`NoDefaultModel`); a registry naming two is corrupt (502).
- **Who can serve a model**: a model the registry does not list, and no worker has loaded, cannot
  be loaded by any worker, so the scheduler does not fall back to an idle worker for it
  (:meth:`RegistryModels.loadable`); without a registry, or before its list was first read,
  every model is loadable.
- ``GET /v1/models`` (:func:`model_list`) lists every model of the registry, every model a worker
  on an online hive has loaded, and every model ever scheduled, each with where it is loaded,
  its health (``healthy`` when a healthy worker on an online hive has it), ``use_count`` and
  ``last_used`` (from the state, :mod:`runtime.service.usage`) and the ``default`` flag.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from runtime.errors import CorruptDocument, KeyNotFound, RegistryError
from runtime.registry.wire import decode_document
from runtime.service.types import ModelList, ModelPlace, ModelUse, ModelView, Name, WorkerView
from runtime.storage.location import redact
from runtime.storage.store import MAX_DOCUMENT, NotModified, Store

log = logging.getLogger(__name__)

MODEL_LIST = "v1/models"
REFRESH_INTERVAL = 30.0
QUIET = 5.0  # seconds after a failed read in which a request does not read again
_FIX = "rebuild it with registry-build reindex"
_ASK = "ask /v1/schedule?model=NAME"


class NoDefaultModel(RegistryError, ValueError):
    """Raised when ``/v1/schedule`` names no model and there is no default model to schedule:
    the server has no ``--registry``, or the registry marks no model ``"default": true`` (400)."""

    field = "model"


class RegistryModelsUnavailable(RegistryError, ConnectionError):
    """Raised when the registry's model list is needed and has never been read: the registry
    cannot be reached (503)."""


class _Card(msgspec.Struct, kw_only=True):
    """What the service reads of a card of ``v1/models`` (other keys pass through)."""

    id: Name
    created: int | None = None
    owned_by: str | None = None
    description: str | None = None
    versions: list[str] = []
    targets: list[str] = []
    default: Any = False  # a metadata key may carry any value; only `true` marks the default


class _Document(msgspec.Struct):
    data: list[_Card]


class _Raw(msgspec.Struct):
    data: list[dict[str, Any]]


class RegistryModels:
    """The model list of the registry in ``store`` (None: the server has no registry)."""

    def __init__(self, store: Store | None) -> None:
        self.store = store
        self.cards: list[tuple[_Card, dict[str, Any]]] = []
        self.ids: frozenset[str] = frozenset()
        self.read = False  # whether a list was read (a registry without v1/models has none)
        self.error: RegistryError | None = None  # why the last read failed, while it does
        self._failed_at = -QUIET  # time.monotonic() of the last failed read
        self._etag: str | None = None
        self._lock = threading.Lock()

    @property
    def location(self) -> str | None:
        """The registry as messages show it."""
        return None if self.store is None else redact(self.store.location)

    def refresh(self) -> None:
        """Read ``v1/models`` again if it changed (blocking); raises the store's errors and
        :class:`~runtime.errors.CorruptDocument`."""
        if self.store is None:
            return
        asked = time.monotonic()
        with self._lock:
            if self._failed_at > asked:  # a read failed while this one waited: do not pile on
                return
            try:
                data, etag = self.store.get(MODEL_LIST, self._etag, MAX_DOCUMENT)
            except NotModified:
                self.error = None
                return
            except KeyNotFound:
                data, etag = b'{"object": "list", "data": []}', None
            self._take(data)
            if self.error is not None:
                log.info("the registry's model list was read again")
            self._etag, self.read, self.error = etag, True, None

    async def refreshed(self) -> None:
        """:meth:`refresh` off the event loop (not within :data:`QUIET` seconds of a failure); a
        failure is logged and the last list kept, or, when none was ever read, raised (a corrupt
        list as it is, the rest as :class:`RegistryModelsUnavailable`)."""
        if time.monotonic() - self._failed_at >= QUIET:
            try:
                await asyncio.to_thread(self.refresh)
            except RegistryError as exc:
                self._failed(exc)
        if self.read or self.error is None:
            return
        if isinstance(self.error, CorruptDocument):
            raise self.error
        raise RegistryModelsUnavailable(
            f"the model list of registry {self.location} cannot be read ({self.error}); retry "
            f"later, or {_ASK}"
        )

    async def follow(self, interval: float = REFRESH_INTERVAL) -> None:
        """Refresh every ``interval`` seconds, forever (cancel the task to stop)."""
        while self.store is not None:
            try:
                await asyncio.to_thread(self.refresh)
            except RegistryError as exc:
                self._failed(exc)
            except Exception:  # a bad round must not end the refreshes for good
                log.exception("reading the registry's model list failed")
            await asyncio.sleep(interval)

    def loadable(self, model: str) -> bool:
        """Whether a worker could load ``model``: the registry lists it (True without a
        registry, or while its list was never read)."""
        return not self.read or model in self.ids

    async def default_model(self) -> str:
        """The model the registry marks default; raises :class:`NoDefaultModel`, or
        :class:`RegistryModelsUnavailable` / CorruptDocument for the registry's failures."""
        if self.store is None:
            raise NoDefaultModel(
                "query parameter model is required: this server has no --registry to take a "
                f"default model from; {_ASK}"
            )
        if not self.read:
            await self.refreshed()
        defaults = [card.id for card, _ in self.cards if card.default is True]
        if len(defaults) > 1:
            raise CorruptDocument(
                f"registry {self.location}: {MODEL_LIST} marks {len(defaults)} models as "
                f"default ({', '.join(defaults[:4])}); a registry has at most one: {_FIX}"
            )
        if not defaults:
            raise NoDefaultModel(
                f"query parameter model is required: registry {self.location} names no default "
                f'model (no card of its {MODEL_LIST} has "default": true); {_ASK}'
            )
        return defaults[0]

    def _take(self, data: bytes) -> None:
        where = f"registry {self.location}: {MODEL_LIST}"
        cards = decode_document(data, _Document, where, _FIX).data
        raw = msgspec.json.decode(data, type=_Raw).data
        self.cards = list(zip(cards, raw, strict=True))
        self.ids = frozenset(card.id for card in cards)

    def _failed(self, exc: RegistryError) -> None:
        if self.error is None:
            log.warning("the registry's model list was not read: %s", exc)
        self.error = exc
        self._failed_at = time.monotonic()


def model_list(
    models: RegistryModels,
    live: Iterable[WorkerView],
    usage: Mapping[str, ModelUse],
    *,
    stale: bool,
) -> dict[str, Any]:
    """``GET /v1/models``: each model of the registry, of a live worker (``live``: the workers on
    online hives) or of ``usage``, with its live state, by id. A model's registry card keys sit
    beside ours (ours win)."""
    places = _places(live)
    cards = {card.id: (card, raw) for card, raw in models.cards}
    data = []
    for model in sorted(cards.keys() | places.keys() | usage.keys()):
        card, raw = cards.get(model, (None, {}))
        view = _view(model, card, places.get(model, []), usage.get(model))
        data.append({**raw, **msgspec.to_builtins(view)})
    answer = ModelList(registry=models.location, stale=stale)
    return {**msgspec.to_builtins(answer), "data": data}


def _places(live: Iterable[WorkerView]) -> dict[str, list[ModelPlace]]:
    places: dict[str, list[ModelPlace]] = {}
    for view in live:
        w = view.worker
        if w.model_id is not None:
            place = ModelPlace(
                hive_id=view.hive_id, worker_id=w.worker_id, state=w.state,
                health_status=w.health_status,
            )  # fmt: skip
            places.setdefault(w.model_id, []).append(place)
    return places


def _view(
    model: str, card: _Card | None, places: list[ModelPlace], use: ModelUse | None
) -> ModelView:
    healthy = any(p.health_status == "healthy" for p in places)
    view = ModelView(
        id=model,
        default=card is not None and card.default is True,
        in_registry=card is not None,
        health="healthy" if healthy else "unavailable",
        hives=sorted({p.hive_id for p in places}),
        workers=places,
        use_count=0 if use is None else use.count,
        last_used=None if use is None else round(use.last_used.timestamp(), 3),
    )
    if card is not None:
        view.created, view.owned_by, view.description = (
            card.created,
            card.owned_by,
            card.description,
        )
        view.versions, view.targets = card.versions, card.targets
    return view
