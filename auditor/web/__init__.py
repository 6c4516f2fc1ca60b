"""The daemon's HTTP side: one Starlette app (health, readiness, Prometheus metrics) that the
dashboard extends with its own routes (`auditor.web.app.create_app`), served by uvicorn inside
the daemon's event loop (`auditor.web.server.WebServer`). Nothing is imported here, so a
module of the package loads only what it needs."""
