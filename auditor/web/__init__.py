"""The daemon's HTTP side: one Starlette app (health, readiness, Prometheus metrics) that the
dashboard extends with its own routes, served by uvicorn inside the daemon's event loop."""

from auditor.web.app import create_app
from auditor.web.server import WebServer

__all__ = ["WebServer", "create_app"]
