"""The one HTTP layer: a table of rows through uvicorn on a loopback port, with its access
column, body reader, status table, unexpected failures and per-route metrics."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator

import msgspec
import pytest
import urllib3
from starlette.requests import Request
from support.service import ADMIN, HIVE_A, Client, serve

from runtime.errors import CorruptDocument, PreconditionFailed, RegistryError, StoreError
from runtime.service.endpoints import MAX_BODY_BYTES, Endpoint, caller, read_body
from runtime.service.hives import UnknownHive
from runtime.service.http import http_app
from runtime.service.tokens import Tokens


class NoRow(RegistryError, ValueError):
    """Raised by the test's route: a project error that no row of the status table maps."""


class Item(msgspec.Struct, forbid_unknown_fields=True):
    n: int


class Payload(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    items: list[Item] = []


FAILURES: dict[str, Exception] = {
    "precondition": PreconditionFailed("aliases/m/prod.json changed meanwhile; retry"),
    "corrupt": CorruptDocument("site/index.json: not JSON; rebuild it"),
    "store": StoreError("s3://bucket: the connection was reset; retry"),
    "unmapped": NoRow("a message written for a user"),
    "bug": KeyError("secret internal detail"),
}


async def public(request: Request) -> dict[str, bool]:
    return {"ok": True}


async def whoami(request: Request) -> dict[str, str | None]:
    return {"caller": caller(request)}


async def echo(request: Request) -> Payload:
    return await read_body(request, Payload)


async def fail(request: Request) -> None:
    raise FAILURES[request.path_params["kind"]]


async def hive(request: Request) -> None:
    raise UnknownHive(f"hive {request.path_params['hive_id']!r} is not held")


TABLE = [
    Endpoint("GET", "/public", public, "Anyone"),
    Endpoint("POST", "/token", whoami, "Any known token", access="token"),
    Endpoint("POST", "/admin", whoami, "An admin token", access="admin"),
    Endpoint("POST", "/echo", echo, "The body back", Payload, Payload),
    Endpoint("GET", "/fail/{kind}", fail, "Fails as told"),
    Endpoint("GET", "/hives/{hive_id}", hive, "No hive is held"),
]


@pytest.fixture
def client() -> Iterator[Client]:
    with serve(http_app(TABLE, Tokens({ADMIN: None, HIVE_A: "a"}))) as url:
        yield Client(url, ADMIN)


NEEDS_TOKEN = "this request needs a header 'Authorization: Bearer <token>'"


@pytest.mark.parametrize(
    ("path", "token", "status", "body"),
    [
        ("/token", "", 401, {"error": NEEDS_TOKEN}),
        ("/token", "guess", 401, {"error": "the bearer token is not one this server accepts"}),
        ("/token", HIVE_A, 200, {"caller": "a"}),
        ("/token", ADMIN, 200, {"caller": None}),
        ("/admin", "", 401, {"error": NEEDS_TOKEN}),
        ("/admin", HIVE_A, 403, {"error": "this token is bound to hive 'a'; this change needs a "
                                          "token bound to no hive"}),
        ("/admin", ADMIN, 200, {"caller": None}),
    ],
)  # fmt: skip
def test_the_access_column_is_checked_before_the_handler(
    client: Client, path: str, token: str, status: int, body: object
) -> None:
    answer = client.post(path, {}, token=token)
    assert (answer.status, answer.body) == (status, body)
    assert (answer.headers.get("www-authenticate") == "Bearer") == (status == 401)
    assert client.get("/public").body == {"ok": True}


@pytest.mark.parametrize(
    ("kind", "status"), [("precondition", 412), ("corrupt", 502), ("store", 503)]
)
def test_errors_answer_through_the_status_table(client: Client, kind: str, status: int) -> None:
    answer = client.get(f"/fail/{kind}")
    assert (answer.status, answer.body) == (status, {"error": str(FAILURES[kind])})


def test_an_error_without_a_row_is_a_500_with_its_message_and_a_log_line(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="runtime.service.http"):
        answer = client.get("/fail/unmapped")
    assert (answer.status, answer.body) == (500, {"error": "a message written for a user"})
    [record] = caplog.records
    assert record.getMessage() == (
        "GET /fail/{kind}: NoRow has no row in the status table of runtime.service.errors; "
        "answered 500"
    )
    assert record.exc_info is not None


def test_an_unexpected_exception_is_a_generic_500_and_a_log_line(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="runtime.service.http"):
        answer = client.get("/fail/bug")
    assert (answer.status, answer.body) == (
        500,
        {"error": "internal error in GET /fail/{kind}; the server's log has the details"},
    )
    [record] = caplog.records
    assert record.getMessage() == "GET /fail/{kind} failed"
    assert record.exc_info is not None and record.exc_info[0] is KeyError


@pytest.mark.parametrize(
    ("raw", "status", "body"),
    [
        (b'{"name": "x", "items": [{"n": 1}, {"n": "2"}]}', 422,
         {"error": "invalid body: Expected `int`, got `str` - at `$.items[1].n`",
          "field": "$.items[1].n"}),
        (b'{"name": "x", "items": [{"n": 1, "m": 2}]}', 422,
         {"error": "invalid body: Object contains unknown field `m` - at `$.items[0]`",
          "field": "$.items[0].m"}),
        (b'{"items": []}', 422,
         {"error": "invalid body: Object missing required field `name`", "field": "$.name"}),
        (b'{"name": ', 400,
         {"error": "the body is not valid JSON: Input data was truncated", "field": "$"}),
        (b'{"name": "x"}', 200, {"name": "x", "items": []}),
    ],
)  # fmt: skip
def test_a_bad_body_names_the_real_field_path(
    client: Client, raw: bytes, status: int, body: object
) -> None:
    answer = client.post("/echo", raw=raw)
    assert (answer.status, answer.body) == (status, body)


def test_one_body_limit_with_or_without_a_declared_length(client: Client) -> None:
    fits = b'{"name": "x"}'.ljust(MAX_BODY_BYTES)
    assert client.post("/echo", raw=fits).status == 200
    over = fits + b" "
    declared = client.post("/echo", raw=over)
    assert (declared.status, declared.body) == (
        413,
        {"error": "the request body is 262145 bytes; the limit is 262144 bytes"},
    )
    chunks = (over[i : i + 65536] for i in range(0, len(over), 65536))
    streamed = urllib3.request("POST", client.base_url + "/echo", body=chunks, retries=False)
    assert (streamed.status, streamed.json()) == (
        413,
        {"error": "the request body exceeds the limit of 262144 bytes"},
    )


def test_no_route_and_wrong_method_get_the_same_error_body(client: Client) -> None:
    long = "/nothing/" + "x" * 100
    missing = client.get(long)
    assert (missing.status, missing.body) == (
        404,
        {"error": f"no route '{long[:57]}...'; GET /openapi.json lists the routes"},
    )
    wrong = client.request("DELETE", "/public")
    assert (wrong.status, wrong.body) == (405, {"error": "Method Not Allowed"})
    assert sorted(wrong.headers["allow"].split(", ")) == ["GET", "HEAD"]


def test_metrics_count_and_time_every_route_by_its_template(client: Client) -> None:
    for hive_id in ("x", "y", "z"):
        assert client.get(f"/hives/{hive_id}").status == 404
    client.post("/token", {}, token="")
    client.get("/nowhere/at/all")
    client.request("PATCH", "/public")
    text = client.get("/metrics").body
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line[:1] != "#")
    requests = 'runtime_http_requests_total{{method="{}",route="{}",status="{}"}}'
    assert samples[requests.format("GET", "/hives/{hive_id}", 404)] == "3.0"
    assert samples[requests.format("POST", "/token", 401)] == "1.0"
    assert samples[requests.format("GET", "unmatched", 404)] == "1.0"
    assert samples[requests.format("PATCH", "unmatched", 405)] == "1.0"
    seconds = 'runtime_http_request_seconds_count{method="GET",route="/hives/{hive_id}"}'
    assert samples[seconds] == "3.0"
    templates = {e.path for e in TABLE} | {"/openapi.json", "/metrics", "unmatched"}
    assert set(re.findall(r'route="([^"]*)"', text)) <= templates  # never a raw path


def test_a_client_that_leaves_mid_body_is_not_a_server_failure(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = client.base_url.removeprefix("http://").split(":")
    head = f"POST /echo HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\n\r\n"
    with caplog.at_level(logging.ERROR), socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode() + b'{"name": ')
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1024)
    text = client.get("/metrics").body
    assert 'runtime_http_requests_total{method="POST",route="/echo",status="400"} 1.0' in text
    assert caplog.records == []
