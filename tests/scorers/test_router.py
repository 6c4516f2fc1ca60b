"""The router scorer: an answer served by another upstream than the request pinned, names
compared as OpenRouter writes them (slugs in the request, display names in the answer)."""

from __future__ import annotations

from typing import Any

import pytest

from auditor.records import CompletionResponse, Message, ProbeCase
from auditor.scorers.router import RouterScorer, pinned_upstreams

CASE = ProbeCase(id="c", suite="s", messages=[Message(role="user", content="Hi")])


def off_pin(routing: Any, upstream: str | None, ok: bool = True) -> float | None:
    body = {"model": "m", "messages": []} | ({} if routing is None else {"provider": routing})
    response = CompletionResponse(ok=ok, text="Hello", upstream=upstream, raw_request=body)
    records = RouterScorer().score(CASE, response)
    assert len(records) <= 1
    return records[0].value if records else None


@pytest.mark.parametrize(
    ("routing", "upstream", "expected"),
    [
        ({"only": ["deepinfra/turbo"]}, "DeepInfra", 0.0),
        ({"only": ["together"]}, "Together", 0.0),
        ({"only": ["together"]}, "Fireworks", 1.0),
        ({"order": ["groq", "cerebras"], "allow_fallbacks": False}, "Cerebras", 0.0),
        ({"order": ["groq"], "allow_fallbacks": False}, "Fallback-Host", 1.0),
        ({"order": ["groq"]}, "Fireworks", None),  # fallbacks allowed: nothing pinned
        ({"only": ["groq"]}, None, None),  # the router did not say
        (None, "Groq", None),  # nothing pinned
        ("groq", "Fireworks", None),  # not OpenRouter's routing object
    ],
)
def test_an_answer_off_the_pin_is_flagged(routing: Any, upstream: str, expected: Any) -> None:
    assert off_pin(routing, upstream) == expected


def test_errors_are_not_scored() -> None:
    assert off_pin({"only": ["groq"]}, "Fireworks", ok=False) is None


def test_the_pin_is_read_from_the_body_as_sent() -> None:
    assert pinned_upstreams({"provider": {"only": ["a", "b"]}}) == ["a", "b"]
    assert pinned_upstreams({"provider": {"only": []}}) is None
