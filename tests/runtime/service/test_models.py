"""``/v1/models``: the registry's model list (its static ``v1/models``) merged with live state and
the use counts of ``/v1/schedule``, on both states and across a restart; the default model; a
model no worker can serve."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from support.service import ADMIN, Client, closed_port_url, heartbeat, serve, worker

from registry_build.commit import commit
from runtime.errors import CorruptDocument
from runtime.registry.wire import BundleDescriptor, Location, blob_key
from runtime.service.models import NoDefaultModel, RegistryModels
from runtime.service.server import build_runtime, create_app
from runtime.service.state import MEMORY, StateChoice
from runtime.service.tokens import Tokens
from runtime.storage.http import HttpStore, default_retries
from runtime.storage.local import LocalStore
from runtime.storage.location import open_store

from .conftest import TOKENS


def card(model: str, **fields: Any) -> dict[str, Any]:
    """A card of ``v1/models`` as a build writes it (metadata keys first)."""
    return {"id": model, "object": "model", "created": 1767225600, "owned_by": "bundle-registry",
            "description": f"the {model} model", "versions": ["1.0"], "targets": ["universal"],
            **fields}  # fmt: skip


def write_models(root: Path, *cards: dict[str, Any]) -> Path:
    """A registry whose ``v1/models`` lists ``cards``."""
    (root / "v1").mkdir(parents=True, exist_ok=True)
    (root / "v1" / "models").write_text(json.dumps({"object": "list", "data": [*cards]}))
    return root


FLEET = heartbeat(
    "a",
    worker("a1", model_id="tiny-llama", gpu_percent=10.0),
    worker("a2", model_id="whisper", health_status="degraded"),
)


@contextmanager
def app(state: StateChoice, db: Path, registry: Path | None) -> Iterator[Client]:
    rt = build_runtime(tokens=Tokens(TOKENS), state=state, db=db)
    store = None if registry is None else LocalStore(registry)
    try:
        with serve(create_app(rt, registry=store)) as url:
            yield Client(url, ADMIN)
    finally:
        rt.state.close()


def by_id(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in answer["data"]}


def test_models_show_where_and_how_much_and_survive_a_restart(
    state_choice: StateChoice, tmp_path: Path
) -> None:
    registry = write_models(
        tmp_path / "site",
        card("tiny-llama", default=True, family="llama"),
        card("whisper", default="no"),  # a metadata value that is not `true` marks nothing
    )
    before = time.time()
    with app(state_choice, tmp_path / "rt.db", registry) as client:
        assert client.post("/v1/heartbeat", FLEET).status == 200
        for path in ["/v1/schedule?model=tiny-llama", "/v1/schedule?model=tiny-llama",
                     "/v1/schedule"]:  # fmt: skip
            answer = client.get(path)
            assert (answer.status, answer.body["model"]) == (200, "tiny-llama"), answer.body
        models = by_id(client.get("/v1/models").body)
    assert list(models) == ["tiny-llama", "whisper"]
    llama, whisper = models["tiny-llama"], models["whisper"]
    assert {k: llama[k] for k in ("default", "in_registry", "health", "hives", "use_count")} == {
        "default": True, "in_registry": True, "health": "healthy", "hives": ["a"], "use_count": 3,
    }  # fmt: skip
    assert llama["workers"] == [
        {"hive_id": "a", "worker_id": "a1", "state": "Idle", "health_status": "healthy"}
    ]
    assert (llama["family"], llama["description"], llama["versions"], llama["object"]) == (
        "llama", "the tiny-llama model", ["1.0"], "model",
    )  # fmt: skip
    assert before <= llama["last_used"] <= time.time()
    assert (whisper["default"], whisper["health"], whisper["use_count"]) == (
        False, "unavailable", 0,
    )  # fmt: skip
    assert whisper["last_used"] is None
    with app(state_choice, tmp_path / "rt.db", registry) as client:  # a restart
        again = by_id(client.get("/v1/models").body)
    assert (again["tiny-llama"]["use_count"], again["tiny-llama"]["last_used"]) == (
        3, llama["last_used"],
    )  # fmt: skip
    # In memory no hive has spoken since the restart; Redis kept the hive's last heartbeat.
    live = "healthy" if state_choice.kind == "redis" else "unavailable"
    assert again["tiny-llama"]["health"] == live


def test_a_model_the_registry_lacks_and_no_worker_has_gets_a_503(
    state_choice: StateChoice, tmp_path: Path
) -> None:
    registry = write_models(tmp_path / "site", card("tiny-llama"))
    with app(state_choice, tmp_path / "rt.db", registry) as client:
        client.post("/v1/heartbeat", heartbeat("a", worker("a1", model_id="other")))
        unsupported = client.get("/v1/schedule?model=mistral")
        assert (unsupported.status, unsupported.body) == (
            503,
            {"error": "no healthy idle worker on an online hive has model 'mistral' loaded, and "
             "the registry does not list it, so no worker can load it; GET /v1/models lists "
             "the registry's models"},
        )  # fmt: skip
        loads = client.get("/v1/schedule?model=tiny-llama").body  # the registry has it
        assert (loads["worker"]["worker"]["worker_id"], loads["model_loaded"]) == ("a1", False)
        models = by_id(client.get("/v1/models").body)
    assert (models["other"]["in_registry"], models["other"]["health"]) == (False, "healthy")
    assert (models["tiny-llama"]["use_count"], models["tiny-llama"]["hives"]) == (1, [])
    assert "mistral" not in models  # an answer that scheduled nothing is no use


@pytest.mark.parametrize(
    ("cards", "status", "error"),
    [
        ([card("tiny-llama")], 400,
         "query parameter model is required: registry {root} names no default model (no card "
         'of its v1/models has "default": true); ask /v1/schedule?model=NAME'),
        ([card("a", default=True), card("b", default=True)], 502,
         "registry {root}: v1/models marks 2 models as default (a, b); a registry has at most "
         "one: rebuild it with registry-build reindex"),
        ([card("bad name")], 502,
         "registry {root}: v1/models: $.data[0].id: 'bad name' is not a valid name (use 1-128 "
         "letters, digits, '.', '_' or '-', starting and ending with a letter or digit, without "
         "'..'); the registry is corrupt or hostile: rebuild it with registry-build reindex"),
    ],
)  # fmt: skip
def test_schedule_without_a_model_needs_one_default(
    cards: list[dict[str, Any]], status: int, error: str, tmp_path: Path
) -> None:
    registry = write_models(tmp_path / "site", *cards)
    with app(MEMORY, tmp_path / "rt.db", registry) as client:
        answer = client.get("/v1/schedule")
    assert (answer.status, answer.body["error"]) == (status, error.format(root=registry))


def test_the_model_list_follows_an_http_registry(
    tmp_path: Path, http_server: Callable[[Path], str]
) -> None:
    root = write_models(tmp_path / "site", card("tiny-llama"))
    url = http_server(root)
    rt = build_runtime(tokens=Tokens(TOKENS), db=tmp_path / "rt.db")
    with serve(create_app(rt, registry=open_store(url))) as base:
        client = Client(base)
        first = client.get("/v1/models").body
        assert ([m["id"] for m in first["data"]], first["registry"]) == (["tiny-llama"], url)
        write_models(root, card("tiny-llama", default=True), card("whisper"))
        _touch_ahead(root / "v1" / "models", 2)  # http.server's Last-Modified has 1 s steps
        assert [m["id"] for m in client.get("/v1/models").body["data"]] == ["tiny-llama", "whisper"]
        (root / "v1" / "models").write_text('{"object": "list", "data": [{"id": 7}]}')
        _touch_ahead(root / "v1" / "models", 4)
        kept = client.get("/v1/models")  # a corrupt list read later: the last good one stays
        assert [m["id"] for m in kept.body["data"]] == ["tiny-llama", "whisper"]
        assert client.get("/v1/schedule").status == 503  # default tiny-llama; no worker at all
    rt.state.close()


def _touch_ahead(path: Path, seconds: int) -> None:
    """Date ``path`` ``seconds`` ahead: a rewrite within one second shows without a sleep."""
    ahead = time.time() + seconds
    os.utime(path, (ahead, ahead))


def test_a_registry_never_read_is_a_503(tmp_path: Path) -> None:
    rt = build_runtime(tokens=Tokens(TOKENS), db=tmp_path / "rt.db")
    unreachable = HttpStore(closed_port_url().rstrip("/"), retries=default_retries(total=0))
    with serve(create_app(rt, registry=unreachable)) as base:
        client = Client(base)
        answers = [client.get("/v1/models"), client.get("/v1/schedule")]
        assert client.get("/v1/schedule?model=m").status == 503  # no worker; model loadable
    rt.state.close()
    for answer in answers:
        assert answer.status == 503
        assert answer.body["error"].startswith("the model list of registry http://127.0.0.1:")
        assert answer.body["error"].endswith("; retry later, or ask /v1/schedule?model=NAME")


def test_registry_models_read_from_a_built_registry(tmp_path: Path) -> None:
    descriptor = BundleDescriptor(
        id="tiny", version="1.0", target="universal", hash="a" * 64, size_bytes=1,
        location=Location("remote", blob_key("a" * 64)),
    )  # fmt: skip
    store = LocalStore(tmp_path / "site")
    commit(store, [descriptor])
    models = RegistryModels(store)
    models.refresh()
    assert (models.ids, models.read, models.loadable("tiny"), models.loadable("x")) == (
        frozenset({"tiny"}), True, True, False,
    )  # fmt: skip


def test_registry_models_without_a_registry_or_a_list(tmp_path: Path) -> None:
    nothing = RegistryModels(None)
    nothing.refresh()
    assert nothing.loadable("anything")
    with pytest.raises(NoDefaultModel) as err:
        asyncio.run(nothing.default_model())
    assert str(err.value) == (
        "query parameter model is required: this server has no --registry to take a default "
        "model from; ask /v1/schedule?model=NAME"
    )
    empty = RegistryModels(LocalStore(tmp_path / "empty"))  # nothing built yet
    empty.refresh()
    assert (empty.read, empty.ids, empty.loadable("m")) == (True, frozenset(), False)
    (tmp_path / "bad" / "v1").mkdir(parents=True)
    (tmp_path / "bad" / "v1" / "models").write_text("{")
    with pytest.raises(CorruptDocument):
        RegistryModels(LocalStore(tmp_path / "bad")).refresh()
