"""The reasoning scorer: reasoning leaked into the answer, returned apart from it, an answer
missing after it, and its length; and the recorded server examples scored as they are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from auditor.providers import wire
from auditor.records import CompletionResponse, Message, ProbeCase, RequestParams
from auditor.scorers import score_all
from auditor.scorers.reasoning import ReasoningScorer, answer_after_reasoning, leaked_markers

EXAMPLES = Path(__file__).parents[1] / "providers" / "wire_examples" / "reasoning"
CASE = ProbeCase(
    id="c",
    suite="s",
    messages=[Message(role="user", content="What is 2+2?")],
    params=RequestParams(max_tokens=64),
)


def scores(**fields: Any) -> dict[str, float | None]:
    response = CompletionResponse(ok=True, **fields)
    return {r.metric: r.value for r in ReasoningScorer().score(CASE, response)}


@pytest.mark.parametrize(
    "text",
    [
        "<think>2 and 2 make 4.</think>\n\n4",
        "2 and 2 make 4.</think>4",  # the template opened the block in the prompt
        "<seed:think>sum</seed:think>4",
        "[THINK]sum[/THINK]4",
        "◁think▷sum◁/think▷4",
        "<|channel|>analysis<|message|>Sum them.<|end|>4",
        "analysisThe user asks 2+2. Simple.assistantfinal4",
    ],
)
def test_reasoning_left_in_the_answer_is_a_leak_and_the_answer_after_it_counts(
    text: str,
) -> None:
    got = scores(text=text)
    assert got["reasoning_leak"] == 1.0
    assert got["answer_missing"] == 0.0
    assert got["reasoning_returned"] == 0.0 and got["reasoning_chars"] is None


@pytest.mark.parametrize(
    "text",
    [
        "4",
        "Think about it: 4.",
        "The analysis shows 4.",  # the word, not the channel
        "Use a <thinking> cap",  # not a reasoning tag
        "```html\n<b>4</b>\n```",
    ],
)
def test_plain_answers_do_not_leak(text: str) -> None:
    assert leaked_markers(text) == []
    assert scores(text=text)["reasoning_leak"] == 0.0


def test_reasoning_returned_apart_is_counted_and_measured() -> None:
    got = scores(text="4", reasoning="Two and two.", reasoning_source="reasoning")
    assert got == {
        "reasoning_leak": 0.0,
        "reasoning_returned": 1.0,
        "answer_missing": 0.0,
        "reasoning_chars": 12.0,
    }


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"text": None, "reasoning": "Let me think", "finish_reason": "length"}, 1.0),
        ({"text": "", "reasoning": "Let me think"}, 1.0),
        ({"text": "  \n", "reasoning": "Let me think"}, 1.0),
        ({"text": "<think>Let me think about 2+2"}, 1.0),  # cut while thinking
        ({"text": "<think>sum</think>\n"}, 1.0),
        ({"text": None, "reasoning": "call it", "tool_calls": [{"id": "1"}]}, 0.0),
        ({"text": None}, 0.0),  # no reasoning: a missing answer is another matter
        ({"text": "", "reasoning": "   "}, 0.0),  # blank reasoning is none
    ],
)
def test_an_answer_missing_after_reasoning(fields: dict[str, Any], missing: float) -> None:
    assert scores(**fields)["answer_missing"] == missing


def test_answer_after_reasoning_keeps_the_answer_only() -> None:
    assert answer_after_reasoning("<think>a</think> 4 <think>b</think>!") == "4 !"
    assert answer_after_reasoning("analysis x assistantfinal 4") == "4"


def test_failed_answers_are_not_scored() -> None:
    assert ReasoningScorer().score(CASE, CompletionResponse(ok=False)) == []


def test_every_recorded_server_example_scores_as_its_server_meant() -> None:
    """A server whose parser returns the reasoning apart: returned, no leak; one that leaves
    it in the content (llama.cpp's `--reasoning-format none`): a leak."""
    seen = 0
    for path in sorted(EXAMPLES.glob("*.json")):
        example = json.loads(path.read_text())
        if example["stream"]:
            continue
        answer = wire.parse_completion(json.dumps(example["body"]).encode())
        got = {r.metric: r.value for r in score_all(CASE, answer) if r.scorer == "reasoning"}
        want = example["expect"]
        assert got["reasoning_returned"] == float(bool(want["reasoning"])), path.name
        leaked = "<think>" in (want["content"] or "")
        assert got["reasoning_leak"] == (None if want["content"] is None else float(leaked))
        seen += 1
    assert seen >= 5
