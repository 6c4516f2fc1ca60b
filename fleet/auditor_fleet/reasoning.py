"""A fleet member serving the demo's emulated reasoning model, and its `reasoning_leak` fault.

SmolLM2 does not reason, so the demo's reasoning model is the same weights run in the fixed
two-pass template of `auditor.providers.reasoning_emulation` (a thinking pass in the effort
level's budget, then an answering pass), which the reference engine runs too
(`LlamaCppReference.emulate_reasoning`). A member with `reasoning` set answers every chat
request that way through its own backend, so its planted noise, weights and prompt format
apply to both passes, and returns the reasoning apart from the answer in the field it
names (`Generation.reasoning`; `answers.ChatAnswer` puts it on the wire).

The passes run with the request's own sampling, stops and seed (each pass its own noise
draw, derived from the seed when there is one); `response_format` constrains the answer
only, as a server's structured output waits for the end of the reasoning. Usage: the prompt
as the caller's messages count (`Backend.count_prompt`), the completion as both passes'
tokens. A reasoning answer carries no token logprobs, as the reference engine's emulation
reports none.

`reasoning_leak` (a fraction `strength` of requests) leaves the reasoning in the content as
llama.cpp's server does with `--reasoning-format none` (`leaked`), with no reasoning field.
`effort_ignored` is a request fault (`server._Member._rewrite` drops the level).
"""

from __future__ import annotations

import random
from typing import Any, Literal

from auditor.providers.reasoning_emulation import EmulatedReasoning, Pass, reason_then_answer
from auditor_fleet.backends import Backend, ChatMessage, ChatRequest, Generation
from auditor_fleet.llama_backend import DEFAULT_MAX_TOKENS
from auditor_fleet.spec import FleetMember


def leaked(reasoning: str, answer: str | None) -> str:
    """The content of an answer whose reasoning was not parsed out (`reasoning_leak`):
    `<think>{reasoning}</think>` and two newlines before the answer, or `<think>{reasoning}`
    alone when the thinking used every token (no answer)."""
    if answer is None:
        return f"<think>{reasoning}"
    return f"<think>{reasoning}</think>\n\n{answer}"


class ReasoningModel:
    """One reasoning member's emulated reasoning model: its field and its leak."""

    def __init__(self, member: FleetMember, seed: int) -> None:
        self.field = member.reasoning
        self.emulation = EmulatedReasoning()
        self.leak_share = member.effective_strength() if member.fault == "reasoning_leak" else 0
        self.rng = random.Random(f"{seed}/{member.name}/reasoning")

    @classmethod
    def of(cls, member: FleetMember, seed: int) -> ReasoningModel | None:
        """The member's reasoning model; None for a plain model's member."""
        return cls(member, seed) if member.reasoning is not None else None

    def generate(self, backend: Backend, request: ChatRequest) -> Generation:
        """Both passes of `request` on `backend` (call on its worker: `Backend.acall`)."""
        messages: list[dict[str, Any]] = [
            {"role": m.role, "content": m.text()} for m in request.messages
        ]
        passes: list[Generation] = []

        def generate(turns: list[dict[str, Any]], max_tokens: int) -> Pass:
            answering = bool(passes)  # the second pass answers; only it is structured
            turn = request.model_copy(
                update={
                    "messages": [ChatMessage(**t) for t in turns],
                    "max_tokens": max_tokens,
                    "response_format": request.response_format if answering else None,
                }
            )
            gen = backend.generate(turn)
            passes.append(gen)
            return Pass(gen.text, gen.finish_reason, gen.prompt_tokens, gen.completion_tokens)

        def count(turns: list[dict[str, Any]]) -> int:
            asked = request.model_copy(update={"messages": [ChatMessage(**t) for t in turns]})
            counted = backend.count_prompt(asked)
            return passes[0].prompt_tokens if counted is None else counted

        reasoned = reason_then_answer(
            messages,
            request.max_tokens or DEFAULT_MAX_TOKENS,
            self.emulation.budget(request.effort()),
            generate,
            count,
        )
        finish: Literal["stop", "length"] = (
            "length" if reasoned.finish_reason == "length" else "stop"
        )
        text, reasoning = reasoned.answer or "", reasoned.reasoning
        leak = self.rng.random() < self.leak_share
        return Generation(
            text=leaked(reasoning, reasoned.answer) if leak else text,
            reasoning=None if leak else reasoning,
            finish_reason=finish,
            prompt_tokens=reasoned.prompt_tokens,
            completion_tokens=reasoned.completion_tokens,
        )
