"""The emulated reasoning model: two passes, the thinking budget by effort level, what is left
of max_tokens for the answer, usage as a server reports it; and the reference engine running
it on the real weights, its reasoning returned apart."""

from __future__ import annotations

from typing import Any

import pytest

from auditor.config import LlamaCppReference
from auditor.providers.reasoning_emulation import (
    THINK,
    EmulatedReasoning,
    Pass,
    reason_then_answer,
    thinking_messages,
)
from auditor.records import CompletionRequest, Message, RequestParams

QUESTION = [{"role": "user", "content": "What is 17 + 25?"}]


class Model:
    """A stand-in that thinks in as many tokens as it is allowed and records its calls."""

    def __init__(self, thought_tokens: int = 500) -> None:
        self.calls: list[tuple[list[dict[str, Any]], int]] = []
        self.thought_tokens = thought_tokens

    def __call__(self, turns: list[dict[str, Any]], max_tokens: int) -> Pass:
        self.calls.append((turns, max_tokens))
        if len(self.calls) == 1:
            used = min(max_tokens, self.thought_tokens)
            finish = "length" if used == max_tokens else "stop"
            return Pass("step " * used, finish, 30, used)
        return Pass("42", "stop", 60, 2)


def test_the_budget_follows_the_effort_and_the_answer_gets_what_is_left() -> None:
    emulation = EmulatedReasoning()
    for level, budget in (("low", 16), ("medium", 40), ("high", 96), (None, 40)):
        model = Model()
        answer = reason_then_answer(QUESTION, 200, emulation.budget(level), model, lambda m: 12)
        assert model.calls[0][1] == budget
        assert model.calls[1][1] == 200 - budget  # max_tokens covers both passes
        assert answer.answer == "42" and answer.reasoning_tokens == budget
        assert (answer.prompt_tokens, answer.completion_tokens) == (12, budget + 2)
    thinking, _ = model.calls[0]
    assert thinking[-1]["content"] == QUESTION[0]["content"] + THINK  # asked in the same turn
    answering, _ = model.calls[1]
    assert answering[-2] == {"role": "assistant", "content": answer.reasoning}


def test_a_budget_spent_thinking_leaves_no_answer() -> None:
    model = Model()
    answer = reason_then_answer(QUESTION, 30, 96, model, lambda m: 12)
    assert len(model.calls) == 1 and model.calls[0][1] == 30
    assert answer.answer is None and answer.finish_reason == "length"
    assert answer.reasoning_tokens == answer.completion_tokens == 30


def test_thinking_without_a_user_text_gets_a_turn_of_its_own() -> None:
    turns = [{"role": "user", "content": None, "tool_calls": []}]
    assert thinking_messages(turns)[-1] == {"role": "user", "content": THINK.strip()}


def test_bad_emulation_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="default_level"):
        EmulatedReasoning(budgets={"low": 8}, default_level="medium")
    with pytest.raises(ValueError, match="at least 1"):
        EmulatedReasoning(budgets={"medium": 0})


@pytest.mark.slow  # the real model
def test_the_reference_engine_reasons_apart_and_longer_at_a_higher_effort() -> None:
    from auditor.providers.llama_cpp import LlamaCppEngine

    plain = LlamaCppEngine(LlamaCppReference(engine="llama_cpp", n_ctx=1024, n_threads=1))
    engine = LlamaCppEngine(
        LlamaCppReference(engine="llama_cpp", n_ctx=1024, n_threads=1, emulate_reasoning={})
    )
    assert engine.digest.startswith(plain.digest) and engine.digest != plain.digest

    def ask(level: str, max_tokens: int = 160) -> Any:
        return engine.complete_sync(
            CompletionRequest(
                probe_id="p",
                probe_hash="h",
                sample_index=0,
                messages=[Message(role="user", content="What is the capital of France?")],
                params=RequestParams(temperature=0, max_tokens=max_tokens),
                reasoning_effort=level,
            )
        )

    low, high = ask("low"), ask("high")
    for answer in (low, high):
        assert answer.ok and answer.reasoning and answer.reasoning_source == "reasoning"
        assert "<think>" not in (answer.text or "")
        assert answer.usage.reasoning_tokens and answer.usage.completion_tokens
        assert answer.usage.completion_tokens > answer.usage.reasoning_tokens
    assert low.usage.reasoning_tokens == 16 and high.usage.reasoning_tokens > 16
    assert len(high.reasoning or "") > len(low.reasoning or "")
    again = ask("low")  # greedy: the same reasoning and answer every time
    assert (again.reasoning, again.text) == (low.reasoning, low.text)
    spent = ask("high", max_tokens=20)
    assert spent.ok and spent.text is None and spent.finish_reason == "length"
    assert spent.reasoning and spent.usage.reasoning_tokens == 20
