"""`auditor serve`: the read-only dashboard and JSON API over a results database."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from auditor.cli.common import ConfigOpt, DatabaseOpt, app, print_line, web_token
from auditor.config import DEFAULT_CONFIG, load_config
from auditor.errors import UsageError
from auditor.operations.settings import ServerConfig
from auditor.storage.db import ensure_schema, make_engine
from auditor.storage.repository import Store


@app.command()
def serve(
    config_path: ConfigOpt = DEFAULT_CONFIG,
    database: DatabaseOpt = None,
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default: the config's, or 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port (default: the config's, 8080).")
    ] = None,
) -> None:
    """Serve the dashboard and its JSON API (/api, schema at /api/openapi.json), read-only."""
    from auditor.web.auth import access_token
    from auditor.web.dashboard import create_dashboard
    from auditor.web.server import WebServer

    server, url, config = ServerConfig(), database, None
    if config_path.exists() or config_path != DEFAULT_CONFIG:
        config = load_config(config_path)
        server, url = config.server, database or config.database
    if url is None:
        raise UsageError(f"{config_path}: file not found (pass -c FILE or --database URL)")
    overrides = {"host": host, "port": port}
    server = server.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    if config is not None and host is None:
        token = web_token(config, config_path)
    else:
        try:
            token = access_token(server)
        except UsageError as exc:
            raise UsageError(f"--host: {exc}") from None
    store = Store(_existing_engine(url))

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        web = WebServer(create_dashboard(store, token=token), server)
        try:
            await web.start()
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {server.host}:{server.port}: {exc.strerror or exc}"
            ) from None
        try:
            access = "bearer token required" if token else "no token: loopback only"
            print_line(f"serving {web.url}/ ({access}); Ctrl-C stops")
            sys.stdout.flush()  # a supervisor or a test waits for this line on a pipe
            await stop.wait()
        finally:
            await web.stop()

    asyncio.run(run())


def _existing_engine(url: str) -> Engine:
    """The engine of a database that exists: serving must not create a SQLite file by a typo."""
    parsed = make_url(url) if "://" in url else None
    if parsed is not None and parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if path and path != ":memory:" and not Path(path).expanduser().exists():
            raise UsageError(f"database: {path}: no such file (run `auditor run` first)")
    engine = make_engine(url)
    ensure_schema(engine)  # an empty database gets the schema; an outdated one is refused
    return engine
