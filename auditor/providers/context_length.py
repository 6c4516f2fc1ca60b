"""A provider's "the prompt is longer than my context allows" answer, and the counts it states.

A provider that refuses a long prompt below the window it advertises is a finding about its
effective context window, not an outage: such an answer is recorded as the error class
`context_length_exceeded` (whatever its HTTP status), and the token counts the answer states
are kept at the start of the sample's `error_message` (`ContextOverflow.note`), where a judge
reads them back (`ContextOverflow.from_error_message`) to report "breaks at N tokens".

Recognised from the error bodies the serving engines and APIs send (recorded examples, with
their sources, in tests/providers/wire_examples/context_length/):

- vLLM, HTTP 400, `{"error": {"message", "type": "BadRequestError", "param", "code": 400}}`
  (before late 2025 the same fields at the top level, with `"object": "error"`): "This
  model's maximum context length is M tokens. However, you requested T tokens (N in the
  messages, K in the completion)..." and its later wordings ("your request has N input
  tokens", "you requested K output tokens and your prompt contains at least N input tokens",
  "'max_tokens' or 'max_completion_tokens' is too large: K"), the renderer's "You passed N
  input tokens and requested K output tokens. However, the model's context length is only M
  tokens", and the engine's "The decoder prompt (length N) is longer than the maximum model
  length of M" / "The prompt (total length N) is too long to fit into the model (context
  length M)";
- SGLang, HTTP 400, `{"object": "error", "message", "type", "param", "code"}`: "The input (N
  tokens) is longer than the model's context length (M tokens)." and "Requested token count
  exceeds the model's maximum context length of M tokens. You requested a total of T tokens:
  N tokens from the input messages and K tokens for the completion...";
- llama.cpp's server, HTTP 400 with `"type": "exceed_context_size_error"` and the fields
  `n_prompt_tokens`, `n_ctx` ("request (N tokens) exceeds the available context size (M
  tokens), try increasing it"); older builds "the request exceeds the available context
  size. try increasing the context size or enable context shift" (400), "input is larger
  than the max context size. skipping" and "Input prompt is too big compared to KV size"
  (500);
- llama-cpp-python's server (`"code": "context_length_exceeded"`, OpenAI's wording), its
  library's own "Requested tokens (N) exceed context window of M" (the auditor's reference
  engine, the fleet's model members), and the HTTP 500 its server answers when a prompt that
  passed its check runs past n_ctx while evaluated: "could not broadcast input array from
  shape (N,) into shape (M,)" (its buffers hold n_ctx tokens; no count stated);
- OpenAI (`"code": "context_length_exceeded"`; "your messages resulted in N tokens") and
  OpenRouter ("This endpoint's maximum context length is M tokens. However, you requested
  about T tokens (X of text input, Y of tool input, K in the output)").

An error that only says "context length" in passing, a rate limit on tokens per minute, a
bad sampling parameter or a batch too large for the server are not overflows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Literal

CODE = "context_length_exceeded"
LLAMA_CPP_TYPE = "exceed_context_size_error"

# Phrases that say the request does not fit the context; `limit` where the phrase states it.
_ANCHORS = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"maximum context length is (?P<limit>\d+)",  # OpenAI, vLLM, llama-cpp-python, OpenRouter
        r"longer than the model's context length \((?P<limit>\d+) tokens\)",  # SGLang
        r"requested token count exceeds the model's maximum context length of (?P<limit>\d+)",
        r"is longer than the maximum model length of (?P<limit>\d+)",  # vLLM's engine
        r"is too long to fit into the model \(context length (?P<limit>\d+)\)",  # vLLM V0
        r"the model's context length is only (?P<limit>\d+) tokens",  # vLLM's renderer
        r"exceeds the available context size(?: \((?P<limit>\d+) tokens\))?",  # llama.cpp
        r"is larger than the max context size(?: \((?P<limit>\d+) tokens\))?",  # llama.cpp
        r"input prompt is too big compared to kv size",  # llama.cpp, before ctx_shift
        r"exceed context window of (?P<limit>\d+)",  # llama-cpp-python's library
        # llama-cpp-python's Llama.eval: prompt and answer past n_ctx overflow its numpy
        # buffers (HTTP 500 from its server; abetlen/llama-cpp-python#657)
        r"could not broadcast input array from shape \(\d+,\) into shape \(\d+,\)",
    )
)

#: How exact a stated prompt count is: exact, a lower bound ("at least N", vLLM) or an estimate
#: ("about", OpenRouter).
PromptCount = Literal["exact", "at_least", "about"]
_RELATION: dict[str, PromptCount] = {"=": "exact", ">=": "at_least", "~=": "about"}

# Where the same message states the prompt's count (and the completion counted with it); the
# first that matches gives each.
_COUNTS = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\((?P<prompt>\d+) in the messages, (?P<completion>\d+|none) in the completion\)",
        r"\((?P<prompt>\d+) in your prompt; (?P<completion>\d+|none) for the completion\)",
        r"your messages resulted in (?P<prompt>\d+) tokens",
        r"you requested (?P<prompt>\d+) tokens in the (?:messages|input)",
        r"you requested (?P<completion>\d+) output tokens and your prompt contains "
        r"(?:at least )?(?P<prompt>\d+) input tokens",
        r"your request has (?P<prompt>\d+) input tokens(?: plus (?P<completion>\d+))?",
        r"'max_tokens' or 'max_completion_tokens' is too large: (?P<completion>\d+)",
        r"the input \((?P<prompt>\d+) tokens\)",
        r"(?P<prompt>\d+) tokens from the input messages and (?P<completion>\d+) tokens",
        r"prompt \(length (?P<prompt>\d+)\)(?: plus the number of requested output tokens "
        r"\(at least (?P<completion>\d+)\))?",
        r"prompt \(total length (?P<prompt>\d+)\)",
        r"you passed (?P<prompt>\d+) input tokens and requested (?P<completion>\d+) output",
        r"you passed \d+ input characters and requested (?P<completion>\d+) output",
        r"request \((?P<prompt>\d+) tokens\) exceeds",
        r"input \((?P<prompt>\d+) tokens\) is larger",
        r"requested tokens \((?P<prompt>\d+)\) exceed",
    )
)
# Counts that are lower bounds: vLLM's renderer tokenizes a prompt only up to the room left +
# 1 tokens, so the count it reports of a prompt too long is that, whatever the prompt's length
# (vllm/renderers/params.py, TokenizeParams.get_encode_kwargs); since 2026 it says "at least".
_AT_LEAST = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"your prompt contains at least (?P<prompt>\d+) input tokens",
        r"you passed (?P<prompt>\d+) input tokens and requested",
    )
)
# OpenRouter: "you requested about T tokens (X of text input, Y of tool input, K in the output)"
_ABOUT = re.compile(r"you requested about \d+ tokens \((?P<parts>[^)]*)\)", re.IGNORECASE)
_INPUT_PART = re.compile(r"(\d+) of [a-z ]*?input", re.IGNORECASE)
_OUTPUT_PART = re.compile(r"(\d+) in the output", re.IGNORECASE)

_NOTE = re.compile(
    r"^context length exceeded(?::(?: prompt_tokens(?P<rel>=|>=|~=)(?P<prompt>\d+))?"
    r"(?: completion_tokens=(?P<completion>\d+))?(?: limit=(?P<limit>\d+))?)?(?:;|$)"
)
_MAX_COUNT = 2**31 - 1  # a count a database integer column holds


@dataclass(frozen=True)
class ContextOverflow:
    """A refusal of a request as too long for the context, with what the provider stated.

    `prompt_tokens`: the prompt as the provider counted it, exactly or not (`prompt_count`).
    `completion_tokens`: the completion it counted against the window with the prompt (the
    request's max_tokens, or its own default). `limit`: the context window it states. Any of
    them may be unknown (None): llama.cpp's older builds state no count at all.
    """

    prompt_tokens: int | None = None
    limit: int | None = None
    completion_tokens: int | None = None
    prompt_count: PromptCount = "exact"

    def note(self) -> str:
        """The canonical start of the sample's error message, which `from_error_message`
        reads back: "context length exceeded: prompt_tokens=2084 completion_tokens=16
        limit=2048" (">=" for a lower bound, "~=" for an estimate; unknowns left out)."""
        parts = []
        if self.prompt_tokens is not None:
            relation = {v: k for k, v in _RELATION.items()}[self.prompt_count]
            parts.append(f"prompt_tokens{relation}{self.prompt_tokens}")
        if self.completion_tokens is not None:
            parts.append(f"completion_tokens={self.completion_tokens}")
        if self.limit is not None:
            parts.append(f"limit={self.limit}")
        return "context length exceeded" + (": " + " ".join(parts) if parts else "")

    @classmethod
    def from_error_message(cls, message: str | None) -> ContextOverflow | None:
        """The counts a stored `context_length_exceeded` sample's `error_message` starts with
        (written by `note`); None for any other message."""
        match = _NOTE.match(message or "")
        if match is None:
            return None
        return cls(
            prompt_tokens=_count(match["prompt"]),
            limit=_count(match["limit"]),
            completion_tokens=_count(match["completion"]),
            prompt_count=_RELATION[match["rel"] or "="],
        )


def overflow_in_text(text: str) -> ContextOverflow | None:
    """The overflow an error message states, or None when it states something else."""
    anchor = next((m for p in _ANCHORS if (m := p.search(text))), None)
    if anchor is None:
        return None
    found: dict[str, str | None] = {"limit": anchor.groupdict().get("limit")}
    how: PromptCount = "exact"
    for pattern in _COUNTS:
        match = pattern.search(text)
        if match is None:
            continue
        for key in ("prompt", "completion"):
            value = match.groupdict().get(key)
            if found.get(key) is None and value is not None:
                found[key] = value
    if any((m := p.search(text)) and m["prompt"] == found.get("prompt") for p in _AT_LEAST):
        how = "at_least"
    about = _ABOUT.search(text)
    if about is not None and found.get("prompt") is None:
        inputs = [int(n) for n in _INPUT_PART.findall(about["parts"])]
        output = _OUTPUT_PART.search(about["parts"])
        if inputs:
            found["prompt"], how = str(sum(inputs)), "about"
        if output is not None and found.get("completion") is None:
            found["completion"] = output[1]
    return ContextOverflow(
        prompt_tokens=_count(found.get("prompt")),
        limit=_count(found.get("limit")),
        completion_tokens=_count(found.get("completion")),
        prompt_count=how,
    )


def context_overflow(payload: Any) -> ContextOverflow | None:
    """The overflow an error body states (a decoded JSON body, or `{"raw_text": ...}` for one
    that is not JSON), or None when the body says something else.

    Read: the error object (`{"error": {...}}`, `{"error": "..."}`, or its fields at the top
    level as older vLLM and SGLang send them); its `code` ("context_length_exceeded": OpenAI,
    llama-cpp-python) or `type` ("exceed_context_size_error": llama.cpp) alone suffice; else
    its message (or the upstream error OpenRouter passes on in `metadata.raw`) must say that
    the request exceeds the context, in one of the wordings above. Counts come from the
    message, and from llama.cpp's `n_prompt_tokens` and `n_ctx` fields, which take precedence.
    """
    error = _error_object(payload)
    if error is None:
        return None
    texts = [t for t in (error.get("message"), _raw_upstream(error)) if isinstance(t, str)]
    overflow = next((o for t in texts if (o := overflow_in_text(t)) is not None), None)
    flagged = error.get("code") == CODE or error.get("type") == LLAMA_CPP_TYPE
    if overflow is None:
        if not flagged:
            return None
        overflow = ContextOverflow()
    n_prompt, n_ctx = _field(error.get("n_prompt_tokens")), _field(error.get("n_ctx"))
    if n_prompt is not None:
        overflow = replace(overflow, prompt_tokens=n_prompt, prompt_count="exact")
    if n_ctx is not None:
        overflow = replace(overflow, limit=n_ctx)
    return overflow


def _error_object(payload: Any) -> dict[str, Any] | None:
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, dict):
        return error
    if isinstance(error, str):
        return {"message": error}
    if isinstance(payload.get("message"), str):
        return payload  # vLLM before its ErrorInfo, SGLang: the fields at the top level
    for key in ("detail", "raw_text"):
        if isinstance(payload.get(key), str):
            return {"message": payload[key]}
    return None


def _raw_upstream(error: dict[str, Any]) -> str | None:
    metadata = error.get("metadata")
    raw = metadata.get("raw") if isinstance(metadata, dict) else None
    return raw if isinstance(raw, str) else None


def _count(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    count = int(value)
    return count if count <= _MAX_COUNT else None


def _field(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= _MAX_COUNT else None
