"""The assembled web app, served for real over loopback: open on loopback, the bearer token
(or Basic with the token as the password) required everywhere else but the health probes,
and a 404 in the format of what was asked for."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
from helpers.db import new_store

from auditor.operations.settings import ServerConfig
from auditor.web.dashboard import create_dashboard
from auditor.web.server import WebServer

TOKEN = "dash-token-1234567890"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_token_guards_every_path_but_the_probes(tmp_path: Path) -> None:
    app = create_dashboard(new_store(f"sqlite:///{tmp_path / 'a.db'}"), token=TOKEN)
    async with (
        WebServer(app, ServerConfig(port=0)) as server,
        httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=20) as client,
    ):
        for path in ("/healthz", "/readyz"):
            assert (await client.get(path)).status_code == 200
        for path in ("/", "/metrics", "/api/overview", "/api/openapi.json", "/static/app.css"):
            refused = await client.get(path)
            assert refused.status_code == 401, path
            challenges = refused.headers.get_list("www-authenticate")
            assert any(c.startswith("Basic") for c in challenges)  # a browser prompts
            assert TOKEN not in refused.text
            wrong = await client.get(path, headers={"Authorization": "Bearer not-the-token"})
            assert wrong.status_code == 401, path
            ok = await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert ok.status_code == 200, path
            assert TOKEN not in ok.text
            via_basic = await client.get(path, headers={"Authorization": basic("ops", TOKEN)})
            assert via_basic.status_code == 200, path


async def test_no_token_means_open_on_loopback(tmp_path: Path) -> None:
    store = new_store(f"sqlite:///{tmp_path / 'a.db'}")
    async with (
        WebServer(create_dashboard(store), ServerConfig(port=0)) as server,
        httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=20) as client,
    ):
        assert (await client.get("/api/overview")).status_code == 200
        assert (await client.get("/")).status_code == 200


async def test_unknown_paths_answer_404_in_their_own_format(tmp_path: Path) -> None:
    store = new_store(f"sqlite:///{tmp_path / 'a.db'}")
    async with (
        WebServer(create_dashboard(store), ServerConfig(port=0)) as server,
        httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=20) as client,
    ):
        page = await client.get("/no/such/page")
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert "<html" in page.text.lower()
        for path in ("/api/no-such-endpoint", "/api/rounds/a%0Ab"):
            api = await client.get(path)
            assert api.status_code == 404, path
            assert api.json() == {"detail": "Not Found"}
