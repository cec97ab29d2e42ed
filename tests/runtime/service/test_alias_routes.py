"""The alias HTTP routes through the service's HTTP layer, served by uvicorn on a loopback port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from support.registries import whisper_registry
from support.service import serve

from runtime.service.alias_routes import AliasRoutes
from runtime.service.endpoints import MAX_BODY_BYTES
from runtime.service.http import http_app
from runtime.service.tokens import Tokens
from runtime.storage.local import LocalStore

TOKEN = "s3cret"
HIVE_TOKEN = "token-of-a"


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    """whisper 1.0 and 1.1 (universal) in a directory."""
    return whisper_registry(tmp_path / "site")


@pytest.fixture
def base_url(store: LocalStore) -> Iterator[str]:
    """uvicorn serving the alias routes over ``store`` on 127.0.0.1."""
    app = http_app(AliasRoutes(store).endpoints(), Tokens({TOKEN: None, HIVE_TOKEN: "a"}))
    with serve(app) as url:
        yield url


def call(
    base_url: str,
    method: str,
    path: str,
    body: object = None,
    token: str | None = TOKEN,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
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


NEEDS_TOKEN = "this request needs a header 'Authorization: Bearer <token>'"


@pytest.mark.parametrize(
    ("method", "path", "body", "token", "status", "error"),
    [
        ("POST", "/v1/promote", PROMOTE, None, 401, {"error": NEEDS_TOKEN}),
        ("POST", "/v1/verify", {"ref": "whisper"}, "wrong", 401,
         {"error": "the bearer token is not one this server accepts"}),
        ("POST", "/v1/promote", PROMOTE, HIVE_TOKEN, 403,
         {"error": "this token is bound to hive 'a'; this change needs a token bound to no hive"}),
        ("POST", "/v1/verify", {"ref": "whisper"}, HIVE_TOKEN, 403,
         {"error": "this token is bound to hive 'a'; this change needs a token bound to no hive"}),
        ("POST", "/v1/promote", {**PROMOTE, "version": "9"}, TOKEN, 404,
         {"error": "model 'whisper' has no version '9' in {loc} (versions: 1.0, 1.1): "
                   "publish it first or pick one of those"}),
        ("POST", "/v1/promote", {**PROMOTE, "alias": "1.0"}, TOKEN, 400,
         {"error": "alias '1.0' is also a version of model 'whisper', so whisper@1.0 would "
                   "be ambiguous: pick a name that is not a version, e.g. 'production' or "
                   "'stable'"}),
        ("POST", "/v1/promote", {**PROMOTE, "extra": 1}, TOKEN, 422,
         {"error": "invalid body: Object contains unknown field `extra`", "field": "$.extra"}),
        ("POST", "/v1/promote", {**PROMOTE, "actor": 7}, TOKEN, 422,
         {"error": "invalid body: Expected `str`, got `int` - at `$.actor`", "field": "$.actor"}),
        ("POST", "/v1/verify", {}, TOKEN, 422,
         {"error": "invalid body: Object missing required field `ref`", "field": "$.ref"}),
        ("GET", "/v1/resolve?ref=whisper@", None, None, 400,
         {"error": "ref 'whisper@' has nothing after '@': write whisper@VERSION, "
                   "whisper@ALIAS, or just whisper for the highest version"}),
        ("GET", "/v1/resolve", None, None, 400,
         {"error": "query parameter ref is required: "
                   "/v1/resolve?ref=MODEL[@SELECTOR]&target=TARGET", "field": "ref"}),
        ("GET", "/v1/history?model=whisper", None, None, 400,
         {"error": "query parameter alias is required: /v1/history?model=MODEL&alias=ALIAS",
          "field": "alias"}),
        ("GET", "/v1/history?model=whisper&alias=staging", None, None, 404,
         {"error": "model 'whisper' has no alias 'staging' in {loc} (aliases: none)"}),
        ("GET", "/v1/aliases?model=llama", None, None, 404,
         {"error": "model 'llama' is not in the index of {loc} (models: whisper)"}),
    ],
)  # fmt: skip
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
    assert call(base_url, "POST", "/v1/verify", raw=b"{") == (
        400,
        {"error": "the body is not valid JSON: Input data was truncated", "field": "$"},
    )


def test_the_body_limit_is_the_one_of_every_route(base_url: str) -> None:
    padded = json.dumps({**PROMOTE, "reason": "big"}).encode().ljust(100 * 1024)
    assert call(base_url, "POST", "/v1/promote", raw=padded)[0] == 200  # was 413 over 64 KiB
    assert call(base_url, "POST", "/v1/promote", raw=padded.ljust(MAX_BODY_BYTES + 1)) == (
        413,
        {"error": "the request body is 262145 bytes; the limit is 262144 bytes"},
    )


def test_a_corrupt_index_is_the_registrys_fault_not_the_clients(
    base_url: str, store: LocalStore
) -> None:
    (store.root / "index.json").write_bytes(b"{not json")
    status, answer = call(base_url, "GET", "/v1/aliases?model=whisper")
    assert status == 502
    assert answer["error"].startswith(f"{store.location}/index.json ")  # the reader's message
