"""The fleet's model backend on the real packaged GGUF, spoken to by the official openai client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from itertools import accumulate
from typing import Any

import openai
import pytest
from auditor_fleet import (
    DEFAULT_MODEL,
    ChatMessage,
    ChatRequest,
    FleetMember,
    FleetSpec,
    LlamaBackend,
)
from auditor_fleet.llama_model import MODEL_LOCK, raw_prompt, shared_model
from auditor_fleet.process import FleetHandle, running_fleet

from auditor.config import LlamaCppReference
from auditor.providers.llama_cpp import LlamaCppEngine
from auditor.records import CompletionRequest, Message, RequestParams

pytestmark = pytest.mark.model

MEMBERS: list[dict[str, Any]] = [
    {"name": "exact", "noise": 0.0},
    {"name": "noisy", "noise": 0.5},
    {"name": "raw", "fault": "wrong_template"},
    {"name": "rawexact", "fault": "wrong_template", "noise": 0.0},
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


@pytest.fixture(scope="module")
def engine() -> LlamaCppEngine:
    return LlamaCppEngine(LlamaCppReference(engine="llama_cpp", n_ctx=2048))


def client(fleet: FleetHandle, name: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=fleet.base_url(name), api_key="x", max_retries=0, timeout=120)


def chat(fleet: FleetHandle, name: str, content: str = QUESTION, **kwargs: Any) -> Any:
    kwargs.setdefault("messages", [{"role": "user", "content": content}])
    kwargs.setdefault("temperature", 0)
    kwargs.setdefault("max_tokens", 12)
    return client(fleet, name).chat.completions.create(model=DEFAULT_MODEL, **kwargs)


def complete(fleet: FleetHandle, name: str, prompt: str, **kwargs: Any) -> Any:
    kwargs.setdefault("temperature", 0)
    return client(fleet, name).completions.create(model=DEFAULT_MODEL, prompt=prompt, **kwargs)


@pytest.mark.slow
def test_without_noise_a_member_answers_as_the_reference_engine(
    fleet: FleetHandle, engine: LlamaCppEngine
) -> None:
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


@pytest.mark.slow
def test_logits_noise_moves_logprobs_but_not_a_confident_answer(fleet: FleetHandle) -> None:
    exact = chat(fleet, "exact", logprobs=True)
    noisy = chat(fleet, "noisy", logprobs=True)
    assert "paris" in noisy.choices[0].message.content.lower()
    a = [t.logprob for t in exact.choices[0].logprobs.content]
    b = [t.logprob for t in noisy.choices[0].logprobs.content]
    assert a[: len(b)] != b[: len(a)]  # not bit for bit, as real GPU serving


@pytest.mark.slow
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


@pytest.mark.slow
def test_stream_is_sent_while_the_answer_is_generated(fleet: FleetHandle) -> None:
    story = "Tell me a long story about a dragon who learns to fly."
    whole = chat(fleet, "exact", story, max_tokens=64)
    start = time.monotonic()
    stream = chat(
        fleet, "exact", story, max_tokens=64, stream=True, stream_options={"include_usage": True}
    )
    first_content: float | None = None
    chunks = []
    for chunk in stream:
        chunks.append(chunk)
        if first_content is None and chunk.choices and chunk.choices[0].delta.content:
            first_content = time.monotonic()
    end = time.monotonic()
    assert first_content is not None
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens >= 32
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 5
    # the answer came as it was generated, not all at once at the end
    assert end - first_content > 0.3 * (end - start)


@pytest.mark.slow
def test_streamed_and_whole_answers_agree(fleet: FleetHandle) -> None:
    for name in ("exact", "rawexact"):
        for content in (QUESTION, "Write one sentence about a cat."):
            whole = chat(fleet, name, content, max_tokens=24)
            streamed = chat(fleet, name, content, max_tokens=24, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
            assert text == whole.choices[0].message.content


@pytest.mark.slow
def test_a_client_leaving_a_stream_does_not_break_the_member(fleet: FleetHandle) -> None:
    story = "Tell me a long story about a dragon who learns to fly."
    stream = chat(fleet, "exact", story, max_tokens=64, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()  # gone mid-answer: the generation finishes unread
    answer = chat(fleet, "exact")
    assert "paris" in answer.choices[0].message.content.lower()


@pytest.mark.slow
def test_wrong_template_sends_raw_text(fleet: FleetHandle) -> None:
    raw = chat(fleet, "raw", max_tokens=8)
    exact = chat(fleet, "exact", max_tokens=8)
    # no chat template: no default system prompt, no special tokens, just "User: ..." lines
    prompt = raw_prompt([ChatMessage(role="user", content=QUESTION)])
    assert prompt == f"User: {QUESTION}\nAssistant:"
    tokens = shared_model(LlamaBackend().model_path).tokenize(prompt.encode(), add_bos=False)
    assert raw.usage.prompt_tokens == len(tokens) < exact.usage.prompt_tokens
    assert raw.choices[0].message.content != exact.choices[0].message.content


@pytest.mark.slow
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
    with pytest.raises(openai.BadRequestError) as info:
        complete(fleet, "exact", huge, echo=True, max_tokens=0, logprobs=1)
    assert info.value.code == "context_length_exceeded"


# --- text completions (/v1/completions) -----------------------------------------------------

MESSAGES = [{"role": "user", "content": QUESTION}]
ANSWER = "The capital of France is Paris. It is a beautiful city."


@pytest.mark.slow
def test_echo_scores_the_prompt_as_the_reference_does(fleet: FleetHandle) -> None:
    # An engine of its own: one that has answered before may reuse rows of logits computed
    # one token at a time, which differ from those of a whole evaluation.
    engine = LlamaCppEngine(LlamaCppReference(engine="llama_cpp", n_ctx=2048))
    prefix = engine.chat_prompt(MESSAGES)
    prompt = prefix + ANSWER
    result = complete(fleet, "exact", prompt, echo=True, max_tokens=0, logprobs=5)
    choice = result.choices[0]
    lp = choice.logprobs
    assert choice.text == prompt and choice.finish_reason == "length"
    assert result.object == "text_completion"
    assert result.usage.prompt_tokens == len(lp.tokens) and result.usage.completion_tokens == 0
    assert "".join(lp.tokens) == prompt
    assert lp.text_offset == list(accumulate([0, *(len(t) for t in lp.tokens[:-1])]))
    assert lp.tokens.count("<|im_start|>") == 3  # the template's special tokens, one token each
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    for logprob, top in zip(lp.token_logprobs[1:], lp.top_logprobs[1:], strict=True):
        assert logprob <= 0
        assert 0 < len(top) <= 5
        assert max(top.values()) >= logprob - 1e-6
        assert list(top.values()) == sorted(top.values(), reverse=True)

    # the answer's tokens: those from the end of the chat prompt on
    start = lp.text_offset.index(len(prefix))
    reference = engine.score_continuation_sync(MESSAGES, ANSWER, top_k=5)
    assert [s.token for s in reference] == lp.tokens[start:]
    ours = lp.token_logprobs[start:]
    assert ours == pytest.approx([s.logprob for s in reference], abs=1e-4)
    for top, score in zip(lp.top_logprobs[start:], reference, strict=True):
        assert max(top.values()) == pytest.approx(score.top[0][1], abs=1e-4)

    # with a token to generate, the prompt scores the same, and the continuation follows
    more = complete(fleet, "exact", prompt, echo=True, max_tokens=1, logprobs=5)
    scored = more.choices[0].logprobs
    assert more.choices[0].text.startswith(prompt) and more.usage.completion_tokens <= 1
    assert len(scored.tokens) == len(lp.tokens) + more.usage.completion_tokens
    assert scored.tokens[: len(lp.tokens)] == lp.tokens and scored.token_logprobs[0] is None
    n = len(lp.tokens)
    assert scored.token_logprobs[1:n] == pytest.approx(lp.token_logprobs[1:], abs=1e-6)


@pytest.mark.slow
def test_text_completion_continues_as_chat_does(fleet: FleetHandle, engine: LlamaCppEngine) -> None:
    prefix = engine.chat_prompt(MESSAGES)
    answer = chat(fleet, "exact", max_tokens=10, logprobs=True, top_logprobs=2)
    content = answer.choices[0].message.content
    result = complete(fleet, "exact", prefix, max_tokens=10, logprobs=2)
    choice = result.choices[0]
    assert choice.text == content
    assert result.usage.prompt_tokens == answer.usage.prompt_tokens
    assert result.usage.completion_tokens == answer.usage.completion_tokens
    assert choice.finish_reason == answer.choices[0].finish_reason
    lp = choice.logprobs
    assert "".join(lp.tokens) == content and lp.text_offset[0] == 0
    assert lp.token_logprobs == pytest.approx(
        [t.logprob for t in answer.choices[0].logprobs.content], abs=1e-5
    )
    assert all(len(top) <= 2 for top in lp.top_logprobs)

    echoed = complete(fleet, "exact", prefix, max_tokens=10, echo=True, logprobs=2)
    assert echoed.choices[0].text == prefix + content
    tokens = echoed.choices[0].logprobs.tokens
    assert "".join(tokens) == prefix + content
    assert echoed.choices[0].logprobs.token_logprobs[-len(lp.tokens) :] == pytest.approx(
        lp.token_logprobs, abs=1e-5
    )
    plain = complete(fleet, "exact", prefix, max_tokens=10, echo=True)
    assert plain.choices[0].text == prefix + content and plain.choices[0].logprobs is None

    stop = content[-4:]
    stopped = complete(fleet, "exact", prefix, max_tokens=10, stop=[stop])
    assert stopped.choices[0].text == content[: content.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"


@pytest.mark.slow
def test_text_completion_carries_the_members_noise(
    fleet: FleetHandle, engine: LlamaCppEngine
) -> None:
    prompt = engine.chat_prompt(MESSAGES) + ANSWER
    exact = complete(fleet, "exact", prompt, echo=True, max_tokens=0, logprobs=1)
    again = complete(fleet, "exact", prompt, echo=True, max_tokens=0, logprobs=1)
    noisy = complete(fleet, "noisy", prompt, echo=True, max_tokens=0, logprobs=1)
    a = exact.choices[0].logprobs.token_logprobs[1:]
    assert again.choices[0].logprobs.token_logprobs[1:] == a  # no noise: bit for bit
    b = noisy.choices[0].logprobs.token_logprobs[1:]
    assert noisy.choices[0].logprobs.tokens == exact.choices[0].logprobs.tokens
    assert a != b  # not bit for bit, as real GPU serving
    assert sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a) < 1.5


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
