"""Continuation scoring: the chat template from a file, and echoed logprobs of an endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditor.config import EndpointReference
from auditor.providers.continuation import ChatTemplate, ScoringUnavailable, _continuation_scores
from auditor.providers.reference import build_reference

TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_template_from_a_tokenizer_config(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer_config.json"
    path.write_text(json.dumps({"chat_template": TEMPLATE, "eos_token": {"content": "<e>"}}))
    text = ChatTemplate.from_file(path).render([{"role": "user", "content": "Hi"}])
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_a_file_without_template_is_unavailable_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer_config.json"
    path.write_text(json.dumps({"eos_token": "</s>"}))
    with pytest.raises(ScoringUnavailable, match="no chat_template"):
        ChatTemplate.from_file(path)
    with pytest.raises(ScoringUnavailable, match="no such file"):
        ChatTemplate.from_file(tmp_path / "missing.gguf")


def test_endpoint_reference_without_tokenizer_says_why_it_cannot_score() -> None:
    reference = build_reference(
        EndpointReference(engine="endpoint", base_url="http://127.0.0.1:9/v1", model="m")
    )
    assert reference.scorer is None
    assert "tokenizer_path" in (reference.scorer_note or "")


def test_echoed_logprobs_keep_the_continuation_tokens_only() -> None:
    prompt, answer = "<|im_start|>assistant\n", "Tokyo is"
    logprobs = {
        "tokens": ["<|im_start|>", "assistant", "\n", "Tok", "yo", " is", " the"],
        "token_logprobs": [None, -0.5, -0.1, -0.2, -0.01, -1.5, -0.3],
        "top_logprobs": [
            None,
            {"assistant": -0.5},
            {"\n": -0.1},
            {"Tok": -0.2, "The": -2.0},
            {"yo": -0.01},
            {" was": -0.4, " has": -1.0, " is": -1.5},
            {" the": -0.3},
        ],
        "text_offset": [0, 12, 21, 22, 25, 27, 30],
    }
    scores = _continuation_scores(logprobs, len(prompt), len(prompt) + len(answer))
    assert [s.token for s in scores] == ["Tok", "yo", " is"]  # the generated " the" is left out
    assert [s.rank for s in scores] == [0, 0, 2]
    assert scores[2].top[0] == (" was", -0.4)


@pytest.mark.model
async def test_an_endpoint_scores_continuations_as_the_embedded_engine() -> None:
    from auditor_fleet import FleetMember, FleetSpec, running_fleet

    from auditor.config import LlamaCppReference
    from auditor.providers.llama_cpp import LlamaCppEngine, packaged_model_path

    messages = [{"role": "user", "content": "What is the capital of Japan?"}]
    answer = "The capital of Japan is Tokyo, a very large city."
    engine = LlamaCppEngine(LlamaCppReference(engine="llama_cpp", n_ctx=2048))
    expected = engine.score_continuation_sync(messages, answer, top_k=5)
    member = FleetMember(name="exact", port=0, backend="llama", noise=0.0)
    with running_fleet(FleetSpec(members=[member]), timeout_s=120) as fleet:
        reference = build_reference(
            EndpointReference(
                engine="endpoint",
                base_url=fleet.base_url("exact"),
                model="smollm2-135m-instruct",
                tokenizer_path=str(packaged_model_path()),
            )
        )
        assert reference.scorer is not None and reference.scorer_note is None
        try:
            scores = await reference.scorer.score_continuation(messages, answer, top_k=5)
            capped = await reference.scorer.score_continuation(messages, answer, 5, max_tokens=3)
        finally:
            await reference.scorer.aclose()
    assert [s.token for s in scores] == [s.token for s in expected]
    assert [s.logprob for s in scores] == pytest.approx([s.logprob for s in expected], abs=1e-3)
    # ranks agree wherever the engine's rank is visible within the endpoint's top 5
    assert [min(s.rank, 5) for s in expected] == [s.rank for s in scores]
    assert capped == scores[:3]
