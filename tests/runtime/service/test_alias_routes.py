"""The alias HTTP routes, served by uvicorn on a loopback port from a minimal Starlette app."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from support.registries import whisper_registry

from runtime.errors import RegistryError
from runtime.service.alias_routes import alias_routes
from runtime.storage.store import LocalStore

TOKEN = "s3cret"


class Denied(RegistryError, PermissionError):
    """Raised by the test's token check for a request without the token."""


def check_token(request: Request) -> None:
    if request.headers.get("authorization") != f"Bearer {TOKEN}":
        raise Denied("this request needs a header 'Authorization: Bearer <token>'")


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    """whisper 1.0 and 1.1 (universal) in a directory."""
    return whisper_registry(tmp_path / "site")


@pytest.fixture
def base_url(store: LocalStore) -> Iterator[str]:
    """uvicorn serving the alias routes over ``store`` on 127.0.0.1."""
    app = Starlette(routes=alias_routes(store, check_token))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def call(
    base_url: str, method: str, path: str, body: object = None, token: str | None = TOKEN
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    response = urllib3.request(method, base_url + path, body=data, headers=headers, retries=False)
    return response.status, json.loads(response.data)


PROMOTE = {"model": "whisper", "alias": "production", "version": "1.1", "actor": "alice"}


def test_promote_then_resolve_list_history_and_verify(base_url: str) -> None:
    status, answer = call(base_url, "POST", "/v1/promote", {**PROMOTE, "reason": "ship"})
    assert status == 200
    assert answer["retries"] == 0
    record = answer["record"]
    assert (record["version"], record["seq"], record["actor"]) == ("1.1", 1, "alice")

    status, answer = call(base_url, "GET", "/v1/resolve?ref=whisper@production&target=linux-x86_64")
    assert (status, answer["version"], answer["alias"]) == (200, "1.1", "production")
    assert [b["target"] for b in answer["bundles"]] == ["universal"]

    status, answer = call(base_url, "GET", "/v1/aliases?model=whisper")
    assert status == 200
    assert [(a["alias"], a["version"], a["reason"]) for a in answer["aliases"]] == [
        ("production", "1.1", "ship")
    ]

    status, answer = call(base_url, "GET", "/v1/history?model=whisper&alias=production")
    assert (status, [r["seq"] for r in answer["records"]]) == (200, [1])

    status, answer = call(base_url, "POST", "/v1/verify", {"ref": "whisper@production"})
    assert (status, answer["problems"]) == (200, [])
    assert answer["chain"]["records"] == 1
    assert [b["ok"] for b in answer["bundles"]] == [True]


@pytest.mark.parametrize(
    ("method", "path", "body", "token", "status", "error"),
    [
        (
            "POST",
            "/v1/promote",
            PROMOTE,
            None,
            401,
            {"error": "this request needs a header 'Authorization: Bearer <token>'", "field": None},
        ),
        (
            "POST",
            "/v1/verify",
            {"ref": "whisper"},
            "wrong",
            401,
            {"error": "this request needs a header 'Authorization: Bearer <token>'", "field": None},
        ),
        (
            "POST",
            "/v1/promote",
            {**PROMOTE, "version": "9"},
            TOKEN,
            404,
            {
                "error": "model 'whisper' has no version '9' in {loc} (versions: 1.0, 1.1): "
                "publish it first or pick one of those",
                "field": None,
            },
        ),
        (
            "POST",
            "/v1/promote",
            {**PROMOTE, "alias": "1.0"},
            TOKEN,
            400,
            {
                "error": "alias '1.0' is also a version of model 'whisper', so whisper@1.0 would "
                "be ambiguous: pick a name that is not a version, e.g. 'production' or 'stable'",
                "field": None,
            },
        ),
        (
            "POST",
            "/v1/promote",
            {**PROMOTE, "extra": 1},
            TOKEN,
            422,
            {"error": "invalid body: Object contains unknown field `extra`", "field": "$"},
        ),
        (
            "GET",
            "/v1/resolve?ref=whisper@",
            None,
            None,
            400,
            {
                "error": "ref 'whisper@' has nothing after '@': write whisper@VERSION, "
                "whisper@ALIAS, or just whisper for the highest version",
                "field": None,
            },
        ),
        (
            "GET",
            "/v1/resolve",
            None,
            None,
            400,
            {"error": "query parameter 'ref' is required", "field": "ref"},
        ),
        (
            "GET",
            "/v1/history?model=whisper&alias=staging",
            None,
            None,
            404,
            {
                "error": "model 'whisper' has no alias 'staging' in {loc} (aliases: none)",
                "field": None,
            },
        ),
        (
            "GET",
            "/v1/aliases?model=llama",
            None,
            None,
            404,
            {
                "error": "model 'llama' is not in the index of {loc} (models: whisper)",
                "field": None,
            },
        ),
    ],
)
def test_errors(
    base_url: str,
    store: LocalStore,
    method: str,
    path: str,
    body: object,
    token: str | None,
    status: int,
    error: dict[str, object],
) -> None:
    expected = {**error, "error": str(error["error"]).format(loc=store.location)}
    assert call(base_url, method, path, body, token) == (status, expected)


def test_a_body_that_is_not_json(base_url: str) -> None:
    response = urllib3.request(
        "POST",
        base_url + "/v1/verify",
        body=b"{",
        headers={"Authorization": f"Bearer {TOKEN}"},
        retries=False,
    )
    answer = json.loads(response.data)
    assert (response.status, answer["field"]) == (400, "$")
    assert answer["error"].startswith("the body is not valid JSON: ")
