"""A reasoning model made of one that does not reason: the demo's, documented as an emulation.

SmolLM2 answers directly, so the demo's reasoning model is the same weights asked to think
first, in a fixed two-pass template that the reference engine (`LlamaCppReference.
emulate_reasoning`) and the demo fleet's members run identically:

1. the reasoning pass: the caller's messages, the last user message asking for thinking
   only (`THINK` after its text), answered greedily or as the request samples, in at most
   the effort level's budget of tokens (`EmulatedReasoning.budgets`; a request that names
   no level gets `default_level`'s);
2. the answer pass: the caller's messages, the reasoning as an assistant turn, and a user
   turn asking for the final answer (`ANSWER`), in what is left of the request's
   max_tokens. Nothing left: no answer, finish_reason `length`, as a real reasoning model
   that spends its budget thinking.

The answer's usage is what a real server reports: the prompt as the caller's messages count
(`count_prompt`), the completion as both passes' tokens, `reasoning_tokens` the first's.
Pure but for the `generate` and `count_prompt` callables it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

THINK = (
    "\n\nThink it through step by step. Write out your reasoning in detail; do not give the "
    "final answer yet."
)
ANSWER = "So what is your answer? Reply with the answer only."
DEFAULT_BUDGETS = {"low": 16, "medium": 40, "high": 96}


class EmulatedReasoning(BaseModel):
    """The emulation's settings: the thinking budget of each effort level."""

    model_config = ConfigDict(extra="forbid")

    budgets: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_BUDGETS),
        min_length=1,
        description="Tokens the reasoning pass may take, per effort level.",
    )
    default_level: str = Field(
        default="medium", description="The level of a request that names none."
    )

    @model_validator(mode="after")
    def _default_is_a_level(self) -> EmulatedReasoning:
        if self.default_level not in self.budgets:
            raise ValueError(f"default_level {self.default_level!r} is not one of budgets")
        if any(b < 1 for b in self.budgets.values()):
            raise ValueError("every budget must be at least 1 token")
        return self

    def budget(self, level: str | None) -> int:
        """The thinking budget of `level` (an unknown level gets the default's)."""
        return self.budgets.get(level or self.default_level, self.budgets[self.default_level])


@dataclass(frozen=True)
class Pass:
    """One generation: its text, why it stopped and its token counts."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class ReasonedAnswer:
    reasoning: str
    answer: str | None  # None: the budget ran out while thinking
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int


Messages = list[dict[str, Any]]


def thinking_messages(messages: Messages) -> Messages:
    """The caller's messages with `THINK` after the last user message's text (a turn of its
    own confuses a small model: it answers the instruction, not the request)."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    if last is None or not isinstance(messages[last].get("content"), str):
        return [*messages, {"role": "user", "content": THINK.strip()}]
    turned = {**messages[last], "content": messages[last]["content"] + THINK}
    return [*messages[:last], turned, *messages[last + 1 :]]


def answering_messages(messages: Messages, reasoning: str) -> Messages:
    return [
        *messages,
        {"role": "assistant", "content": reasoning},
        {"role": "user", "content": ANSWER},
    ]


def reason_then_answer(
    messages: Messages,
    max_tokens: int,
    thinking_budget: int,
    generate: Callable[[Messages, int], Pass],
    count_prompt: Callable[[Messages], int],
) -> ReasonedAnswer:
    """Both passes of the module docstring; `generate(messages, max_tokens)` runs the model
    with the request's own sampling, `count_prompt(messages)` counts a prompt's tokens."""
    thought = generate(thinking_messages(messages), max(1, min(thinking_budget, max_tokens)))
    reasoning = thought.text.strip()
    left = max_tokens - thought.completion_tokens
    prompt_tokens = count_prompt(messages)
    if left <= 0:
        return ReasonedAnswer(
            reasoning, None, "length", prompt_tokens, thought.completion_tokens,
            thought.completion_tokens,
        )  # fmt: skip
    answer = generate(answering_messages(messages, reasoning), left)
    return ReasonedAnswer(
        reasoning=reasoning,
        answer=answer.text,
        finish_reason=answer.finish_reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=thought.completion_tokens + answer.completion_tokens,
        reasoning_tokens=thought.completion_tokens,
    )
