"""The OpenAI-compatible adapter against providers that misbehave on demand.

Every provider here is an `httpx.MockTransport` handler, so no test leaves the process; the
injected `sleep` records the waits instead of taking them.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from helpers.openai import chunk, completion, sse
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from auditor.config import ProviderConfig, RetryPolicy
from auditor.providers.base import adapters
from auditor.providers.openai_compatible import OpenAICompatibleAdapter
from auditor.providers.wire import MAX_BODY_BYTES
from auditor.records import CompletionRequest, ErrorClass, Message, RequestParams

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]
SECRET = "sk-test-0123456789abcdef"


def make_config(**overrides: Any) -> ProviderConfig:
    fields: dict[str, Any] = {
        "name": "acme",
        "base_url": "http://provider.test/v1",
        "model": "meta-llama/Llama-4-Scout",
        "timeout_s": 5.0,
        "retry": RetryPolicy(max_attempts=3, backoff_base_s=0.5, backoff_max_s=4, max_total_s=60),
    }
    fields.update(overrides)
    return ProviderConfig(**fields)


def make_request(stream: bool = False, **params: Any) -> CompletionRequest:
    return CompletionRequest(
        probe_id="capital",
        probe_hash="h",
        sample_index=0,
        messages=[
            Message(role="system", content="Be brief."),
            Message(role="user", content="Capital of France?"),
        ],
        params=RequestParams(**params),
        stream=stream,
    )


def sse_response(content: bytes | AsyncIterator[bytes], status: int = 200) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "text/event-stream"}, content=content)


class Provider:
    """A scripted provider: answers requests in turn, records what it received and waited."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            result = answer(request)
            return await result if asyncio.iscoroutine(result) else result  # type: ignore[return-value]
        return answer

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def adapter(self, config: ProviderConfig | None = None) -> OpenAICompatibleAdapter:
        return OpenAICompatibleAdapter(
            config or make_config(),
            transport=httpx.MockTransport(self.handle),
            sleep=self.sleep,
            rng=random.Random(0),
        )

    def body(self, i: int = 0) -> dict[str, Any]:
        return json.loads(self.requests[i].content)


async def run(provider: Provider, request: CompletionRequest | None = None, **config: Any):
    adapter = provider.adapter(make_config(**config))
    try:
        return await adapter.complete(request or make_request())
    finally:
        await adapter.aclose()


def test_registered_as_openai() -> None:
    assert adapters.get("openai") is OpenAICompatibleAdapter


async def test_happy_path_records_answer_usage_and_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACME_KEY", SECRET)
    provider = Provider(
        httpx.Response(
            200,
            json=completion(),
            headers={
                "server": "uvicorn",
                "x-request-id": "req-42",
                "X-RateLimit-Remaining-Requests": "99",
                "set-cookie": "session=abc",
                "x-api-key-echo": SECRET,
            },
        )
    )
    request = make_request(temperature=0.0, max_tokens=16, seed=7)
    config = {
        "api_key_env": "ACME_KEY",
        "params": {"temperature": 0.6, "top_k": 40},
        "headers": {"X-Title": "auditor"},
    }
    result = await run(provider, request, **config)

    assert result.ok and result.error_class is None
    assert (result.text, result.finish_reason, result.served_model) == (
        "Paris",
        "stop",
        "served-model",
    )
    assert result.usage.model_dump() == {
        "prompt_tokens": 12,
        "completion_tokens": 2,
        "total_tokens": 14,
        "reasoning_tokens": None,
    }
    assert result.status_code == 200 and result.attempts == 1
    assert result.latency_s is not None and result.latency_s >= 0 and result.ttft_s is None
    assert result.headers == {
        "server": "uvicorn",
        "x-request-id": "req-42",
        "x-ratelimit-remaining-requests": "99",
    }

    sent = provider.requests[0]
    assert sent.url == "http://provider.test/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert sent.headers["x-title"] == "auditor"
    body = provider.body()
    assert body == {
        "model": "meta-llama/Llama-4-Scout",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"},
        ],
        "temperature": 0.6,
        "max_tokens": 16,
        "seed": 7,
        "top_k": 40,
    }
    assert result.raw_request == body
    assert result.raw_response == completion()
    assert SECRET not in result.model_dump_json()


async def test_no_authorization_header_without_a_key_variable() -> None:
    provider = Provider(httpx.Response(200, json=completion()))
    result = await run(provider)
    assert result.ok
    assert "authorization" not in provider.requests[0].headers


