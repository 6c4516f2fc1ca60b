"""The adapter for any OpenAI-compatible `/chat/completions` endpoint.

One `httpx.AsyncClient` per provider. Each attempt runs under a whole-request deadline
(`timeout_s`, which also bounds slow-drip and endless streams) and a body-size cap; failed
attempts are retried per the provider's `RetryPolicy` (see `retry.py`); every outcome, good or
bad, comes back as a `CompletionResponse` and nothing is raised. The API key goes out in a
header only: it is never in `raw_request`, and it is scrubbed from anything the provider
echoes back.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from auditor.config import ProviderConfig
from auditor.providers import retry, wire
from auditor.providers.base import ProviderAdapter, adapters
from auditor.records import CompletionRequest, CompletionResponse, ErrorClass, utcnow
from auditor.secrets import Redactor

ERROR_BODY_LIMIT = 1024 * 1024
"""Error bodies are read up to this size and then cut (they are kept only as evidence)."""
_SECRET_HEADER_HINTS = ("auth", "key", "token", "secret", "cookie", "password")


@dataclass
class _Attempt:
    """One attempt's outcome and whether the retry loop may try again."""

    response: CompletionResponse
    retryable: bool = False
    retry_after: float | None = None


@dataclass
class _Progress:
    """What one attempt has received so far, so that a failure midway keeps the evidence."""

    started: float
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    stream: wire.StreamAssembler | None = None
    ttft_s: float | None = None

    def fail(self, error_class: ErrorClass, message: str) -> CompletionResponse:
        if self.stream is not None:
            raw: dict[str, Any] | None = self.stream.partial()
        else:
            raw = wire.raw_payload(bytes(self.body)) if self.body else None
        return wire.failure(error_class, message, status_code=self.status, raw_response=raw)


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `over`'s fields, objects merged field by field (so that a provider's own
    `chat_template_kwargs` keep the thinking switch sent beside them); `over` wins."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def _header_safe(value: str) -> bool:
    """A value HTTP can carry in a header (the client refuses others, or the server does)."""
    return value.isascii() and value.isprintable()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_json(response: httpx.Response) -> bool:
    content_type: str = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


async def _read_into(
    response: httpx.Response, buffer: bytearray, limit: int, *, cut: bool = False
) -> None:
    """Read the body into `buffer`, at most `limit` bytes: past it, stop (`cut`) or fail."""
    declared = response.headers.get("content-length", "")
    if not cut and declared.isdigit() and int(declared) > limit:
        raise wire.WireError(
            ErrorClass.PROTOCOL_ERROR, f"body of {declared} bytes exceeds the {limit}-byte cap"
        )
    async for piece in response.aiter_bytes():
        buffer += piece
        if len(buffer) > limit:
            if cut:
                del buffer[limit:]
                return
            raise wire.WireError(ErrorClass.PROTOCOL_ERROR, f"body exceeds the {limit}-byte cap")


