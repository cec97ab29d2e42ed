"""Locations: one parse, one table of schemes, one redaction; backends imported on demand."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.errors import RegistryError
from runtime.storage.http import HttpStore
from runtime.storage.local import LocalStore
from runtime.storage.location import SCHEMES, LocationError, open_store, parse_location, redact
from runtime.storage.memory import MemoryStore


@pytest.mark.parametrize(
    ("text", "scheme", "shown", "address"),
    [
        ("/srv/registry/", "file", "/srv/registry", "/srv/registry"),
        ("file:///srv/registry", "file", "/srv/registry", "/srv/registry"),
        ("http://host:8000/reg/", "http", "http://host:8000/reg", "http://host:8000/reg"),
        ("HTTPS://ci:tok@host/reg", "https", "https://host/reg", "https://ci:tok@host/reg"),
        ("s3://bucket/a/b/", "s3", "s3://bucket/a/b", "s3://bucket/a/b"),
        ("memory://scratch", "memory", "memory://scratch", "memory://scratch"),
    ],
)
def test_a_location_is_parsed_once_into_its_normal_form(
    text: str, scheme: str, shown: str, address: str
) -> None:
    location = parse_location(text)
    assert (location.scheme, location.shown, location.address) == (scheme, shown, address)
    assert str(location) == shown
    assert "tok" not in repr(location)


def test_a_directory_is_absolute_relative_to_the_base_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert parse_location("site").directory == tmp_path / "site"
    assert parse_location("../up", base=tmp_path / "a").directory == tmp_path / "up"
    assert parse_location("~/reg").directory == tmp_path / "home" / "reg"
    assert parse_location("https://host/x").directory is None
    assert parse_location("memory://").directory is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("s3://", "'s3://' names no host or bucket: write s3://BUCKET/PREFIX"),
        ("https:///", "'https:///' names no host or bucket: write https://HOST/PATH"),
        (
            "gs://u:secret@b/p",
            "'gs://b/p' is not a registry location: write a directory or one of file://DIR, "
            "http://HOST/PATH, https://HOST/PATH, s3://BUCKET/PREFIX, memory://",
        ),
    ],
)
def test_what_no_backend_opens_is_refused_in_one_line(text: str, message: str) -> None:
    with pytest.raises(LocationError) as caught:
        parse_location(text)
    assert str(caught.value) == message
    assert isinstance(caught.value, RegistryError)


@pytest.mark.parametrize(
    ("location", "kind"),
    [
        ("memory://", MemoryStore),
        ("file:///tmp/x", LocalStore),
        ("/tmp/y", LocalStore),
        ("http://127.0.0.1:9/reg", HttpStore),
        ("https://ci:tok@example.org", HttpStore),
    ],
)
def test_open_store_picks_the_backend_from_the_table(location: str, kind: type) -> None:
    store = open_store(location)
    assert isinstance(store, kind)
    assert store.location == parse_location(location).shown


def test_every_row_names_a_module_that_opens_a_location() -> None:
    for scheme in SCHEMES.values():
        assert callable(importlib.import_module(scheme.module).open_location), scheme


def test_only_an_s3_location_imports_boto3(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from runtime.storage.location import open_store\n"
        f"open_store({str(tmp_path)!r}); open_store('http://127.0.0.1:9'); open_store('memory://')\n"
        "assert 'boto3' not in sys.modules, 'boto3 loaded'\n"
        "open_store('s3://bucket', endpoint_url='http://127.0.0.1:9')\n"
        "print('boto3' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "True\n")


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (
            'Could not connect to the endpoint URL: "http://bob:Sup3rS3cret@127.0.0.1:9/b/k"',
            'Could not connect to the endpoint URL: "http://127.0.0.1:9/b/k"',
        ),
        ("https://ci:tok@host/reg and https://u@h2/x", "https://host/reg and https://h2/x"),
        ("https://bob:p@ss@host/x", "https://host/x"),  # an unescaped '@' in the password
        ("https://host/a@b?c=d@e", "https://host/a@b?c=d@e"),  # '@' in the path is no login
        ("s3://bucket/prefix", "s3://bucket/prefix"),
        ("/srv/registry@2", "/srv/registry@2"),
        ("HTTP://A:B@Host", "HTTP://Host"),
    ],
)
def test_redact_strips_every_login_from_a_text(text: str, redacted: str) -> None:
    assert redact(text) == redacted
