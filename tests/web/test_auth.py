"""The bearer token's parsing and the loopback test of auth.py."""

from __future__ import annotations

import base64

import pytest

from auditor.errors import UsageError
from auditor.operations.settings import ServerConfig
from auditor.web.auth import access_token, is_loopback, presented_token

TOKEN = "dash-token-1234567890"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("auditor.internal", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (f"Bearer {TOKEN}", TOKEN),
        (f"bearer   {TOKEN} ", TOKEN),
        (basic("ops", TOKEN), TOKEN),
        (basic("", TOKEN), TOKEN),
        (basic("ops", "a:b"), "a:b"),  # only the first colon separates the user
        ("Bearer", None),
        (basic("ops", ""), None),
        ("Basic not-base64!!", None),
        ("Basic " + base64.b64encode(b"no-colon").decode(), None),
        ("Digest abc", None),
        ("", None),
    ],
)
def test_presented_token(header: str, token: str | None) -> None:
    assert presented_token(header) == token


def test_access_token_required_off_loopback() -> None:
    off = ServerConfig(host="0.0.0.0", token_env="DASH_TOKEN")
    with pytest.raises(UsageError, match="DASH_TOKEN"):
        access_token(off, {})
    with pytest.raises(UsageError):
        access_token(off, {"DASH_TOKEN": "   "})  # blank is no token
    assert access_token(off, {"DASH_TOKEN": TOKEN}) == TOKEN
    on = ServerConfig(host="127.0.0.1", token_env="DASH_TOKEN")
    assert access_token(on, {}) is None
    assert access_token(on, {"DASH_TOKEN": TOKEN}) == TOKEN  # set: enforced on loopback too
