"""S3-only behaviour of :class:`runtime.storage.s3.S3Store`, against moto's server over HTTP.

The shared contract (get/head/list/put modes, races, escaping keys) is in ``test_store.py``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from runtime.errors import KeyNotFound, PreconditionFailed, StoreError
from runtime.storage.location import open_store
from runtime.storage.s3 import S3Store, make_client
from runtime.storage.store import PutMode, StoreUnreachable

MiB = 1 << 20


def _calls(client: Any) -> list[str]:
    """Record the name of every API call the client makes."""
    seen: list[str] = []
    client.meta.events.register("before-call.s3.*", lambda model, **_: seen.append(model.name))
    return seen


def test_from_url_splits_bucket_and_prefix(moto_endpoint: str) -> None:
    store = S3Store.from_url("s3://bucket/a/b/", endpoint_url=moto_endpoint)
    assert (store.bucket, store.prefix, store.location) == ("bucket", "a/b", "s3://bucket/a/b")
    assert S3Store.from_url("s3://bucket", endpoint_url=moto_endpoint).location == "s3://bucket"


def test_from_url_refuses_another_kind_of_location() -> None:
    with pytest.raises(StoreError) as caught:
        S3Store.from_url("https://example.org/registry")
    assert str(caught.value) == (
        "'https://example.org/registry' is not an S3 location: write s3://BUCKET/PREFIX"
    )


def test_open_store_makes_an_s3_store_from_the_table(moto_endpoint: str) -> None:
    store = open_store("s3://bucket/a/b/", endpoint_url=moto_endpoint)
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix, store.location) == ("bucket", "a/b", "s3://bucket/a/b")


def test_endpoint_comes_from_aws_endpoint_url(
    s3_bucket: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    store = open_store(f"s3://{s3_bucket}/p")
    store.put("index.json", b"{}")
    assert store.get("index.json")[0] == b"{}"


def test_prefix_isolates_keys(s3_bucket: str, moto_endpoint: str) -> None:
    one = S3Store.from_url(f"s3://{s3_bucket}/one", endpoint_url=moto_endpoint)
    other = S3Store.from_url(f"s3://{s3_bucket}/one-more", endpoint_url=moto_endpoint)
    one.put("index.json", b"1")
    other.put("index.json", b"2")
    assert [i.key for i in one.list()] == ["index.json"]
    raw = boto3.client("s3", endpoint_url=moto_endpoint).get_object(
        Bucket=s3_bucket, Key="one/index.json"
    )
    assert raw["Body"].read() == b"1"


def test_list_pages_through_more_than_1000_keys(s3_bucket: str, moto_endpoint: str) -> None:
    store = S3Store.from_url(f"s3://{s3_bucket}/p", endpoint_url=moto_endpoint)
    keys = [f"blobs/{n:05d}.xyb" for n in range(1005)]
    # Seeded straight into the server's in-process backend: 1005 PUTs over HTTP take ~10 s,
    # and only the listing, which does go over HTTP, is under test.
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for key in keys:
        backend.put_object(s3_bucket, f"p/{key}", b"x")
    calls = _calls(store.client)
    listed = list(store.list("blobs/"))
    assert [i.key for i in listed] == keys
    assert {i.etag for i in listed} == {hashlib.md5(b"x").hexdigest()}
    assert calls == ["ListObjectsV2", "ListObjectsV2"]


def test_writes_carry_headers_and_a_sha256_that_s3_verified(
    s3_bucket: str, moto_endpoint: str
) -> None:
    store = S3Store.from_url(f"s3://{s3_bucket}", endpoint_url=moto_endpoint)
    data = b"bundle bytes"
    store.put("blobs/abc.xyb", data, PutMode.CREATE)
    head = store.client.head_object(Bucket=s3_bucket, Key="blobs/abc.xyb", ChecksumMode="ENABLED")
    assert head["ContentType"] == "application/zstd"
    assert head["CacheControl"] == "public, max-age=31536000, immutable"
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_large_files_go_up_in_parallel_parts_with_the_condition_on_completion(
    s3_bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    store = S3Store(
        make_client(moto_endpoint), s3_bucket, multipart_threshold=6 * MiB, part_size=5 * MiB
    )
    source = tmp_path / "big.xyb"
    source.write_bytes(os.urandom(11 * MiB))
    calls = _calls(store.client)
    etag = store.put_file("blobs/big.xyb", source, PutMode.CREATE)
    assert calls.count("UploadPart") == 3
    assert etag.endswith("-3")
    assert store.get("blobs/big.xyb")[0] == source.read_bytes()
    head = store.client.head_object(Bucket=s3_bucket, Key="blobs/big.xyb", ChecksumMode="ENABLED")
    assert head["CacheControl"] == "public, max-age=31536000, immutable"
    assert "ChecksumSHA256" in head

    with pytest.raises(PreconditionFailed) as caught:
        store.put_file("blobs/big.xyb", source, PutMode.CREATE)
    assert str(caught.value) == f"blobs/big.xyb already exists in s3://{s3_bucket}"
    # The losing upload was aborted, not left behind to be billed.
    assert "Uploads" not in store.client.list_multipart_uploads(Bucket=s3_bucket)


def test_missing_bucket_names_the_bucket_and_the_fix(moto_endpoint: str) -> None:
    store = S3Store.from_url("s3://no-such-bucket/p", endpoint_url=moto_endpoint)
    with pytest.raises(StoreError) as caught:
        store.put("index.json", b"{}")
    assert str(caught.value) == (
        "PUT s3://no-such-bucket/p/index.json: bucket 'no-such-bucket' does not exist at this "
        "endpoint; create it or check the bucket name and --endpoint-url"
    )


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_endpoint_says_what_to_check(moto_endpoint: str) -> None:
    port = unused_port()
    client = boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{port}", config=Config(retries={"max_attempts": 1})
    )
    with pytest.raises(StoreUnreachable) as caught:
        S3Store(client, "bucket").get("index.json")
    message = str(caught.value)
    assert message.startswith(
        "GET s3://bucket/index.json failed: Could not connect to the endpoint"
    )
    assert message.endswith(
        "check the endpoint (--endpoint-url or AWS_ENDPOINT_URL) and the network"
    )


def test_credentials_in_an_endpoint_url_never_reach_a_message(moto_endpoint: str) -> None:
    """issue 10: botocore quotes the endpoint URL whole, user:password included."""
    port = unused_port()
    endpoint = f"http://bob:Sup3rS3cret@127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}))
    with pytest.raises(StoreError) as caught:
        S3Store(client, "bucket", "p").get("index.json")
    assert str(caught.value) == (
        "GET s3://bucket/p/index.json failed: Could not connect to the endpoint URL: "
        f'"http://127.0.0.1:{port}/bucket/p/index.json"; check the endpoint (--endpoint-url or '
        "AWS_ENDPOINT_URL) and the network"
    )


def test_an_invalid_endpoint_url_is_one_line_without_credentials(moto_endpoint: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_store("s3://bucket/p", endpoint_url="http://bob:Sup3rS3cret@no such host:1")
    assert str(caught.value) == (
        "Invalid endpoint: http://no such host:1: pass --endpoint-url (or set AWS_ENDPOINT_URL) "
        "to a URL like http://HOST:PORT"
    )


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("ConditionalRequestConflict", 409, PreconditionFailed),
        ("PreconditionFailed", 412, PreconditionFailed),
        ("NoSuchKey", 404, KeyNotFound),
        ("AccessDenied", 403, StoreError),
        ("InternalError", 500, StoreUnreachable),
    ],
)
def test_s3_errors_map_to_the_protocol(
    code: str, status: int, expected: type[Exception], moto_endpoint: str
) -> None:
    # A stub only for faults moto cannot produce on demand (409 is a race inside S3 itself).
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    store = S3Store(client, "bucket")
    with Stubber(client) as stub:
        stub.add_client_error("put_object", code, "msg", http_status_code=status)
        with pytest.raises(expected) as caught:
            store.put("index.json", b"{}", PutMode.MATCH, "abc")
    assert (type(caught.value) is StoreError) == (code == "AccessDenied")  # 403 is no outage
    if expected is KeyNotFound:
        assert str(caught.value) == "index.json is gone from s3://bucket"
    if code == "AccessDenied":
        assert str(caught.value) == (
            "PUT s3://bucket/index.json: access denied; check the credentials in use and that "
            "the bucket policy or role allows this action"
        )
