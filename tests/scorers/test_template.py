"""The template scorer: leaked template markers, a clamped max_tokens, prompt tokens; and
every new scorer together through `score_all`."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.records import CompletionResponse, Message, ProbeCase, RequestParams, Usage
from auditor.scorers import score_all
from auditor.scorers.template import TemplateScorer, role_markers


def case(max_tokens: int | None = 64, prompt: str = "List fifty animals.") -> ProbeCase:
    return ProbeCase(
        id="c",
        suite="s",
        messages=[Message(role="user", content=prompt)],
        params=RequestParams(max_tokens=max_tokens),
        metadata={"instruction": ["one_word"]},
    )


def template(probe: ProbeCase | None = None, **fields: Any) -> dict[str, float | None]:
    response = CompletionResponse(ok=True, **fields)
    return {r.metric: r.value for r in TemplateScorer().score(probe or case(), response)}


# --- role leaks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Paris<|im_end|>",
        "<|im_start|>assistant\nParis",
        "Paris<|eot_id|><|start_header_id|>user<|end_header_id|>",
        "Paris<|eot|><|header_start|>user<|header_end|>",
        "Paris.<|end|>",
        "<|assistant|> Paris",
        "Paris <\uff5cend\u2581of\u2581sentence\uff5c>",
        "[INST] What next? [/INST]",
        "<<SYS>> be nice <</SYS>>",
        "Paris</s>",
        "<s> Paris",
        "Paris<end_of_turn>\n<start_of_turn>user",
        "Paris.\nUser: what about Italy?",
        "Paris.\n\nAssistant: Rome.",
        "Paris.\nHuman: thanks",
        "Sure.\n### Instruction:\nSay more.",
        "Paris\n### Response: Rome",
        "**User:** and then?",
        "Paris.\n```\n<|im_end|>\n```",  # special tokens count even inside code
    ],
)
def test_role_leak_positive(text: str) -> None:
    assert template(text=text)["role_leak"] == 1.0


@pytest.mark.parametrize(
    "text",
    [
        "Paris.",
        "The user can choose any assistant: there are many.",
        "Users: 5\nAssistants: 2",
        "A <b>bold</b> claim and x < s > y.",
        "Example:\n```\nUser: hi\nAssistant: hello\n```",  # an example dialogue in code
        "## Instructions for the recipe",
        "",
    ],
)
def test_role_leak_negative(text: str) -> None:
    assert template(text=text)["role_leak"] == 0.0


def test_role_leak_records_the_markers_and_needs_text() -> None:
    assert role_markers("Hi<|im_end|>\nUser: more") == ["<|im_end|>", "User:"]
    records = TemplateScorer().score(case(), CompletionResponse(ok=True, text="x</s>"))
    assert records[0].detail == {"markers": ["</s>"]}
    assert template(text=None, tool_calls=[{"id": "1"}])["role_leak"] is None


# --- max_tokens honoured ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("finish", "tokens", "short", "over"),
    [
        ("length", 20, 1.0, 0.0),  # clamped: stopped for length well before 64
        ("length", 64, 0.0, 0.0),  # honoured
        ("stop", 20, 0.0, 0.0),  # a short answer that simply ended
        ("length", 70, 0.0, 1.0),  # ignored the budget
        ("stop", 65, 0.0, 1.0),
        (None, 10, 0.0, 0.0),
        ("length", None, None, None),  # no usage: cannot tell
    ],
)
def test_max_tokens(finish: str | None, tokens: int | None, short: float, over: float) -> None:
    got = template(text="x", finish_reason=finish, usage=Usage(completion_tokens=tokens))
    assert (got["stopped_short_at_length"], got["over_max_tokens"]) == (short, over)


def test_no_max_tokens_requested_means_not_applicable() -> None:
    got = template(case(None), finish_reason="length", usage=Usage(completion_tokens=20))
    assert got["stopped_short_at_length"] is None and got["over_max_tokens"] is None


def test_the_request_as_sent_wins_over_the_case() -> None:
    usage = Usage(completion_tokens=64)
    sent = {"max_tokens": 100}
    got = template(case(64), text="x", finish_reason="length", usage=usage, raw_request=sent)
    assert got["stopped_short_at_length"] == 1.0
    records = TemplateScorer().score(
        case(None),
        CompletionResponse(
            ok=True,
            finish_reason="length",
            usage=Usage(completion_tokens=30),
            raw_request={"max_completion_tokens": 32},
        ),
    )
    short = records[1]
    assert (short.metric, short.value) == ("stopped_short_at_length", 1.0)
    assert short.detail == {
        "max_tokens": 32,
        "max_tokens_from": "raw_request.max_completion_tokens",
        "completion_tokens": 30,
        "finish_reason": "length",
    }


@pytest.mark.parametrize("bogus", ["64", True, 0, -3, None, 1.5])
def test_a_bogus_raw_max_tokens_falls_back_to_the_case(bogus: Any) -> None:
    got = template(
        case(16),
        finish_reason="length",
        usage=Usage(completion_tokens=16),
        raw_request={"max_tokens": bogus},
    )
    assert got["stopped_short_at_length"] == 0.0


def test_prompt_tokens() -> None:
    assert template(text="x", usage=Usage(prompt_tokens=12))["prompt_tokens"] == 12.0
    assert template(text="x")["prompt_tokens"] is None


def test_params_and_errors() -> None:
    assert TemplateScorer().params == {"markers": "v1"}
    with pytest.raises(ValueError, match="unknown template markers"):
        TemplateScorer(markers="v2")
    failed = CompletionResponse(ok=False, error_class="server_error", text="<|im_end|>")
    assert TemplateScorer().score(case(), failed) == []
    assert score_all(case(), failed) == []


# --- every scorer on any answer ---------------------------------------------------------------


def test_score_all_runs_the_new_scorers_with_their_params() -> None:
    records = score_all(case(), CompletionResponse(ok=True, text="Paris", finish_reason="stop"))
    params = {r.scorer: r.scorer_params for r in records}
    assert params["tone"] == {"lexicon": "v1"}
    assert params["instructions"] == {"detectors": "v1"}
    assert params["template"] == {"markers": "v1"}
    assert {r.metric for r in records} >= {"words", "follows_one_word", "role_leak"}


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(st.none(), st.text(), st.text(alphabet="<|>/s[]INST:User\n `#\U0001f600!?")),
    finish=st.one_of(st.none(), st.text(max_size=8), st.sampled_from(["stop", "length"])),
    prompt_tokens=st.one_of(st.none(), st.integers(-(10**9), 10**9)),
    tokens=st.one_of(st.none(), st.integers(-(10**9), 10**9)),
    max_tokens=st.one_of(st.none(), st.integers(1, 10**6)),
    raw=st.dictionaries(
        st.sampled_from(["max_tokens", "max_completion_tokens", "model"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=4), st.booleans()),
    ),
)
def test_no_scorer_raises_and_every_value_is_finite_or_none(
    text: str | None,
    finish: str | None,
    prompt_tokens: int | None,
    tokens: int | None,
    max_tokens: int | None,
    raw: dict[str, Any],
) -> None:
    response = CompletionResponse(
        ok=True,
        text=text,
        finish_reason=finish,
        usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=tokens),
        raw_request=raw,
    )
    records = score_all(case(max_tokens), response)
    assert {r.scorer for r in records} >= {"instructions", "template", "shape"}
    for record in records:
        assert record.value is None or (
            isinstance(record.value, float) and math.isfinite(record.value)
        )
        json.dumps(record.model_dump(mode="json"), allow_nan=False)


@pytest.mark.parametrize(
    "text",
    ["*" * 10**5, "[a](" * 25_000, "<|" * 50_000, "." * 10**5, "- " * 50_000 + "x", "`" * 10**5],
)
def test_pathological_answers_are_scored(text: str) -> None:
    """A quadratic regex once took minutes on such answers (this suite would stall on it)."""
    records = score_all(case(), CompletionResponse(ok=True, text=text))
    assert {"chars", "words", "role_leak"} <= {r.metric for r in records}
    assert all(r.value is None or math.isfinite(r.value) for r in records)
