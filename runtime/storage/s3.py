"""The storage protocol on S3 (and S3-compatible stores: MinIO, R2, moto), via boto3.

This is the only module that imports boto3; :func:`runtime.storage.location.open_store` imports
it for ``s3://`` locations only, so a device that reads from a directory or over HTTP needs no
boto3.

- Keys live under ``s3://<bucket>/<prefix>/``; ``location`` is that URL.
- Conditions: ``PutMode.CREATE`` sends ``If-None-Match: *``, ``PutMode.MATCH`` sends
  ``If-Match: "<etag>"``. A failed condition (412, or 409 ``ConditionalRequestConflict`` when a
  concurrent write raced ours) raises :class:`PreconditionFailed`; a 404 on ``If-Match`` means the
  key is gone and raises :class:`KeyNotFound`. A conditional read (``get(key,
  if_none_match=etag)``) sends GetObject's ``IfNoneMatch``; S3's 304 raises
  :class:`~runtime.storage.store.NotModified`. No answer (endpoint unreachable, timeouts) or a 5xx
  that outlasts the retries raises :class:`StoreUnreachable`; anything else :class:`StoreError`,
  naming the bucket, the key and what to check.
- Every write sends ``ChecksumAlgorithm=SHA256`` so S3 verifies what it stores, and the
  Content-Type and Cache-Control of the key's object class (:func:`content_headers`).
- Files above ``multipart_threshold`` go up as a multipart upload with parts sent in parallel. We
  drive the parts ourselves rather than through ``s3transfer``, because ``s3transfer`` does not pass
  ``IfNoneMatch``/``IfMatch`` on to ``CompleteMultipartUpload``, where S3 checks the condition.
- Etags are S3's ETag without the quotes (the MD5 of the bytes for single-part uploads).
- Credentials come from the standard chain (env, profile, SSO, instance or OIDC role); the
  endpoint from ``endpoint_url``, else ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3`` (botocore reads
  those itself), else AWS. An endpoint URL may carry ``user:password@`` (a proxy's, say): every
  message made here goes through :func:`runtime.storage.location.redact`, since botocore's own
  texts quote the endpoint URL whole.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from runtime.errors import KeyNotFound, PreconditionFailed, StoreError
from runtime.storage.location import Location, parse_location, redact
from runtime.storage.store import (
    NotModified,
    ObjectInfo,
    PutMode,
    StoreUnreachable,
    check_key,
    check_mode,
    content_headers,
    too_large,
)

MiB = 1 << 20
MULTIPART_THRESHOLD = 64 * MiB
PART_SIZE = 16 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's floor for every part but the last


def make_client(endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client: standard retries, a connection pool for parallel parts.

    Path-style addressing when an endpoint is configured, since MinIO and moto serve buckets
    under the path rather than as host names.
    """
    custom = (
        endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=32,
        s3={"addressing_style": "path"} if custom else {},
    )
    try:
        return boto3.client("s3", endpoint_url=endpoint_url, config=config)
    except ValueError as exc:  # botocore: "Invalid endpoint: <the URL, credentials and all>"
        raise StoreError(
            f"{redact(str(exc))}: pass --endpoint-url (or set AWS_ENDPOINT_URL) to a URL like "
            "http://HOST:PORT"
        ) from None


def open_location(location: Location, endpoint_url: str | None = None) -> S3Store:
    """The store of an ``s3://BUCKET/PREFIX`` location, with a client from the standard
    credential chain (and ``endpoint_url``, for S3-compatible services)."""
    bucket, _, prefix = location.rest.partition("/")
    return S3Store(make_client(endpoint_url), bucket, prefix)


