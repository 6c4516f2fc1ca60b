"""Access to the web app: open on loopback, a bearer token everywhere else.

The token comes from an environment variable (named by `server.token_env`) and is compared in
constant time. Browsers cannot send a bearer header by themselves, so HTTP Basic with the
token as the password is accepted too: a 401 asks the browser to prompt for it. The health
and readiness probes stay open, since orchestrators probe them without credentials and they
reveal nothing.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
from collections.abc import Mapping

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from auditor.errors import UsageError
from auditor.operations.settings import ServerConfig

OPEN_PATHS = frozenset({"/healthz", "/readyz"})


def access_token(server: ServerConfig, environ: Mapping[str, str] = os.environ) -> str | None:
    """The bearer token clients must send, from `server.token_env`; None means open access,
    which only a loopback address may have."""
    token = environ.get(server.token_env, "").strip() or None
    if token is None and not is_loopback(server.host):
        raise UsageError(
            f"{server.host} is reachable from other machines: set {server.token_env} to the "
            "bearer token its clients must send, or bind to 127.0.0.1"
        )
    return token


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def presented_token(authorization: str) -> str | None:
    """The token in an `Authorization` header: `Bearer <token>`, or Basic with the token as
    the password (any user name)."""
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep and password else None
    return None


class TokenAuth:
    """ASGI middleware: every HTTP request but the open probes must carry the token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("an empty token would let anyone in")
        self.app = app
        self._token = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {"detail": "authentication required: send `Authorization: Bearer <token>`"},
            status_code=401,
        )
        for challenge in (b'Basic realm="auditor"', b'Bearer realm="auditor"'):
            response.raw_headers.append((b"www-authenticate", challenge))
        await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                token = presented_token(value.decode("latin-1"))
                if token is not None and hmac.compare_digest(token.encode("utf-8"), self._token):
                    return True
        return False
