"""Keys made once per session (tests that change them work on a copy), and the sites."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.trust import Keys, Site, make_keys, open_site


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """A root key, an online key and root version 1, shared by every test (read only)."""
    return make_keys(tmp_path_factory.mktemp("trust") / "keys")


@pytest.fixture(params=["dir", "s3", "http"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Site:
    """An empty registry in a directory, in moto's S3, and in a directory served over HTTP."""
    return open_site(request.param, tmp_path, request)


@pytest.fixture(params=["dir", "s3"])
def writable(request: pytest.FixtureRequest, tmp_path: Path) -> Site:
    """An empty registry where a client may write too (a directory, moto's S3)."""
    return open_site(request.param, tmp_path, request)
