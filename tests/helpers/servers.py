"""Real servers on 127.0.0.1 for the tests: plain HTTP handlers on a thread (providers, webhook
receivers) and an ASGI app served by the auditor's own `WebServer` (uvicorn)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from starlette.types import ASGIApp

from auditor.operations.settings import ServerConfig
from auditor.web.server import WebServer
from helpers.openai import completion


class QuietHandler(BaseHTTPRequestHandler):
    """An HTTP/1.1 handler that keeps no access log, with the two halves of an exchange."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        return None

    def body(self) -> bytes:
        """The request's body, read whole."""
        return self.rfile.read(int(self.headers.get("content-length", 0)))

    def lower_headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def reply(
        self,
        status: int,
        data: bytes,
        content_type: str | None = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send a whole answer with its length."""
        self.send_response(status)
        if content_type:
            self.send_header("content-type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class LoopbackProvider:
    """A real HTTP server on 127.0.0.1 (a free port, or `port`) for a handler class, serving on
    a background thread inside a `with` block (or between `start()` and `stop()`); `base_url`
    is its OpenAI-style /v1 root."""

    server: ThreadingHTTPServer | None = None

    def serve(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> Self:
        server = self.server
        assert server is not None
        threading.Thread(target=lambda: server.serve_forever(0.05), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RecordingProvider(LoopbackProvider):
    """A real OpenAI-compatible HTTP server that numbers its answers and records when each
    one was completely written, so a test can tell which answers the client had received.

    `echo_key=True` answers 401 quoting the Authorization header back, as careless real
    providers do ("Incorrect API key provided: sk-...").
    """

    def __init__(self, delay_s: float = 0.0, echo_key: bool = False) -> None:
        self.delay_s = delay_s
        self.sent: list[tuple[str, float]] = []
        self.headers_seen: list[dict[str, str]] = []
        lock = threading.Lock()
        outer = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                self.body()
                outer.headers_seen.append(self.lower_headers())
                time.sleep(outer.delay_s)
                answer = f"answer-{uuid.uuid4().hex}"
                if echo_key:
                    message = f"Incorrect API key: {self.headers.get('authorization')}"
                    status, body = 401, {"error": {"message": message}}
                else:
                    usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
                    status, body = 200, completion(answer, usage=usage)
                self.reply(status, json.dumps(body).encode())
                self.wfile.flush()
                with lock:
                    outer.sent.append((answer, time.monotonic()))

        self.serve(Handler)


class BackgroundServer:
    """An ASGI app served by `WebServer` (uvicorn) on a free loopback port, from an event
    loop of its own in a daemon thread: the tests, synchronous, talk to it over HTTP."""

    def __init__(self, app: ASGIApp) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = WebServer(app, ServerConfig(host="127.0.0.1", port=0))
        self.thread = threading.Thread(target=self.loop.run_forever, name="web", daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    @property
    def url(self) -> str:
        return self.server.url