async def test_a_key_variable_that_is_not_set_is_an_auth_error_and_nothing_is_sent() -> None:
    """The daemon keeps running without a provider's key: the provider turns unavailable."""
    provider = Provider(httpx.Response(200, json=completion()))
    result = await run(provider, api_key_env="ACME_KEY_UNSET")
    assert not result.ok and result.error_class == ErrorClass.AUTH
    assert "ACME_KEY_UNSET is not set" in (result.error_message or "")
    assert provider.requests == [] and result.raw_request["messages"]


async def test_key_echoed_by_the_provider_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_KEY", SECRET)
    body = {"error": {"message": f"Incorrect API key provided: {SECRET}", "type": "auth"}}
    provider = Provider(httpx.Response(401, json=body))
    result = await run(provider, api_key_env="ACME_KEY")
    assert result.error_class == ErrorClass.AUTH
    assert SECRET not in result.model_dump_json()
    assert "[REDACTED]" in result.raw_response["error"]["message"]


async def test_tool_call_and_logprobs_non_stream() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    logprobs = {
        "content": [{"token": "Paris", "logprob": -0.01, "bytes": None, "top_logprobs": []}]
    }
    body = completion(None)
    body["choices"][0].update(
        {
            "message": {"role": "assistant", "content": None, "tool_calls": [call]},
            "logprobs": logprobs,
        }
    )
    body["choices"][0]["finish_reason"] = "tool_calls"
    result = await run(Provider(httpx.Response(200, json=body)))
    assert result.ok and result.text is None
    assert result.tool_calls == [call]
    assert result.finish_reason == "tool_calls"
    assert result.logprobs == logprobs["content"]


async def test_unknown_finish_reason_and_partial_usage_are_recorded_not_rejected() -> None:
    body = completion(usage={"prompt_tokens": 5, "completion_tokens": 1})
    body["choices"][0]["finish_reason"] = "eos"
    result = await run(Provider(httpx.Response(200, json=body)))
    assert result.ok and result.finish_reason == "eos"
    assert result.usage.total_tokens is None and result.usage.spent == 6


async def test_429_with_retry_after_seconds_is_honoured() -> None:
    provider = Provider(
        httpx.Response(429, json={"error": {"message": "slow down"}}, headers={"retry-after": "3"}),
        httpx.Response(200, json=completion()),
    )
    result = await run(provider)
    assert result.ok and result.attempts == 2
    assert len(provider.requests) == 2
    assert len(provider.sleeps) == 1 and provider.sleeps[0] >= 3


async def test_429_with_retry_after_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    provider = Provider(
        httpx.Response(429, headers={"retry-after": when}),
        httpx.Response(200, json=completion()),
    )
    result = await run(provider)
    assert result.ok and result.attempts == 2
    assert 27 <= provider.sleeps[0] <= 30


async def test_429_until_attempts_run_out_is_rate_limited() -> None:
    provider = Provider(httpx.Response(429, json={"error": {"message": "quota"}}))
    result = await run(provider)
    assert result.error_class == ErrorClass.RATE_LIMITED and result.attempts == 3
    assert "429" in (result.error_message or "")


async def test_503_retried_until_max_attempts_then_server_error() -> None:
    provider = Provider(httpx.Response(503, text="<html>Service Unavailable</html>"))
    policy = RetryPolicy(max_attempts=4, backoff_base_s=0.5, backoff_max_s=20, max_total_s=60)
    result = await run(provider, retry=policy)
    assert not result.ok and result.error_class == ErrorClass.SERVER_ERROR
    assert result.attempts == 4 and len(provider.requests) == 4
    assert result.status_code == 503
    assert result.raw_response == {"raw_text": "<html>Service Unavailable</html>"}
    assert "HTTP 503" in (result.error_message or "")
    ceilings = [0.5, 1.0, 2.0]
    assert len(provider.sleeps) == 3
    assert all(0 <= s <= c for s, c in zip(provider.sleeps, ceilings, strict=True))


async def test_max_total_s_stops_before_a_wait_that_would_cross_it() -> None:
    provider = Provider(httpx.Response(503, headers={"retry-after": "2"}))
    policy = RetryPolicy(max_attempts=10, backoff_base_s=0.1, backoff_max_s=0.1, max_total_s=5)
    result = await run(provider, retry=policy)
    assert result.error_class == ErrorClass.SERVER_ERROR
    assert provider.sleeps == [2.0, 2.0]
    assert result.attempts == 3 and len(provider.requests) == 3


