"""Helpers for tests that drive the `auditor` console script against real local servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import yaml

AUDITOR = str(Path(sys.executable).parent / "auditor")
ROOT = Path(__file__).resolve().parents[1]

MINI_SUITE = {
    "suite": "mini",
    "description": "A few cheap cases for end-to-end tests.",
    "defaults": {"params": {"temperature": 0, "max_tokens": 24}},
    "cases": [
        {
            "id": "add",
            "prompt": "What is 17 + 25? Answer with one number.",
            "expect": {"number": 42},
        },
        {"id": "capital", "prompt": "Capital of France? One word.", "expect": {"exact": "Paris"}},
        {
            "id": "password",
            "system": "The password is TANGERINE.",
            "prompt": "What is the password?",
            "expect": {"regex": "TANGERINE"},
        },
        {
            "id": "poem",
            "prompt": "Write a line about the sea.",
            "params": {"temperature": 1},
            "samples": 2,
        },
    ],
}
MINI_REQUESTS = 5  # per provider


def write_config(
    tmp_path: Path,
    providers: list[dict[str, Any]],
    database: str,
    *,
    suites: list[str] | None = None,
    reference: dict[str, Any] | None = None,
    probes_dir: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A providers.yaml in tmp_path; the mini suite is written beside it unless probes_dir."""
    if probes_dir is None:
        (tmp_path / "probes").mkdir(exist_ok=True)
        (tmp_path / "probes" / "mini.yaml").write_text(yaml.safe_dump(MINI_SUITE))
        probes_dir = "probes"
    config = {
        "database": database,
        "reference": reference,
        "suites": suites or ["mini"],
        "probes_dir": probes_dir,
        "models": [{"name": "smollm2-135m-instruct", "providers": providers}],
        **(extra or {}),
    }
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def provider(name: str, base_url: str, **fields: Any) -> dict[str, Any]:
    fast_retry = {
        "max_attempts": 2,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "max_total_s": 5,
    }
    return {
        "name": name,
        "base_url": base_url,
        "model": "smollm2-135m-instruct",
        "requests_per_second": 200,
        "max_concurrency": 4,
        "timeout_s": 5,
        "retry": fast_retry,
        **fields,
    }


def run_auditor(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [AUDITOR, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


class LoopbackProvider:
    """A real HTTP server on 127.0.0.1 (a free port) for a handler class, serving on a
    background thread inside a `with` block; `base_url` is its OpenAI-style /v1 root."""

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


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

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                import json
                import time
                import uuid

                length = int(self.headers.get("content-length", 0))
                self.rfile.read(length)
                outer.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
                time.sleep(outer.delay_s)
                answer = f"answer-{uuid.uuid4().hex}"
                if echo_key:
                    status, body = (
                        401,
                        {
                            "error": {
                                "message": f"Incorrect API key: {self.headers.get('authorization')}"
                            }
                        },
                    )
                else:
                    status, body = (
                        200,
                        {
                            "id": "x",
                            "object": "chat.completion",
                            "created": 1,
                            "model": "m",
                            "choices": [
                                {
                                    "index": 0,
                                    "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": answer},
                                }
                            ],
                            "usage": {
                                "prompt_tokens": 5,
                                "completion_tokens": 1,
                                "total_tokens": 6,
                            },
                        },
                    )
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
                with lock:
                    outer.sent.append((answer, time.monotonic()))

        self.serve(Handler)


def free_port_range(n: int) -> int:
    """A base port with `n` consecutive free loopback ports from it."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65000:
            continue
        try:
            for port in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no range of free loopback ports")
