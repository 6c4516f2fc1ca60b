"""One sample of one endpoint as the comparisons read it: what was asked, what came back, and
its scores. Loaded from the database by `auditor.storage.observations`; built directly by
tests and by calibration's simulated rounds."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Observation:
    """One sample of one endpoint, with its probe and its scores."""

    model: str
    endpoint: str
    kind: str  # provider | reference
    trusted: bool
    probe_id: str
    probe_hash: str
    sample_index: int
    ok: bool
    text: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    error_class: str | None
    case: dict[str, Any]
    scores: dict[str, float | None] = field(default_factory=dict)
    tool_calls: list[dict[str, Any]] | None = None  # OpenAI format, as the answer had them
    logprobs: list[dict[str, Any]] | None = None  # per token, OpenAI format, when returned
    served_model: str | None = None  # the `model` field of the response
    # The answer's steps under the reference weights (`auditor.scorers.reference_likelihood.
    # token_trace`): `rank`, `gap` and `near` per token; None where it was not scored.
    trace: dict[str, Any] | None = None
    requested_model: str | None = None  # the model id the provider was asked for
    # Why it failed, as stored; a context-length refusal's starts with the counts the provider
    # stated (`auditor.providers.context_length.ContextOverflow.from_error_message`).
    error_message: str | None = None
    # The reasoning returned beside the answer (not what leaked into `text`), and the
    # completion tokens the provider says it spent reasoning.
    reasoning: str | None = None
    reasoning_tokens: int | None = None
    upstream: str | None = None  # the upstream host a router says served it

    @property
    def key(self) -> tuple[str, int]:
        return (self.probe_hash, self.sample_index)

    @property
    def signals(self) -> list[str]:
        return list(self.case.get("signals") or [])

    @property
    def temperature(self) -> float | None:
        return (self.case.get("params") or {}).get("temperature")

    @property
    def constrained(self) -> bool:
        """Whether the request asked for constrained decoding: a JSON `response_format`, or
        a tool call forced by `tool_choice` (servers decode both under a grammar)."""
        params = self.case.get("params") or {}
        response_format = params.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
            return True
        choice = params.get("tool_choice")
        return choice == "required" or isinstance(choice, dict)

    @property
    def has_system_message(self) -> bool:
        return any(m.get("role") == "system" for m in self.case.get("messages") or [])


def independent_draws(obs: Iterable[Observation]) -> list[Observation]:
    """Sampled answers as independent draws: a request sent again with the same `seed` is
    the same draw (an honest host answers it alike), so only its first sample is kept. The
    tests of sampled answers assume independent draws; repeats would count one draw twice."""
    first: dict[tuple[str, Any], int] = {}
    listed = list(obs)
    for o in listed:
        seed = (o.case.get("params") or {}).get("seed")
        if seed is not None:
            key = (o.probe_hash, seed)
            first[key] = min(first.get(key, o.sample_index), o.sample_index)
    return [
        o
        for o in listed
        if (seed := (o.case.get("params") or {}).get("seed")) is None
        or first[(o.probe_hash, seed)] == o.sample_index
    ]
