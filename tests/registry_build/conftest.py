"""The destinations that publish, commit and maintenance tests run against."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.storage.local import LocalStore
from runtime.storage.s3 import S3Store
from runtime.storage.store import Store


@pytest.fixture(params=["s3", "directory"])
def dest(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """A fresh destination: a moto bucket prefix over HTTP, or a directory."""
    if request.param == "directory":
        return LocalStore(tmp_path / "published")
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Store.from_url(f"s3://{bucket}/registry", endpoint_url=endpoint)
