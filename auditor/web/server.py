"""Serve an ASGI app with uvicorn inside an event loop that is already running (the daemon's).

The socket is bound here, before uvicorn starts, so that a port in use is an `OSError` the
caller can report (uvicorn would `sys.exit` from inside its task), and port 0 works: the
bound port is `server.port`. Signals stay the daemon's: uvicorn's own handlers are not
installed, and the daemon stops the server with `shutdown()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from types import TracebackType

import structlog
import uvicorn
from starlette.types import ASGIApp

from auditor.operations.settings import ServerConfig

log = structlog.get_logger(__name__)

STARTUP_TIMEOUT_S = 10.0


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server inside a process that owns its signals (the daemon drains its rounds
    first on SIGTERM and SIGINT; the demo fleet stops all its members at once)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on host:port (port 0: any free port)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class WebServer:
    """`await server.start()` (returns the bound port), then `await server.shutdown()` (or
    its alias `stop()`); or `async with WebServer(app, ServerConfig(port=0)) as server: ...`.
    """

    def __init__(
        self,
        app: ASGIApp,
        config: ServerConfig | None = None,
        *,
        graceful_timeout_s: float = 5.0,
    ) -> None:
        config = config or ServerConfig()
        self.app = app
        self.host = config.host
        self.requested_port = config.port
        self.graceful_timeout_s = graceful_timeout_s
        self.port: int | None = None
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> int:
        """Bind, start serving in a task of the running loop, and return the bound port.
        Raises `OSError` when the address cannot be bound (e.g. the port is in use)."""
        if self._task is not None:
            raise RuntimeError("the server is already started")
        self._sock = bind(self.host, self.requested_port)
        self.port = self._sock.getsockname()[1]
        grace_s = self.graceful_timeout_s  # uvicorn hints int, and hands it to asyncio.timeout
        config = uvicorn.Config(
            self.app,
            lifespan="off",  # nothing to set up; a lifespan failure would sys.exit
            log_config=None,  # the auditor's logging stays as configured (JSON lines...)
            access_log=False,  # probes every few seconds are noise, not events
            timeout_graceful_shutdown=grace_s,  # type: ignore[arg-type]  # a float works
        )
        self._server = EmbeddedServer(config)
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._sock]), name="auditor-web"
        )
        deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise RuntimeError("the HTTP server stopped while starting")
            if asyncio.get_running_loop().time() > deadline:
                await self.shutdown()
                raise RuntimeError(f"the HTTP server did not start in {STARTUP_TIMEOUT_S:g}s")
            await asyncio.sleep(0.01)
        return self.port

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def shutdown(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the graceful timeout), stop.
        Safe to call twice, or when never started."""
        server, task = self._server, self._task
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), self.graceful_timeout_s + 2.0)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except Exception as exc:  # it had crashed: stopping is done all the same
            log.warning("web.server_failed", error=repr(exc))
        finally:
            if self._sock is not None:
                self._sock.close()
            self._server = self._task = self._sock = None

    stop = shutdown

    async def __aenter__(self) -> WebServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()
