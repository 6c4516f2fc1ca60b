"""A provider's "prompt longer than the context" answer is a recorded `context_length_exceeded`
error carrying the counts it states, recognised in every recorded wire example
(wire_examples/context_length/, each with its source) and in none of the other errors
(wire_examples/other_errors/)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.db import new_store
from helpers.openai import chunk, completion, sse

from auditor.config import ProviderConfig, RetryPolicy
from auditor.providers import wire
from auditor.providers.context_length import ContextOverflow, context_overflow, overflow_in_text
from auditor.providers.openai_compatible import OpenAICompatibleAdapter
from auditor.records import (
    CompletionRequest,
    CompletionResponse,
    ErrorClass,
    Message,
    ProbeCase,
    RequestParams,
)
from auditor.storage.observations import load_observations
from auditor.storage.tables import RoundRow

EXAMPLES = Path(__file__).parent / "wire_examples"


def examples(folder: str) -> list[Any]:
    return [
        pytest.param(json.loads(path.read_text()), id=path.stem)
        for path in sorted((EXAMPLES / folder).glob("*.json"))
    ]


def expected(example: dict[str, Any]) -> ContextOverflow:
    want = example["expect"]
    return ContextOverflow(
        prompt_tokens=want["prompt_tokens"],
        limit=want["limit"],
        completion_tokens=want["completion_tokens"],
        prompt_count=want["prompt_count"],
    )


def test_the_examples_are_there_and_say_where_they_come_from() -> None:
    for folder in ("context_length", "other_errors"):
        found = examples(folder)
        assert len(found) >= 8
        for param in found:
            (example,) = param.values
            assert example["source"] and example["engine"] and example["version"]
            assert isinstance(example["status"], int) and isinstance(example["body"], dict)
    engines = {p.values[0]["engine"].split()[0] for p in examples("context_length")}
    assert {"vLLM", "SGLang", "llama.cpp", "llama-cpp-python", "OpenAI", "OpenRouter"} <= engines


@pytest.mark.parametrize("example", examples("context_length"))
def test_every_recorded_overflow_is_recognised_with_its_counts(example: dict[str, Any]) -> None:
    assert context_overflow(example["body"]) == expected(example)
    body = json.dumps(example["body"]).encode()
    response = wire.http_error(example["status"], body)
    assert not response.ok and response.error_class == ErrorClass.CONTEXT_LENGTH_EXCEEDED
    assert response.status_code == example["status"]
    assert response.raw_response == example["body"]  # the body is kept as it came
    assert ContextOverflow.from_error_message(response.error_message) == expected(example)
    assert f"HTTP {example['status']}: " in (response.error_message or "")


@pytest.mark.parametrize("example", examples("other_errors"))
def test_other_errors_keep_their_class(example: dict[str, Any]) -> None:
    assert context_overflow(example["body"]) is None
    response = wire.http_error(example["status"], json.dumps(example["body"]).encode())
    assert response.error_class == example["expect"]["error_class"]
    assert ContextOverflow.from_error_message(response.error_message) is None


@pytest.mark.parametrize(
    "message",
    [
        "max_tokens must be at least 1, got 0.",
        "Invalid 'messages': the context field must be a string",
        "This model supports a long context; set max_tokens below 4096",
        "Rate limit reached for gpt-4.1 on tokens per min (TPM): Limit 30000, Requested 11159.",
        "temperature must be non-negative, got -1.0. (parameter=temperature, value=-1.0)",
        "",
    ],
)
def test_unrelated_messages_are_not_overflows(message: str) -> None:
    assert overflow_in_text(message) is None
    assert context_overflow({"error": {"message": message, "code": 400}}) is None


def test_a_flag_alone_is_an_overflow_and_fields_win_over_the_message() -> None:
    assert context_overflow({"error": {"message": "?", "code": "context_length_exceeded"}}) == (
        ContextOverflow()
    )
    llama = {
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 4463,
        "n_ctx": 4096,
    }
    assert context_overflow({"error": llama}) == ContextOverflow(prompt_tokens=4463, limit=4096)
    bad_fields = {**llama, "n_prompt_tokens": "many", "n_ctx": True}
    assert context_overflow({"error": bad_fields}) == ContextOverflow()


def test_other_body_shapes() -> None:
    text = "request (9 tokens) exceeds the available context size (8 tokens), try increasing it"
    assert context_overflow({"raw_text": text}) == ContextOverflow(prompt_tokens=9, limit=8)
    assert context_overflow({"error": text}) == ContextOverflow(prompt_tokens=9, limit=8)
    assert context_overflow({"detail": text}) == ContextOverflow(prompt_tokens=9, limit=8)
    upstream = "The input (70 tokens) is longer than the model's context length (64 tokens)."
    raw = json.dumps({"error": {"message": upstream}})
    wrapped = {"error": {"message": "Provider returned error", "metadata": {"raw": raw}}}
    assert context_overflow(wrapped) == ContextOverflow(prompt_tokens=70, limit=64)
    for body in (None, [], "x", {}, {"error": None}, {"error": {"message": 5}}):
        assert context_overflow(body) is None


def test_the_reference_engines_message() -> None:
    # llama-cpp-python's own ValueError (the reference engine, the fleet's model members)
    text = "Requested tokens (2100) exceed context window of 2048"
    assert overflow_in_text(text) == ContextOverflow(prompt_tokens=2100, limit=2048)


@pytest.mark.parametrize(
    "overflow",
    [
        ContextOverflow(),
        ContextOverflow(prompt_tokens=2084, limit=2048, completion_tokens=16),
        ContextOverflow(
            prompt_tokens=4096, limit=4096, completion_tokens=1, prompt_count="at_least"
        ),
        ContextOverflow(prompt_tokens=1390, completion_tokens=7, prompt_count="about"),
        ContextOverflow(limit=2048),
    ],
)
def test_the_note_reads_back(overflow: ContextOverflow) -> None:
    message = f"{overflow.note()}; HTTP 400: whatever (after 3 attempts)"
    assert ContextOverflow.from_error_message(message) == overflow
    assert ContextOverflow.from_error_message(overflow.note()) == overflow


def test_the_note_is_plain() -> None:
    overflow = ContextOverflow(prompt_tokens=4096, limit=4096, completion_tokens=1)
    assert overflow.note() == (
        "context length exceeded: prompt_tokens=4096 completion_tokens=1 limit=4096"
    )
    assert ContextOverflow(prompt_tokens=9, prompt_count="at_least").note() == (
        "context length exceeded: prompt_tokens>=9"
    )
    for other in (None, "", "HTTP 400: context length exceeded", "context length exceededx"):
        assert ContextOverflow.from_error_message(other) is None


def test_statuses_that_mean_something_else_keep_their_class() -> None:
    body = json.dumps(
        {"error": {"message": "This model's maximum context length is 10 tokens."}}
    ).encode()
    assert wire.http_error(429, body).error_class == ErrorClass.RATE_LIMITED
    assert wire.http_error(404, body).error_class == ErrorClass.NOT_FOUND
    assert wire.http_error(413, body).error_class == ErrorClass.CONTEXT_LENGTH_EXCEEDED


# --- through the adapter ------------------------------------------------------------------

VLLM_400 = {
    "error": {
        "message": "This model's maximum context length is 4096 tokens. However, you requested "
        "16 output tokens and your prompt contains at least 4081 input tokens, for a total of "
        "at least 4097 tokens. Please reduce the length of the input prompt or the number of "
        "requested output tokens. (parameter=input_tokens, value=4081)",
        "type": "BadRequestError",
        "param": "input_tokens",
        "code": 400,
    }
}


async def answer(*responses: httpx.Response, stream: bool = False) -> tuple[Any, int]:
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return responses[min(len(sent), len(responses)) - 1]

    config = ProviderConfig(
        name="acme",
        base_url="http://provider.test/v1",
        model="m",
        timeout_s=5.0,
        retry=RetryPolicy(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.01),
    )

    async def no_sleep(seconds: float) -> None:
        return None

    adapter = OpenAICompatibleAdapter(
        config, transport=httpx.MockTransport(handle), sleep=no_sleep, rng=random.Random(0)
    )
    request = CompletionRequest(
        probe_id="ladder",
        probe_hash="h",
        sample_index=0,
        messages=[Message(role="user", content="word " * 50)],
        params=RequestParams(max_tokens=16),
        stream=stream,
    )
    try:
        return await adapter.complete(request), len(sent)
    finally:
        await adapter.aclose()


async def test_a_400_overflow_is_a_recorded_error_not_retried() -> None:
    result, calls = await answer(httpx.Response(400, json=VLLM_400))
    assert not result.ok and result.error_class == ErrorClass.CONTEXT_LENGTH_EXCEEDED
    assert calls == 1 and result.attempts == 1 and result.raw_response == VLLM_400
    overflow = ContextOverflow.from_error_message(result.error_message)
    assert overflow == ContextOverflow(
        prompt_tokens=4081, limit=4096, completion_tokens=16, prompt_count="at_least"
    )
    assert result.raw_request["max_tokens"] == 16


async def test_a_500_overflow_is_not_retried_but_a_plain_500_is() -> None:
    kv = {"error": {"code": 500, "message": "Input prompt is too big compared to KV size. "
                    "Please try increasing KV size.", "type": "server_error"}}  # fmt: skip
    result, calls = await answer(httpx.Response(500, json=kv))
    assert result.error_class == ErrorClass.CONTEXT_LENGTH_EXCEEDED and calls == 1
    assert result.status_code == 500
    plain = {"error": {"code": 500, "message": "boom", "type": "server_error"}}
    result, calls = await answer(httpx.Response(500, json=plain))
    assert result.error_class == ErrorClass.SERVER_ERROR and calls == 3


async def test_an_overflow_carried_in_a_200_or_a_stream() -> None:
    result, _ = await answer(httpx.Response(200, json=VLLM_400))
    assert result.error_class == ErrorClass.CONTEXT_LENGTH_EXCEEDED
    assert (result.error_message or "").startswith("context length exceeded: prompt_tokens>=4081")
    events = sse(chunk(content=""), VLLM_400)
    stream = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=events)
    result, _ = await answer(stream, stream=True)
    assert result.error_class == ErrorClass.CONTEXT_LENGTH_EXCEEDED
    ok, _ = await answer(httpx.Response(200, json=completion("fine")))
    assert ok.ok


# --- stored -------------------------------------------------------------------------------


def test_stored_as_any_error_and_read_back(sqlite_url: str) -> None:
    """The error class is a plain string column: nothing to migrate; the counts come back
    from the stored message."""
    store = new_store(sqlite_url)
    case = ProbeCase(id="ladder", suite="s", messages=[Message(role="user", content="hi")])
    store.upsert_probe_cases([case])
    store.start_round(RoundRow(id="r", suite="s", suite_hash="h", auditor_version="t"))
    pid = store.upsert_provider("m", "acme")
    response = wire.http_error(400, json.dumps(VLLM_400).encode())
    assert isinstance(response, CompletionResponse)
    store.add_sample("r", pid, CompletionRequest.from_case(case, 0), response, [], None)
    ((sample, _),) = list(store.iter_samples("r"))
    assert sample.error_class == "context_length_exceeded" and not sample.ok
    assert ContextOverflow.from_error_message(sample.error_message) == ContextOverflow(
        prompt_tokens=4081, limit=4096, completion_tokens=16, prompt_count="at_least"
    )
    (observation,) = load_observations(store, "r")
    assert observation.error_class == ErrorClass.CONTEXT_LENGTH_EXCEEDED
    assert observation.error_message == sample.error_message  # the stated counts, for judging
    assert store.provider_totals("r")[0]["errors_by_class"] == {"context_length_exceeded": 1}