async def test_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    provider = Provider(httpx.Response(429, headers={"retry-after": "600"}))
    result = await run(provider)
    assert result.error_class == ErrorClass.RATE_LIMITED
    assert result.attempts == 1 and provider.sleeps == []


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, ErrorClass.CLIENT_ERROR),
        (401, ErrorClass.AUTH),
        (403, ErrorClass.AUTH),
        (404, ErrorClass.NOT_FOUND),
        (422, ErrorClass.CLIENT_ERROR),
    ],
)
async def test_final_4xx_not_retried(status: int, error_class: ErrorClass) -> None:
    body = {"error": {"message": "nope", "type": "invalid_request_error"}}
    provider = Provider(httpx.Response(status, json=body))
    result = await run(provider)
    assert result.error_class == error_class and result.status_code == status
    assert len(provider.requests) == 1 and result.attempts == 1 and provider.sleeps == []
    assert result.raw_response == body
    assert result.error_message == f"HTTP {status}: nope"


async def test_deadline_is_a_timeout_and_not_retried() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(2)
        return httpx.Response(200, json=completion())

    provider = Provider(hang)
    result = await run(provider, timeout_s=0.2)
    assert result.error_class == ErrorClass.TIMEOUT and not result.ok
    assert len(provider.requests) == 1 and result.attempts == 1
    assert result.latency_s is not None and 0.15 < result.latency_s < 1.5


async def test_slow_drip_stream_is_cut_by_the_deadline_and_keeps_what_arrived() -> None:
    async def drip() -> AsyncIterator[bytes]:
        while True:
            yield sse(chunk("tick"), done=False)
            await asyncio.sleep(0.05)

    provider = Provider(lambda request: sse_response(drip()))
    result = await run(provider, make_request(stream=True), timeout_s=0.3)
    assert result.error_class == ErrorClass.TIMEOUT
    assert result.status_code == 200
    assert result.raw_response is not None and len(result.raw_response["chunks"]) >= 2
    assert result.ttft_s is not None and result.ttft_s < 0.3


async def test_connect_error_retried_then_connect_error() -> None:
    request = httpx.Request("POST", "http://provider.test/v1/chat/completions")
    provider = Provider(httpx.ConnectError("connection refused", request=request))
    result = await run(provider)
    assert result.error_class == ErrorClass.CONNECT_ERROR
    assert len(provider.requests) == 3 and result.attempts == 3 and len(provider.sleeps) == 2
    assert result.status_code is None
    assert "connection refused" in (result.error_message or "")


async def test_reset_before_any_byte_is_retried() -> None:
    request = httpx.Request("POST", "http://provider.test/v1/chat/completions")
    provider = Provider(
        httpx.RemoteProtocolError(
            "Server disconnected without sending a response.", request=request
        ),
        httpx.Response(200, json=completion()),
    )
    result = await run(provider)
    assert result.ok and result.attempts == 2


async def test_reset_mid_response_is_a_network_error_not_retried() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b'{"id": "chatcmpl-1", "choi'
        raise httpx.ReadError("connection reset by peer")

    provider = Provider(lambda request: httpx.Response(200, content=broken()))
    result = await run(provider)
    assert result.error_class == ErrorClass.NETWORK_ERROR
    assert len(provider.requests) == 1
    assert result.raw_response == {"raw_text": '{"id": "chatcmpl-1", "choi'}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (json.dumps(completion())[:-20].encode(), "application/json"),
        (b"<html><body>502 Bad Gateway</body></html>", "text/html"),
        (b"\x00\xff\xfe binary junk", "application/octet-stream"),
        (b"", "application/json"),
        (b'["a", "list"]', "application/json"),
        (b'{"x": NaN}', "application/json"),
        (b"[" * 100_000, "application/json"),
    ],
    ids=["malformed", "truncated", "html", "binary", "empty", "list", "nan", "deep"],
)
async def test_unparseable_200_is_protocol_error_with_text_kept(
    body: bytes, content_type: str
) -> None:
    provider = Provider(httpx.Response(200, content=body, headers={"content-type": content_type}))
    result = await run(provider)
    assert result.error_class == ErrorClass.PROTOCOL_ERROR and result.status_code == 200
    assert result.raw_response == {"raw_text": body[:65536].decode("utf-8", errors="replace")}
    assert len(provider.requests) == 1
    assert "\n" not in (result.error_message or "")


async def test_200_with_error_object_is_api_error_not_retried() -> None:
    body = {"error": {"message": "model overloaded", "code": 500}}
    provider = Provider(httpx.Response(200, json=body))
    result = await run(provider)
    assert result.error_class == ErrorClass.API_ERROR and result.status_code == 200
    assert result.raw_response == body
    assert "model overloaded" in (result.error_message or "")
    assert len(provider.requests) == 1


