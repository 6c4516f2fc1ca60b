"""Reasoning: did the provider return the model's reasoning apart from its answer, and leave
an answer after it?

- `reasoning_leak`: 1.0 if the answer (`content`) holds reasoning markers that a server's
  reasoning parser should have taken out: `<think>` / `</think>` (DeepSeek R1, Qwen3, GLM,
  MiniMax, Kimi K2 Thinking), `<seed:think>`, `[THINK]` (Magistral), Kimi-VL's `◁think▷`,
  gpt-oss's analysis channel (`<|channel|>analysis`, or its text with the special tokens
  dropped: an answer opening with "analysis" that holds "assistantfinal"). 0.0 otherwise;
  None without text (a tool-call-only answer).
- `reasoning_returned`: 1.0 if the provider returned reasoning apart from the answer
  (`reasoning` / `reasoning_content`, non-blank), else 0.0.
- `answer_missing`: 1.0 if there is reasoning (returned or leaked) but no answer after it:
  no content beyond the leaked reasoning and no tool call (the model spent max_tokens
  thinking, or the host returned the reasoning without the answer). 0.0 otherwise.
- `reasoning_chars`: the length of the returned reasoning in characters (a count every
  provider's answer allows, whatever its tokenizer or usage); None without reasoning.

The stored answer is never altered: markers are found in it, not stripped from it.
"""

from __future__ import annotations

import re

from auditor.records import CompletionResponse, ProbeCase, ScoreRecord
from auditor.scorers.base import Scorer, scorers

MAX_MATCHES = 5

THINK_MARKERS = re.compile(
    r"</?think>|</?seed:think>|\[/?THINK\]|◁/?think▷"  # tagged reasoning
    r"|<\|channel\|>\s*analysis",  # gpt-oss (harmony) analysis channel
    re.IGNORECASE,
)
# gpt-oss's channels with the special tokens decoded away: "analysis...assistantfinal..."
HARMONY_TEXT = re.compile(r"^\s*analysis.*?assistantfinal", re.DOTALL)
#: The tags reasoning comes between, (opening, closing).
TAGS = (("<think>", "</think>"), ("<seed:think>", "</seed:think>"), ("[THINK]", "[/THINK]"),
        ("◁think▷", "◁/think▷"))  # fmt: skip
# a reasoning block, closed or running to the end of the answer (what is not the answer)
THINK_BLOCK = re.compile(
    "|".join(f"{re.escape(o)}.*?(?:{re.escape(c)}|$)" for o, c in TAGS)
    + "|^.*?</think>",  # a template may open the block itself
    re.DOTALL | re.IGNORECASE,
)
# a closed block opening the answer, its reasoning captured
_LEADING_BLOCK = re.compile(
    r"^\s*(?:" + "|".join(f"{re.escape(o)}(.*?){re.escape(c)}" for o, c in TAGS) + r")\s*",
    re.DOTALL | re.IGNORECASE,
)


def leaked_reasoning(text: str) -> tuple[str, str] | None:
    """(the reasoning, the answer after it) of an answer that opens with a closed reasoning
    block; None for any other answer."""
    found = _LEADING_BLOCK.match(text)
    if found is None:
        return None
    inside = next(g for g in found.groups() if g is not None)
    return inside.strip(), text[found.end() :]


def leaked_markers(text: str) -> list[str]:
    """The reasoning markers found in an answer's text, in order."""
    found = [m.group(0) for m in THINK_MARKERS.finditer(text)]
    if HARMONY_TEXT.search(text):
        found.append("analysis...assistantfinal")
    return found


def answer_after_reasoning(text: str) -> str:
    """What of `text` is answer: the text without its leaked reasoning blocks."""
    harmony = HARMONY_TEXT.search(text)
    if harmony:
        text = text[harmony.end() :]
    return THINK_BLOCK.sub("", text).strip()


@scorers.register("reasoning")
class ReasoningScorer(Scorer):
    name = "reasoning"

    def score(self, case: ProbeCase, response: CompletionResponse) -> list[ScoreRecord]:
        if not response.ok:
            return []
        text = response.text
        leak = None if text is None else leaked_markers(text)
        returned = bool((response.reasoning or "").strip())
        answer = "" if text is None else answer_after_reasoning(text) if leak else text.strip()
        missing = (returned or bool(leak)) and not answer and not response.tool_calls
        chars = float(len(response.reasoning or "")) if returned else None
        return [
            self._record(
                "reasoning_leak",
                None if leak is None else float(bool(leak)),
                {"markers": (leak or [])[:MAX_MATCHES]},
            ),
            self._record(
                "reasoning_returned", float(returned), {"source": response.reasoning_source}
            ),
            self._record(
                "answer_missing", float(missing), {"finish_reason": response.finish_reason}
            ),
            self._record(
                "reasoning_chars", chars, {"reasoning_tokens": response.usage.reasoning_tokens}
            ),
        ]
