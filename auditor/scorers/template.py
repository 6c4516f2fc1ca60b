"""Chat template and request parameters: did the host format the conversation and honour
the request the way the reference engine does?

- `role_leak`: 1.0 if the answer contains chat-template special tokens (`<|im_end|>`,
  `<|eot_id|>`, `<|start_header_id|>`, `<|header_start|>`, any `<|name|>`, DeepSeek's
  full-width-bar (U+FF5C) tokens, `[INST]`, `<<SYS>>`, `<s>`, `</s>`, `<start_of_turn>`,
  `<eos>`, ...) or a line that opens a new turn ("User:", "Assistant:", "Human:",
  "System:", "### Instruction", "### Response", ...), else 0.0. Turn lines inside fenced
  code blocks are ignored (an example dialogue is not a leak); special tokens count
  anywhere. None without text (a tool-call-only answer). A host with a broken template
  makes the model see, and then write, raw markers or the next speaker's turn.
- `stopped_short_at_length`: 1.0 if the answer stopped for length (`finish_reason ==
  "length"`) with fewer completion tokens than the request's max_tokens: the host clamps
  max_tokens below what was asked. 0.0 otherwise; None when no max_tokens was requested or
  the usage has no completion_tokens.
- `over_max_tokens`: 1.0 if completion_tokens exceeds the requested max_tokens, else 0.0
  (None as above).
- `prompt_tokens`: the usage's prompt_tokens, to be compared with the reference
  tokenizer's count (an injected system prompt or a different template adds tokens).

The requested max_tokens is read from the request as sent (`raw_request`: `max_tokens`,
else `max_completion_tokens`), falling back to the case's params. Whether a system prompt
was honoured is left to the `expect` scorer (e.g. a password given in the system prompt).
"""

from __future__ import annotations

import re
from typing import Any

from auditor.records import CompletionResponse, ProbeCase, ScoreRecord
from auditor.scorers.base import Scorer, scorers
from auditor.scorers.text import strip_code

MAX_MATCHES = 5

SPECIAL_TOKENS = re.compile(
    r"<\|[A-Za-z0-9_.\-]{1,40}\|>"  # ChatML, Llama 3/4, Phi, GPT-OSS: <|im_end|>, <|eot|>
    r"|<\uff5c[^\uff5c>\n]{1,40}\uff5c>"  # DeepSeek: the same, with U+FF5C bars
    r"|\[/?INST\]|<</?SYS>>"  # Llama 2, Mistral
    r"|\[/?(?:SYSTEM_PROMPT|AVAILABLE_TOOLS|TOOL_CALLS|TOOL_RESULTS)\]"  # Mistral v3+
    r"|</?s>"  # SentencePiece begin/end of sequence
    r"|<(?:start|end)_of_turn>|<(?:bos|eos)>"  # Gemma
)
TURN_LINE = re.compile(
    r"^[ \t]*(?:\*\*)?(?:user|assistant|human|system)(?:\*\*)?[ \t]*:(?:\*\*)?"
    r"|^[ \t]*#{2,4}[ \t]*(?:instruction|response|input|human|assistant|user|system)\b",
    re.IGNORECASE | re.MULTILINE,
)


def role_markers(text: str) -> list[str]:
    """The special tokens and turn lines found in an answer, in order of kind."""
    prose = strip_code(text, "\n")
    found = [m.group(0) for m in SPECIAL_TOKENS.finditer(text)]
    found += [m.group(0).strip() for m in TURN_LINE.finditer(prose)]
    return found


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def requested_max_tokens(case: ProbeCase, response: CompletionResponse) -> tuple[int | None, str]:
    """(max_tokens, where it was read): the request as sent wins over the case's params,
    because provider config may add or override request fields."""
    for key in ("max_tokens", "max_completion_tokens"):
        value = _positive_int(response.raw_request.get(key))
        if value is not None:
            return value, f"raw_request.{key}"
    if case.params.max_tokens is not None:
        return case.params.max_tokens, "case.params"
    return None, "none"


@scorers.register("template")
class TemplateScorer(Scorer):
    name = "template"

    def __init__(self, **params: Any) -> None:
        params = {"markers": "v1", **params}
        if params["markers"] != "v1":
            raise ValueError(f"unknown template markers {params['markers']!r} (known: v1)")
        super().__init__(**params)

    def score(self, case: ProbeCase, response: CompletionResponse) -> list[ScoreRecord]:
        if not response.ok:
            return []
        max_tokens, source = requested_max_tokens(case, response)
        usage = response.usage
        tokens = usage.completion_tokens
        budget = {
            "max_tokens": max_tokens,
            "max_tokens_from": source,
            "completion_tokens": tokens,
            "finish_reason": response.finish_reason,
        }
        short: float | None = None
        over: float | None = None
        if max_tokens is not None and tokens is not None:
            short = float(response.finish_reason == "length" and tokens < max_tokens)
            over = float(tokens > max_tokens)
        leak = None if response.text is None else role_markers(response.text)
        return [
            self._record(
                "role_leak",
                None if leak is None else float(bool(leak)),
                {"markers": (leak or [])[:MAX_MATCHES]},
            ),
            self._record("stopped_short_at_length", short, budget),
            self._record("over_max_tokens", over, budget),
            self._record(
                "prompt_tokens",
                None if usage.prompt_tokens is None else float(usage.prompt_tokens),
            ),
        ]