def _without_choices() -> dict[str, Any]:
    body = completion()
    del body["choices"]
    return body


def _with(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    body = completion()
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


@pytest.mark.parametrize(
    "body",
    [
        _without_choices(),
        completion(choices=[]),
        completion(choices="Paris"),
        _with(("choices", 0, "message", "content"), 42),
        _with(("choices", 0, "message"), None),
        _with(("choices", 0, "finish_reason"), 7),
        _with(("model",), None),
        completion(usage={"prompt_tokens": "many"}),
        completion(usage=[1, 2, 3]),
    ],
    ids=[
        "no-choices",
        "empty-choices",
        "choices-str",
        "content-int",
        "message-null",
        "finish-int",
        "model-null",
        "usage-str",
        "usage-list",
    ],
)
async def test_wrong_shape_is_protocol_error_with_json_kept(body: dict[str, Any]) -> None:
    result = await run(Provider(httpx.Response(200, json=body)))
    assert result.error_class == ErrorClass.PROTOCOL_ERROR
    assert result.raw_response == body


async def test_huge_body_is_protocol_error() -> None:
    provider = Provider(httpx.Response(200, content=b" " * (MAX_BODY_BYTES + 1)))
    result = await run(provider)
    assert result.error_class == ErrorClass.PROTOCOL_ERROR
    assert "cap" in (result.error_message or "")


async def test_huge_body_without_content_length_is_protocol_error() -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 1_048_576

    result = await run(Provider(lambda request: httpx.Response(200, content=endless())))
    assert result.error_class == ErrorClass.PROTOCOL_ERROR
    assert result.raw_response is not None and len(result.raw_response["raw_text"]) == 65536


async def test_stream_assembles_content_usage_and_ttft() -> None:
    async def events() -> AsyncIterator[bytes]:
        yield b": keep-alive\n\n"
        yield b"event: message\n"
        yield sse(chunk(""), done=False)
        await asyncio.sleep(0.05)
        yield sse(chunk("Par"), done=False)[:10]
        yield sse(chunk("Par"), done=False)[10:]
        yield sse(chunk("is", finish="stop"), done=False).replace(b"\n", b"\r\n")
        usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
        yield sse(chunk(usage=usage, no_choices=True))
        yield b"data: this is after DONE and ignored\n\n"

    provider = Provider(lambda request: sse_response(events()))
    result = await run(provider, make_request(stream=True))
    assert result.ok, result.error_message
    assert result.text == "Paris" and result.finish_reason == "stop"
    assert result.usage.total_tokens == 11 and result.served_model == "served-model"
    assert result.ttft_s is not None and 0.04 < result.ttft_s <= result.latency_s
    assert len(result.raw_response["chunks"]) == 4
    sent = provider.body()
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert result.raw_request == sent


async def test_stream_enabled_by_provider_config() -> None:
    provider = Provider(lambda request: sse_response(sse(chunk("ok", finish="stop"))))
    result = await run(provider, stream=True)
    assert result.ok and result.text == "ok"
    assert provider.body()["stream"] is True


async def test_stream_assembles_tool_call_deltas() -> None:
    first = [
        {
            "index": 0,
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_", "arguments": ""},
        }
    ]
    events = [
        chunk(tool_calls=first),
        chunk(tool_calls=[{"index": 0, "function": {"name": "weather", "arguments": '{"city":'}}]),
        chunk(
            tool_calls=[
                {"index": 1, "id": "call_b", "function": {"name": "now", "arguments": "{}"}}
            ]
        ),
        chunk(tool_calls=[{"index": 0, "id": "call_a", "function": {"arguments": ' "Paris"}'}}]),
        chunk(finish="tool_calls"),
    ]
    provider = Provider(lambda request: sse_response(sse(*events)))
    result = await run(provider, make_request(stream=True))
    assert result.ok and result.text is None and result.finish_reason == "tool_calls"
    assert result.tool_calls == [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {"id": "call_b", "type": "function", "function": {"name": "now", "arguments": "{}"}},
    ]
    assert result.ttft_s is not None


async def test_stream_logprobs_are_concatenated() -> None:
    def with_logprobs(text: str, logprob: float) -> dict[str, Any]:
        event = chunk(text)
        entry = {"token": text, "logprob": logprob, "bytes": None, "top_logprobs": []}
        event["choices"][0]["logprobs"] = {"content": [entry]}
        return event

    events = [with_logprobs("Par", -0.1), with_logprobs("is", -0.2), chunk(finish="stop")]
    result = await run(Provider(lambda r: sse_response(sse(*events))), make_request(stream=True))
    assert result.ok and [e["token"] for e in result.logprobs or []] == ["Par", "is"]


async def test_stream_without_done_but_with_finish_reason_is_ok() -> None:
    body = sse(chunk("Hi"), chunk(finish="stop"), done=False)
    result = await run(Provider(lambda r: sse_response(body)), make_request(stream=True))
    assert result.ok and result.text == "Hi"


async def test_truncated_stream_is_protocol_error_keeping_chunks() -> None:
    body = sse(chunk("The capital"), chunk(" is"), done=False)
    result = await run(Provider(lambda r: sse_response(body)), make_request(stream=True))
    assert result.error_class == ErrorClass.PROTOCOL_ERROR
    assert "truncated" in (result.error_message or "")
    assert [c["choices"][0]["delta"]["content"] for c in result.raw_response["chunks"]] == [
        "The capital",
        " is",
    ]


@pytest.mark.parametrize(
    ("body", "error_class"),
    [
        (b"data: {broken\n\n", ErrorClass.PROTOCOL_ERROR),
        (b'data: {"id": 1}\n\n', ErrorClass.PROTOCOL_ERROR),
        (b"data: [DONE]\n\n", ErrorClass.PROTOCOL_ERROR),
        (b"<html>oops</html>", ErrorClass.PROTOCOL_ERROR),
        (b'data: {"error": {"message": "overloaded mid-stream"}}\n\n', ErrorClass.API_ERROR),
    ],
    ids=["not-json", "wrong-shape", "no-chunks", "html", "error-event"],
)
async def test_broken_streams(body: bytes, error_class: ErrorClass) -> None:
    prefix = sse(chunk("Hi"), done=False) if error_class == ErrorClass.API_ERROR else b""
    provider = Provider(lambda r: sse_response(prefix + body))
    result = await run(provider, make_request(stream=True))
    assert result.error_class == error_class and result.status_code == 200
    assert result.raw_response is not None and "chunks" in result.raw_response


async def test_stream_request_answered_with_json_error_is_api_error() -> None:
    body = {"error": {"message": "streaming unsupported"}}
    provider = Provider(httpx.Response(200, json=body))
    result = await run(provider, make_request(stream=True))
    assert result.error_class == ErrorClass.API_ERROR and result.raw_response == body


async def test_stream_reset_midway_is_network_error_keeping_chunks() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield sse(chunk("Hel"), done=False)
        raise httpx.RemoteProtocolError("peer closed connection")

    result = await run(Provider(lambda r: sse_response(broken())), make_request(stream=True))
    assert result.error_class == ErrorClass.NETWORK_ERROR
    assert len(result.raw_response["chunks"]) == 1


async def test_stream_byte_cap() -> None:
    async def flood() -> AsyncIterator[bytes]:
        while True:
            yield b": " + b"x" * 1_048_576 + b"\n"

    result = await run(Provider(lambda r: sse_response(flood())), make_request(stream=True))
    assert result.error_class == ErrorClass.PROTOCOL_ERROR and "cap" in (result.error_message or "")


async def test_error_status_on_a_stream_request_is_classified() -> None:
    provider = Provider(httpx.Response(404, json={"error": {"message": "no such model"}}))
    result = await run(provider, make_request(stream=True))
    assert (
        result.error_class == ErrorClass.NOT_FOUND
        and result.error_message == "HTTP 404: no such model"
    )


async def test_unexpected_exception_becomes_a_record() -> None:
    provider = Provider(RuntimeError("transport bug"))
    result = await run(provider)
    assert not result.ok and result.error_class == ErrorClass.PROTOCOL_ERROR
    assert "transport bug" in (result.error_message or "")
    assert result.raw_request["model"] == "meta-llama/Llama-4-Scout"


async def test_aclose_closes_the_client() -> None:
    adapter = Provider(httpx.Response(200, json=completion())).adapter()
    await adapter.aclose()
    result = await adapter.complete(make_request())
    assert not result.ok


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(body: bytes) -> None:
    assume(b'"error"' not in body)

    async def go() -> None:
        for stream in (False, True):
            provider = Provider(httpx.Response(200, content=body))
            result = await run(provider, make_request(stream=stream))
            assert not result.ok
            assert result.error_class == ErrorClass.PROTOCOL_ERROR

    asyncio.run(go())
