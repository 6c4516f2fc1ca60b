"""The fleet's model backend on the real packaged GGUF, spoken to by the official openai client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from auditor.config import LlamaCppReference
from auditor.fleet import (
    DEFAULT_MODEL,
    ChatMessage,
    ChatRequest,
    FleetMember,
    FleetSpec,
    LlamaBackend,
)
from auditor.fleet.llama_backend import MODEL_LOCK, raw_prompt, shared_model
from auditor.fleet.process import FleetHandle, running_fleet
from auditor.providers.llama_cpp import LlamaCppEngine
from auditor.records import CompletionRequest, Message, RequestParams

pytestmark = pytest.mark.model

MEMBERS: list[dict[str, Any]] = [
    {"name": "exact", "noise": 0.0},
    {"name": "noisy", "noise": 0.5},
    {"name": "raw", "fault": "wrong_template"},
    {"name": "short", "fault": "truncate_context", "strength": 24},
    {"name": "capped", "fault": "max_tokens_cap", "strength": 3},
    {"name": "hot", "fault": "sampling_override", "strength": 1.5},
]
QUESTION = "What is the capital of France? Answer in one word."


@pytest.fixture(scope="module")
def fleet() -> Iterator[FleetHandle]:
    members = [FleetMember(port=0, backend="llama", **m) for m in MEMBERS]
    with running_fleet(FleetSpec(members=members, seed=3), timeout_s=120) as handle:
        yield handle


def chat(fleet: FleetHandle, name: str, content: str = QUESTION, **kwargs: Any) -> Any:
    client = openai.OpenAI(base_url=fleet.base_url(name), api_key="x", max_retries=0, timeout=120)
    kwargs.setdefault("messages", [{"role": "user", "content": content}])
    kwargs.setdefault("temperature", 0)
    kwargs.setdefault("max_tokens", 12)
    return client.chat.completions.create(model=DEFAULT_MODEL, **kwargs)


def test_without_noise_a_member_answers_as_the_reference_engine(fleet: FleetHandle) -> None:
    engine = LlamaCppEngine(LlamaCppReference(engine="llama_cpp", n_ctx=2048))
    params = RequestParams(temperature=0, max_tokens=12, logprobs=True, top_logprobs=3)
    reference = engine.complete_sync(
        CompletionRequest(
            probe_id="p",
            probe_hash="h",
            sample_index=0,
            messages=[Message(role="user", content=QUESTION)],
            params=params,
        )
    )
    answer = chat(fleet, "exact", logprobs=True, top_logprobs=3)
    assert answer.choices[0].message.content == reference.text
    assert "paris" in answer.choices[0].message.content.lower()
    assert answer.usage.prompt_tokens == reference.usage.prompt_tokens
    assert answer.usage.completion_tokens == reference.usage.completion_tokens
    assert answer.choices[0].finish_reason == reference.finish_reason
    ours = [t.logprob for t in answer.choices[0].logprobs.content]
    theirs = [t["logprob"] for t in reference.logprobs]
    assert ours == pytest.approx(theirs, abs=1e-5)
    assert all(len(t.top_logprobs) == 3 for t in answer.choices[0].logprobs.content)
    # without logprobs the reference keeps no per-position logits; the answer is the same
    plain = RequestParams(temperature=0, max_tokens=24)
    long_question = "Write one sentence about a cat."
    reference = engine.complete_sync(
        CompletionRequest(
            probe_id="p",
            probe_hash="h",
            sample_index=0,
            messages=[Message(role="user", content=long_question)],
            params=plain,
        )
    )
    answer = chat(fleet, "exact", long_question, max_tokens=24)
    assert answer.choices[0].message.content == reference.text


def test_logits_noise_moves_logprobs_but_not_a_confident_answer(fleet: FleetHandle) -> None:
    exact = chat(fleet, "exact", logprobs=True)
    noisy = chat(fleet, "noisy", logprobs=True)
    assert "paris" in noisy.choices[0].message.content.lower()
    a = [t.logprob for t in exact.choices[0].logprobs.content]
    b = [t.logprob for t in noisy.choices[0].logprobs.content]
    assert a[: len(b)] != b[: len(a)]  # not bit for bit, as real GPU serving


def test_stream_with_logprobs_concatenates_to_the_answer(fleet: FleetHandle) -> None:
    whole = chat(fleet, "exact", "Say something nice with an emoji.", max_tokens=20)
    chunks = list(
        chat(
            fleet,
            "exact",
            "Say something nice with an emoji.",
            max_tokens=20,
            stream=True,
            logprobs=True,
            top_logprobs=1,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    tokens = [
        t.token
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for t in c.choices[0].logprobs.content
    ]
    assert "".join(tokens) == text
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_wrong_template_sends_raw_text(fleet: FleetHandle) -> None:
    raw = chat(fleet, "raw", max_tokens=8)
    exact = chat(fleet, "exact", max_tokens=8)
    # no chat template: no default system prompt, no special tokens, just "User: ..." lines
    prompt = raw_prompt([ChatMessage(role="user", content=QUESTION)])
    assert prompt == f"User: {QUESTION}\nAssistant:"
    tokens = shared_model(LlamaBackend().model_path).tokenize(prompt.encode(), add_bos=False)
    assert raw.usage.prompt_tokens == len(tokens) < exact.usage.prompt_tokens
    assert raw.choices[0].message.content != exact.choices[0].message.content


def test_request_faults_on_the_model(fleet: FleetHandle) -> None:
    long = " ".join(f"word{i}" for i in range(200)) + " " + QUESTION
    short = chat(fleet, "short", long, max_tokens=4)
    full = chat(fleet, "exact", long, max_tokens=4)
    overhead = chat(fleet, "exact", "", max_tokens=1).usage.prompt_tokens
    assert short.usage.prompt_tokens <= overhead + 24 < full.usage.prompt_tokens

    capped = chat(fleet, "capped", "Count from 1 to 50.", max_tokens=40)
    assert capped.usage.completion_tokens == 3 and capped.choices[0].finish_reason == "length"

    seeds = {
        chat(fleet, "hot", "Write a word.", max_tokens=6).choices[0].message.content
        for _ in range(4)
    }
    assert len(seeds) > 1  # temperature 0 asked, 1.5 used


def test_context_overflow_is_a_400(fleet: FleetHandle) -> None:
    huge = "hello " * 3000
    with pytest.raises(openai.BadRequestError) as info:
        chat(fleet, "exact", huge, max_tokens=4)
    assert info.value.code == "context_length_exceeded"


def test_weights_are_loaded_once_and_calls_serialized() -> None:
    a, b = LlamaBackend(), LlamaBackend()
    assert shared_model(a.model_path) is shared_model(b.model_path)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with MODEL_LOCK:
            held.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    threading.Timer(0.3, release.set).start()
    t0 = time.monotonic()
    a.generate(ChatRequest(messages=[{"role": "user", "content": "Hi"}], max_tokens=1))
    assert time.monotonic() - t0 >= 0.3  # waited for the lock held elsewhere
    thread.join()