class S3Store:
    """A bucket prefix as a registry location; the boto3 client is injected (or made by
    :meth:`from_url`)."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
        max_workers: int = 8,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes, got {part_size}")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.location = redact(f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}")
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.max_workers = max_workers
        self.requests = 0  # HTTP requests sent, retries included (publish reports them)
        client.meta.events.register("before-send.s3", self._count)

    def _count(self, **_: Any) -> None:
        self.requests += 1

    @classmethod
    def from_url(cls, url: str, endpoint_url: str | None = None) -> S3Store:
        """A store for ``s3://bucket/prefix`` with a client from the standard credential chain."""
        location = parse_location(url)
        if location.scheme != "s3":
            raise StoreError(f"{location.shown!r} is not an S3 location: write s3://BUCKET/PREFIX")
        return open_location(location, endpoint_url)

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str) -> str:
        """``s3://bucket/prefix/key`` for a message; ``key`` may be a listing's prefix (empty,
        or ending in "/"), so it is not checked as a key here."""
        return (
            f"s3://{self.bucket}/{self.prefix}/{key}"
            if self.prefix
            else f"s3://{self.bucket}/{key}"
        )

    def _relative(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def get(
        self, key: str, if_none_match: str | None = None, limit: int | None = None
    ) -> tuple[bytes, str]:
        """The object's bytes and etag; :class:`NotModified` when its etag is ``if_none_match``
        (S3 answers 304 without the body); :class:`ObjectTooLarge`, unread, past ``limit``."""
        condition = {"IfNoneMatch": f'"{if_none_match}"'} if if_none_match else {}
        with self._errors(key, "GET"):
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key), **condition)
            if limit is not None and response["ContentLength"] > limit:
                response["Body"].close()
                raise too_large(key, self.location, limit)
            return response["Body"].read(), _etag(response)

    def head(self, key: str) -> ObjectInfo:
        """Size, etag and modification time (one HEAD request)."""
        with self._errors(key, "HEAD"):
            r = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        return ObjectInfo(key, r["ContentLength"], _etag(r), r["LastModified"].timestamp())

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key, with etags (one request
        per 1000 keys)."""
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors(prefix, "LIST"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Contents", []):
                    key = self._relative(item["Key"])
                    etag = item["ETag"].strip('"')
                    yield ObjectInfo(key, item["Size"], etag, item["LastModified"].timestamp())

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        """A streaming reader over the object's bytes (nothing is read until asked for)."""
        with self._errors(key, "GET"):
            body = self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"]
        try:
            yield cast(BinaryIO, body)
        finally:
            body.close()

    def delete(self, key: str) -> None:
        """Remove the object; S3 deletes missing keys silently, so a HEAD checks first."""
        self.head(key)
        with self._errors(key, "DELETE"):
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))

    def put(
        self, key: str, data: bytes, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        """Write ``data`` under ``key`` with the semantics of ``mode``; returns the new etag."""
        check_mode(mode, etag)
        with self._errors(key, "PUT", mode):
            response = self.client.put_object(
                Body=data, **self._write_args(key), **_condition(mode, etag)
            )
        return _etag(response)

    def put_file(
        self, key: str, path: Path, mode: PutMode = PutMode.OVERWRITE, etag: str | None = None
    ) -> str:
        """Upload the file at ``path`` without reading it into memory; multipart when large."""
        check_mode(mode, etag)
        size = Path(path).stat().st_size
        if size > self.multipart_threshold:
            return self._multipart(key, Path(path), size, _condition(mode, etag), mode)
        with self._errors(key, "PUT", mode), open(path, "rb") as body:
            response = self.client.put_object(
                Body=body, **self._write_args(key), **_condition(mode, etag)
            )
        return _etag(response)

    def _write_args(self, key: str) -> dict[str, str]:
        content_type, cache_control = content_headers(key)
        return {
            "Bucket": self.bucket,
            "Key": self._full(key),
            "ContentType": content_type,
            "CacheControl": cache_control,
            "ChecksumAlgorithm": "SHA256",
        }

    def _multipart(
        self, key: str, path: Path, size: int, condition: dict[str, str], mode: PutMode
    ) -> str:
        with self._errors(key, "CreateMultipartUpload"):
            upload_id = self.client.create_multipart_upload(**self._write_args(key))["UploadId"]
        try:
            numbers = range(1, -(-size // self.part_size) + 1)
            with ThreadPoolExecutor(self.max_workers) as pool:
                parts = list(pool.map(lambda n: self._part(key, path, upload_id, n), numbers))
            with self._errors(key, "CompleteMultipartUpload", mode):
                response = self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self._full(key),
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    **condition,
                )
        except BaseException:
            # An abandoned upload is invisible but billed: abort it, never mask the real error.
            with contextlib.suppress(ClientError, BotoCoreError):
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self._full(key), UploadId=upload_id
                )
            raise
        return _etag(response)

    def _part(self, key: str, path: Path, upload_id: str, number: int) -> dict[str, Any]:
        with open(path, "rb") as handle:
            handle.seek((number - 1) * self.part_size)
            chunk = handle.read(self.part_size)
        with self._errors(key, f"UploadPart {number}"):
            response = self.client.upload_part(
                Bucket=self.bucket,
                Key=self._full(key),
                UploadId=upload_id,
                PartNumber=number,
                Body=chunk,
                ChecksumAlgorithm="SHA256",
            )
        return {
            "PartNumber": number,
            "ETag": response["ETag"],
            "ChecksumSHA256": response["ChecksumSHA256"],
        }

    @contextlib.contextmanager
    def _errors(self, key: str, action: str, mode: PutMode | None = None) -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            self._raise_client_error(exc, key, action, mode)
        except NoCredentialsError:
            raise StoreError(
                f"{action} {self._where(key)}: no AWS credentials found; set "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run where a role applies"
            ) from None
        except BotoCoreError as exc:  # no answer: endpoint unreachable, timeouts
            raise StoreUnreachable(
                f"{action} {self._where(key)} failed: {redact(str(exc))}; "
                "check the endpoint (--endpoint-url or AWS_ENDPOINT_URL) and the network"
            ) from None

    def _raise_client_error(
        self, exc: ClientError, key: str, action: str, mode: PutMode | None
    ) -> NoReturn:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        where = self._where(key)
        if status == 304:
            raise NotModified(key) from None
        if status == 412 or code == "PreconditionFailed" or code == "ConditionalRequestConflict":
            raise PreconditionFailed(_condition_message(key, self.location, mode)) from None
        if code == "NoSuchBucket":
            raise StoreError(
                f"{action} {where}: bucket {self.bucket!r} does not exist at this endpoint; "
                "create it or check the bucket name and --endpoint-url"
            ) from None
        if code in ("NoSuchKey", "404", "NotFound") or status == 404:
            gone = mode is PutMode.MATCH
            raise KeyNotFound(
                f"{key} is gone from {self.location}"
                if gone
                else f"{key} not found in {self.location}"
            ) from None
        if status == 403 or code == "AccessDenied":
            raise StoreError(
                f"{action} {where}: access denied; check the credentials in use and that the "
                "bucket policy or role allows this action"
            ) from None
        message = redact(str(error.get("Message", "") or exc))
        failed = StoreUnreachable if status >= 500 else StoreError  # 5xx outlasted the retries
        raise failed(
            f"{action} {where} failed: {code or status} {message}; check the bucket, the "
            "credentials and the endpoint"
        ) from None


def _condition(mode: PutMode, etag: str | None) -> dict[str, str]:
    if mode is PutMode.CREATE:
        return {"IfNoneMatch": "*"}
    if mode is PutMode.MATCH:
        return {"IfMatch": f'"{etag}"'}
    return {}


def _condition_message(key: str, location: str, mode: PutMode | None) -> str:
    if mode is PutMode.CREATE:
        return f"{key} already exists in {location}"
    return f"{key} in {location} changed since it was read"


def _etag(response: dict[str, Any]) -> str:
    return str(response.get("ETag", "")).strip('"')
