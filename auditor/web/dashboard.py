"""The whole web app: the ops endpoints, the dashboard pages and the JSON API under `/api`.

The daemon serves this app, and so does `auditor serve`: one app, whoever runs it.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount

from auditor.storage.repository import Store
from auditor.web import pages
from auditor.web.api import create_api
from auditor.web.app import create_app
from auditor.web.auth import TokenAuth


async def _not_found(request: Request, _exc: Exception) -> Response:
    """A path no route matches: JSON under /api (clients parse it), the HTML page elsewhere."""
    if request.url.path == "/api" or request.url.path.startswith("/api/"):
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    return await pages.not_found_page(request)


def create_dashboard(
    store: Store, is_ready: Callable[[], bool] | None = None, *, token: str | None = None
) -> Starlette:
    """The app over `store`; with a `token`, every path but the health probes requires it."""
    app = create_app(
        store, is_ready, routes=[*pages.routes(), Mount("/api", app=create_api(store))]
    )
    app.add_exception_handler(404, _not_found)
    if token:
        app.add_middleware(TokenAuth, token=token)
    return app
