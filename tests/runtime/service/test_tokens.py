"""Bearer tokens: the token file, the caller a header names, and the binding to a hive."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import RegistryError
from runtime.service.tokens import Forbidden, Tokens, Unauthorized, check_admin, check_hive


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("t1 a\nt1 b\n", "line 2: the token is already listed above; keep one line"),
        ("t1 bad/hive\n", "line 1: hive id 'bad/hive' is not a valid name"),
        ("# only a comment\n", None),
    ],
)
def test_token_file_mistakes_are_named(tmp_path: Path, text: str, message: str | None) -> None:
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(RegistryError) as caught:
        Tokens.from_file(path)
    if message is None:
        assert str(caught.value) == f"token file {path}: no tokens in it; add one token per line"
    else:
        assert str(caught.value).startswith(f"token file {path}, {message}")


def test_a_token_file_names_the_caller_of_each_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# admins first\nroot-token\n\nhive-token  a  # the hive a\n")
    tokens = Tokens.from_file(path)
    assert tokens.caller("Bearer root-token") is None
    assert tokens.caller("bearer  hive-token ") == "a"
    for header in (None, "", "Bearer ", "Basic hive-token", "Bearer hive"):
        with pytest.raises(Unauthorized):
            tokens.caller(header)


def test_the_binding_rules() -> None:
    check_admin(None)
    check_hive(None, "a")
    check_hive("a", "a")
    check_hive("a", None)
    with pytest.raises(Forbidden, match=r"^this token is bound to hive 'a'; this change needs"):
        check_admin("a")
    with pytest.raises(Forbidden, match=r"^this token is bound to hive 'a' and cannot speak for "):
        check_hive("a", "b")
