"""The shape scorer: length, token count and the max_tokens stop."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from auditor.records import CompletionResponse, Message, ProbeCase, RequestParams, Usage
from auditor.scorers.shape import ShapeScorer

CASE = ProbeCase(
    id="c",
    suite="s",
    messages=[Message(role="user", content="List fifty animals.")],
    params=RequestParams(max_tokens=64),
)


def shape(**fields: Any) -> dict[str, float | None]:
    return {r.metric: r.value for r in ShapeScorer().score(CASE, CompletionResponse(**fields))}


def test_a_full_answer_that_hit_max_tokens() -> None:
    text = "Dog\nCat\nHorse\nCow"
    got = shape(
        ok=True,
        text=text,
        finish_reason="length",
        usage=Usage(prompt_tokens=9, completion_tokens=64),
    )
    assert got == {"chars": float(len(text)), "completion_tokens": 64.0, "hit_max_tokens": 1.0}


def test_a_stopped_answer_without_usage() -> None:
    got = shape(ok=True, text="Paris.", finish_reason="stop")
    assert got == {"chars": 6.0, "completion_tokens": None, "hit_max_tokens": 0.0}


def test_a_tool_call_answer_has_zero_chars() -> None:
    got = shape(ok=True, text=None, finish_reason="tool_calls", tool_calls=[{"id": "1"}])
    assert got["chars"] == 0.0 and got["hit_max_tokens"] == 0.0


def test_hit_max_tokens_records_the_budget() -> None:
    records = ShapeScorer().score(
        CASE, CompletionResponse(ok=True, text="x", finish_reason="length")
    )
    [hit] = [r for r in records if r.metric == "hit_max_tokens"]
    assert hit.detail == {"finish_reason": "length", "max_tokens": 64}


def test_errors_are_not_scored() -> None:
    failed = CompletionResponse(ok=False, error_class="server_error", status_code=503)
    assert ShapeScorer().score(CASE, failed) == []


@given(
    text=st.one_of(st.none(), st.text()),
    finish=st.one_of(st.none(), st.sampled_from(["stop", "length", "tool_calls", "weird"])),
    tokens=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_shape_never_raises(text: str | None, finish: str | None, tokens: int | None) -> None:
    got = shape(ok=True, text=text, finish_reason=finish, usage=Usage(completion_tokens=tokens))
    assert got["chars"] == len(text or "")
    assert got["hit_max_tokens"] == (1.0 if finish == "length" else 0.0)
    assert got["completion_tokens"] == (None if tokens is None else float(tokens))
