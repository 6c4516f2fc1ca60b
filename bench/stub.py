"""A fast stub provider for the benchmarks: a real HTTP/1.1 server on 127.0.0.1 (raw
`asyncio.Protocol`, keep-alive) answering every `POST .../chat/completions` with a fixed
OpenAI chat.completion (with usage), after an optional fixed latency. It runs in its own
process (`running_stub`), so it gets a core of its own and is not counted in the auditor's
memory; `bench/overhead.py` measures its ceiling with a bare `httpx` loop.

It also records the arrival time of every completion request (`time.monotonic()`, which is
CLOCK_MONOTONIC and so comparable across processes on Linux): `GET /stats` returns them,
`POST /reset` clears them.

    .venv/bin/python bench/stub.py [--port 0] [--latency-ms 20]   # prints "PORT <n>"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.1"


def completion_body(prompt_tokens: int, completion_tokens: int, seq: int) -> bytes:
    return json.dumps(
        {
            "id": f"chatcmpl-stub-{seq}",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "stub-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "The capital of France is Paris."},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        },
        separators=(",", ":"),
    ).encode()


def http_response(body: bytes, content_type: str = "application/json") -> bytes:
    head = (
        "HTTP/1.1 200 OK\r\n"
        f"content-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\n"
        "server: bench-stub\r\n"
        "\r\n"
    )
    return head.encode() + body


class Stub:
    """Server state: the canned answer, the latency and the arrival log."""

    def __init__(self, latency_s: float, prompt_tokens: int, completion_tokens: int) -> None:
        self.latency_s = latency_s
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.arrivals = array("d")
        self.seq = 0

    def answer(self) -> bytes:
        self.seq += 1
        return http_response(completion_body(self.prompt_tokens, self.completion_tokens, self.seq))

    def stats(self) -> bytes:
        body = json.dumps(
            {
                "count": len(self.arrivals),
                "arrivals": self.arrivals.tolist(),
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
            }
        ).encode()
        return http_response(body)


class Connection(asyncio.Protocol):
    """One keep-alive connection; requests are answered in order, one at a time."""

    def __init__(self, stub: Stub) -> None:
        self.stub = stub
        self.buffer = bytearray()
        self.busy = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def _next(self) -> None:
        """Parse one complete request from the buffer, if there is one, and answer it."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).decode("latin-1")
        lines = head.split("\r\n")
        method, path = lines[0].split(" ", 2)[:2]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if len(self.buffer) < end + 4 + length:
            return  # the body is still coming
        del self.buffer[: end + 4 + length]
        if method == "POST" and path.endswith("/chat/completions"):
            self.stub.arrivals.append(time.monotonic())
            payload = self.stub.answer()
            if self.stub.latency_s > 0:
                self.busy = True
                asyncio.get_running_loop().call_later(self.stub.latency_s, self._send, payload)
                return
        elif path == "/stats":
            payload = self.stub.stats()
        elif path == "/reset":
            self.stub.arrivals = array("d")
            payload = http_response(b"{}")
        else:
            payload = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
        self._send(payload)

    def _send(self, payload: bytes) -> None:
        self.busy = False
        if self.transport is None:
            return
        self.transport.write(payload)
        if self.buffer:
            self._next()


async def serve(port: int, stub: Stub) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(stub), HOST, port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


@dataclass
class RunningStub:
    port: int
    process: subprocess.Popen[str]

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def _get(self, path: str, method: str = "GET") -> dict[str, Any]:
        request = urllib.request.Request(f"http://{HOST}:{self.port}{path}", method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        """{"count", "arrivals" (monotonic seconds), "prompt_tokens", "completion_tokens"}."""
        return self._get("/stats")

    def reset(self) -> None:
        self._get("/reset", method="POST")


@contextmanager
def running_stub(
    latency_ms: float = 0.0, prompt_tokens: int = 20, completion_tokens: int = 10
) -> Iterator[RunningStub]:
    """The stub in a child process on a free port; stopped on exit."""
    process = subprocess.Popen(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--port",
            "0",
            "--latency-ms",
            str(latency_ms),
            "--prompt-tokens",
            str(prompt_tokens),
            "--completion-tokens",
            str(completion_tokens),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"stub did not start: {line!r}")
        yield RunningStub(int(line.split()[1]), process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--prompt-tokens", type=int, default=20)
    parser.add_argument("--completion-tokens", type=int, default=10)
    args = parser.parse_args()
    stub = Stub(args.latency_ms / 1000, args.prompt_tokens, args.completion_tokens)
    asyncio.run(serve(args.port, stub))


if __name__ == "__main__":
    main()