@adapters.register("openai")
class OpenAICompatibleAdapter(ProviderAdapter):
    """Chat completions over HTTP, streaming or not, with retries and full error capture."""

    def __init__(
        self,
        config: ProviderConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self._sleep = sleep
        self._rng = rng or random.Random()
        headers = dict(config.headers)
        key = config.api_key()
        if key and _header_safe(key):
            headers["Authorization"] = f"Bearer {key}"
        secret_headers = [
            v for n, v in headers.items() if any(h in n.lower() for h in _SECRET_HEADER_HINTS)
        ]
        self._redactor = Redactor([*secret_headers, key or ""])
        self._client = httpx.AsyncClient(
            base_url=config.base_url,
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(config.timeout_s, connect=min(config.timeout_s, 10.0)),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def request_body(self, request: CompletionRequest) -> dict[str, Any]:
        """The JSON body sent, also recorded as `raw_request`: the probe's params, its
        reasoning effort as this provider takes it, then the provider's params (which win)."""
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": [m.model_dump(exclude_none=True) for m in request.messages],
            **request.params.wire(),
        }
        if request.reasoning_effort is not None and self.config.reasoning is not None:
            body = merged(body, self.config.reasoning.body_fields(request.reasoning_effort))
        body = merged(body, self.config.params)
        if request.stream or self.config.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        started_at = utcnow()
        body = self.request_body(request)
        key = self.config.api_key()
        if self.config.api_key_env and not (key and _header_safe(key)):
            # The daemon keeps going without a provider's key: its requests are recorded as
            # auth errors (the provider turns unavailable), and nothing is sent.
            why = "does not hold a printable ASCII key" if key else "is not set"
            missing = f"environment variable {self.config.api_key_env} {why}; not sent"
            response = wire.failure(ErrorClass.AUTH, missing)
            return response.model_copy(update={"raw_request": body, "started_at": started_at})
        attempts = 1
        try:
            response, attempts = await self._with_retries(body)
        except Exception as exc:
            error_class = (
                ErrorClass.NETWORK_ERROR if isinstance(exc, OSError) else ErrorClass.PROTOCOL_ERROR
            )
            response = wire.failure(error_class, f"unexpected failure: {_describe(exc)}")
        response = response.model_copy(
            update={"raw_request": body, "attempts": attempts, "started_at": started_at}
        )
        return self._redactor.redact_response(response)

    async def _with_retries(self, body: dict[str, Any]) -> tuple[CompletionResponse, int]:
        """Attempts until one is final, the attempts run out or the next wait would cross
        `max_total_s`. Elapsed time counts the waits asked for as well as the clock, since
        an injected `sleep` need not advance the clock."""
        policy = self.config.retry
        start = time.monotonic()
        waited = 0.0
        attempt = 1
        while True:
            outcome = await self._attempt(body)
            if not outcome.retryable or attempt >= policy.max_attempts:
                break
            wait = retry.retry_wait(attempt, policy, self._rng, outcome.retry_after)
            elapsed = max(time.monotonic() - start, waited)
            if not retry.may_wait(elapsed, wait, policy):
                break
            await self._sleep(wait)
            waited += wait
            attempt += 1
        response = outcome.response
        if attempt > 1 and not response.ok and response.error_message:
            response = response.model_copy(
                update={"error_message": f"{response.error_message} (after {attempt} attempts)"}
            )
        return response, attempt

    async def _attempt(self, body: dict[str, Any]) -> _Attempt:
        progress = _Progress(started=time.monotonic())
        timeout_s = self.config.timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                outcome = await self._exchange(body, progress)
        except (TimeoutError, httpx.TimeoutException) as exc:
            detail = _describe(exc) if isinstance(exc, httpx.TimeoutException) else "deadline"
            message = f"no complete answer within {timeout_s}s ({detail})"
            outcome = _Attempt(progress.fail(ErrorClass.TIMEOUT, message))
        except wire.WireError as exc:
            outcome = _Attempt(progress.fail(exc.error_class, exc.message))
        except httpx.TransportError as exc:
            message = f"connection broke mid-response: {_describe(exc)}"
            outcome = _Attempt(progress.fail(ErrorClass.NETWORK_ERROR, message))
        except httpx.RequestError as exc:
            message = f"undecodable response: {_describe(exc)}"
            outcome = _Attempt(progress.fail(ErrorClass.PROTOCOL_ERROR, message))
        update: dict[str, Any] = {
            "latency_s": time.monotonic() - progress.started,
            "ttft_s": progress.ttft_s,
            "headers": progress.headers,
        }
        outcome.response = outcome.response.model_copy(update=update)
        return outcome

    async def _exchange(self, body: dict[str, Any], progress: _Progress) -> _Attempt:
        request = self._client.build_request("POST", "/chat/completions", json=body)
        try:
            response = await self._client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            message = f"could not connect: {_describe(exc)}"
            return _Attempt(wire.failure(ErrorClass.CONNECT_ERROR, message), retryable=True)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            message = f"connection closed before any response: {_describe(exc)}"
            return _Attempt(wire.failure(ErrorClass.NETWORK_ERROR, message), retryable=True)
        try:
            return await self._read(response, progress, streaming=bool(body.get("stream")))
        finally:
            await response.aclose()

    async def _read(
        self, response: httpx.Response, progress: _Progress, *, streaming: bool
    ) -> _Attempt:
        status = progress.status = response.status_code
        progress.headers = wire.identity_headers(response.headers)
        if not 200 <= status <= 299:
            await _read_into(response, progress.body, ERROR_BODY_LIMIT, cut=True)
            answer = wire.http_error(status, bytes(progress.body))
            # a prompt too long for the context stays too long: not retried, even as a 5xx
            retryable = retry.is_retryable_status(status) and (
                answer.error_class != ErrorClass.CONTEXT_LENGTH_EXCEEDED
            )
            return _Attempt(
                answer,
                retryable=retryable,
                retry_after=retry.parse_retry_after(response.headers) if retryable else None,
            )
        if streaming and not _is_json(response):
            progress.stream = wire.StreamAssembler()
            await self._read_stream(response, progress, progress.stream)
            return _Attempt(progress.stream.result(status))
        await _read_into(response, progress.body, wire.MAX_BODY_BYTES)
        return _Attempt(wire.parse_completion(bytes(progress.body), status))

    async def _read_stream(
        self, response: httpx.Response, progress: _Progress, assembler: wire.StreamAssembler
    ) -> None:
        splitter = wire.LineSplitter()
        total = 0
        async for piece in response.aiter_bytes():
            total += len(piece)
            if total > wire.MAX_BODY_BYTES:
                raise wire.WireError(
                    ErrorClass.PROTOCOL_ERROR, f"stream exceeds the {wire.MAX_BODY_BYTES}-byte cap"
                )
            for line in splitter.feed(piece):
                assembler.feed_line(line)
                if progress.ttft_s is None and assembler.has_output:
                    progress.ttft_s = time.monotonic() - progress.started
                if assembler.done:
                    return
        for line in splitter.flush():
            assembler.feed_line(line)
