"""The daemon's ASGI app: `/healthz`, `/readyz` and `/metrics`.

The dashboard extends the same app: pass its routes (or a `Mount`) as `routes`, or add them
later with `app.router.routes.append(...)` / `app.mount(...)`. Handlers reach the store as
`request.app.state.store`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client.exposition import choose_encoder
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from auditor.operations.metrics import REGISTRY
from auditor.storage.repository import Store
from auditor.web import dbmetrics
from auditor.web.offload import SingleFlight

DB_TIMEOUT_S = 5.0  # readiness and scrape-time queries: slower than this counts as down


@dataclass
class WebState:
    """What the handlers share, kept on `app.state.web`."""

    store: Store
    is_ready: Callable[[], bool] | None
    ping: SingleFlight[None]
    read_db: SingleFlight[dbmetrics.DatabaseState]
    db_timeout_s: float = DB_TIMEOUT_S


def create_app(
    store: Store,
    is_ready: Callable[[], bool] | None = None,
    *,
    routes: Sequence[BaseRoute] = (),
    db_timeout_s: float = DB_TIMEOUT_S,
) -> Starlette:
    """`is_ready` answers "is the scheduler running?" (None: nothing to wait for)."""

    def ping() -> None:
        with store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/readyz", readyz, methods=["GET", "HEAD"]),
            Route("/metrics", metrics, methods=["GET"]),
            *routes,
        ]
    )
    app.state.store = store
    app.state.web = WebState(
        store=store,
        is_ready=is_ready,
        ping=SingleFlight("ping", ping),
        read_db=SingleFlight("metrics", lambda: dbmetrics.read_state(store)),
        db_timeout_s=db_timeout_s,
    )
    return app


async def healthz(_request: Request) -> Response:
    """Alive: the event loop answers. Deliberately checks nothing else, so a database outage
    makes the daemon unready (taken out of rotation), never restarted."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    web: WebState = request.app.state.web
    checks: dict[str, str] = {}
    try:
        await web.ping.run(web.db_timeout_s)
        checks["database"] = "ok"
    except TimeoutError:
        checks["database"] = f"no answer to SELECT 1 within {web.db_timeout_s:g}s"
    except Exception as exc:
        checks["database"] = _one_line(exc)
    if web.is_ready is None:
        checks["scheduler"] = "ok"
    else:
        try:
            checks["scheduler"] = "ok" if web.is_ready() else "not running"
        except Exception as exc:
            checks["scheduler"] = _one_line(exc)
    ready = all(v == "ok" for v in checks.values())
    failing = [f"{name}: {v}" for name, v in checks.items() if v != "ok"]
    body: dict[str, object] = {"status": "ready" if ready else "unavailable", "checks": checks}
    if failing:
        body["reason"] = "; ".join(failing)
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    web: WebState = request.app.state.web
    try:
        state: dbmetrics.DatabaseState | None = await web.read_db.run(web.db_timeout_s)
    except Exception:  # an unreachable database must not cost the process's own metrics
        state = None
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    body = encoder(dbmetrics.Combined([REGISTRY], dbmetrics.families(state)))
    return Response(body, media_type=content_type)


def _one_line(exc: BaseException) -> str:
    """An error as one short line: the exception type and the first line of its message (a
    driver's message names the host and port, never the password)."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [""])[0]
    return f"{type(orig).__name__}: {first}"[:300]
