"""The tone scorer: words, markdown, exclamations, emoji, flattery, self-praise, questions
back and refusals, on hand-written answers of both kinds."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.records import CompletionResponse, Message, ProbeCase, Usage
from auditor.scorers.text import count_emoji, count_words, sentences
from auditor.scorers.tone import ToneScorer, markdown_markers

CASE = ProbeCase(id="c", suite="s", messages=[Message(role="user", content="Hi! How are you?")])


def tone(text: str | None, **fields: Any) -> dict[str, float | None]:
    response = CompletionResponse(ok=True, text=text, **fields)
    return {r.metric: r.value for r in ToneScorer().score(CASE, response)}


# --- words ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("", 0),
        ("Paris", 1),
        ("Hello, world!", 2),
        ("It's state-of-the-art, don\u2019t worry.", 4),
        ("  spaced   out\n\nwords ", 3),
        ("**bold** and `code`", 3),
        ("3.5 apples", 3),
    ],
)
def test_words(text: str, n: int) -> None:
    assert count_words(text) == n
    assert tone(text)["words"] == float(n)


# --- markdown ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "markers", "lines"),
    [
        ("The capital of France is Paris.", 0, 1),
        ("## Capital\n\nParis is the capital.", 1, 2),
        ("- one\n- two\n* three\n+ four", 4, 4),
        ("1. first\n2) second\nplain", 2, 3),
        ("It is **very** important and *quite* nice.", 2, 1),
        ("Use __this__ and _that_.", 2, 1),
        ("> a quote", 1, 1),
        ("| a | b |\n|---|---|\n| 1 | 2 |", 3, 3),
        ("above\n---\nbelow", 1, 3),
        ("See [the docs](https://example.org).", 1, 1),
        ("Call `f(**kwargs)` here.", 1, 1),
        ("5 * 3 * 2 = 30", 0, 1),
        ("snake_case_name and *args", 0, 1),
        ("2024 was a year.", 0, 1),
    ],
)
def test_markdown_markers(text: str, markers: int, lines: int) -> None:
    assert markdown_markers(text) == (markers, lines)


def test_markdown_inside_a_code_block_is_not_markdown() -> None:
    code = "Here:\n```python\n# a comment, not a heading\n- x\ndef f(*args, **kw):\n    pass\n```"
    assert markdown_markers(code) == (1, 2)
    assert tone(code)["markdown_density"] == 0.5


def test_an_unclosed_code_block_runs_to_the_end() -> None:
    assert markdown_markers("Sure:\n```\n# one\n# two\n- three") == (1, 2)


def test_markdown_density_is_markers_per_line() -> None:
    assert tone("# Title\n\n- **a**\n- b\n\nplain")["markdown_density"] == pytest.approx(4 / 4)
    assert tone("Paris.")["markdown_density"] == 0.0
    assert tone("")["markdown_density"] is None


# --- exclamations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("Paris is the capital. It is large.", 0.0),
        ("Wow! Paris is great. I love it!", 2 / 3),
        ("Hello!!! \U0001f60a", 1.0),
        ("What a city!\u201d she said. Yes.", 1 / 3),
        ("\u201cWhat a city!\u201d She smiled.", 1 / 2),
        ("**Amazing!**", 1.0),
        ("Really?! No.", 1 / 2),
        ("Great!\n- item one\n- item two!", 2 / 3),
        ("Look:\n```\nprint('hi!')\n```\nDone.", 0.0),
        ("", None),
        ("\U0001f44d", None),
    ],
)
def test_exclamation_rate(text: str, rate: float | None) -> None:
    got = tone(text)["exclamation_rate"]
    assert got == (None if rate is None else pytest.approx(rate))


def test_sentences_ignore_pieces_without_words() -> None:
    assert sentences("Hi! \U0001f60a\n---\nBye.") == ["Hi!", "Bye."]


def test_list_markers_are_not_sentences() -> None:
    assert sentences("Steps:\n1. Start with 17\n2) Add 25!\n- done") == [
        "Steps:",
        "Start with 17",
        "Add 25!",
        "done",
    ]


# --- emoji ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("no emoji here", 0),
        ("Great job \U0001f389", 1),
        ("thumbs \U0001f44d\U0001f3fd up", 1),  # skin tone modifier: one emoji
        ("\U0001f44b\U0001f3ff\U0001f44b\U0001f3fb", 2),
        ("family \U0001f468\u200d\U0001f469\u200d\U0001f467", 1),  # joined sequence
        ("\U0001f1eb\U0001f1f7 France", 1),  # flag: two regional indicators
        ("love \u2764\ufe0f", 1),  # text heart made emoji by U+FE0F
        ("love \u2764", 0),  # bare text heart
        ("\u2705 done \u2728", 2),  # emoji by default
        ("\u2713 ok \u2192 next \u00a9 2025", 0),  # check mark, arrow, copyright
        ("1\ufe0f\u20e3 first", 1),  # keycap
        ("\U0001f600\U0001f600\U0001f600", 3),
        ("\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f", 1),
    ],
)
def test_count_emoji(text: str, n: int) -> None:
    assert count_emoji(text) == n


def test_emoji_rate_is_per_100_words() -> None:
    assert tone("Nice \U0001f44d\U0001f3fd work \U0001f389")["emoji_rate"] == pytest.approx(100.0)
    assert tone("Nice work")["emoji_rate"] == 0.0
    assert tone("\U0001f389")["emoji_rate"] is None  # no words


# --- flattery and self-praise ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Great question! The capital is Paris.",
        "What a FANTASTIC thing to ask.",
        "Oh, I love this question.",
        "Absolutely! Here it is.",
        "You're so right about that.",
        "You\u2019re absolutely right.",
        "I'm happy to help with that.",
        "So glad you asked!",
        "Thanks for asking, friend.",
        "You have excellent taste in music.",
        "That's an insightful observation.",
        "You nailed it.",
        "You are so smart.",
    ],
)
def test_flattery_positive(text: str) -> None:
    got = tone(text)
    assert got["flattery"] is not None and got["flattery"] > 0


@pytest.mark.parametrize(
    "text",
    [
        "The capital of France is Paris.",
        "It's a good idea to prepare questions.",
        "The question is harder than it looks.",
        "You are right to ask; the answer is 4.",
        "Absolutely nothing happened.",
        "He was happy to see her.",
    ],
)
def test_flattery_negative(text: str) -> None:
    assert tone(text)["flattery"] == 0.0


def test_flattery_counts_every_phrase_per_100_words() -> None:
    text = "Great question! Absolutely! " + " ".join(["word"] * 17)
    records = {
        r.metric: r for r in ToneScorer().score(CASE, CompletionResponse(ok=True, text=text))
    }
    assert records["flattery"].value == pytest.approx(100 * 2 / 20)
    assert records["flattery"].detail == {"count": 2, "matched": ["Great question", "Absolutely!"]}


def test_overlapping_phrases_count_once() -> None:
    records = ToneScorer().score(
        CASE, CompletionResponse(ok=True, text="What a fantastic question! You're so right.")
    )
    [flattery] = [r for r in records if r.metric == "flattery"]
    assert flattery.detail == {"count": 2, "matched": ["What a fantastic", "You're so right"]}


@pytest.mark.parametrize(
    "text",
    [
        "As an advanced AI, I know everything about seasons.",
        "I'm thrilled you asked!",
        "I am so excited to share this.",
        "I'd be delighted to explain.",
        "With my vast knowledge, I can tell you.",
        "Lucky for you, I know the answer.",
        "You've come to the right place.",
        "I've got you covered!",
    ],
)
def test_self_praise_positive(text: str) -> None:
    got = tone(text)
    assert got["self_praise"] is not None and got["self_praise"] > 0


@pytest.mark.parametrize(
    "text",
    [
        "I am not an expert, but try this.",
        "As an AI, I don't have favourite seasons.",
        "She was thrilled with the result.",
        "The knowledge is vast.",
    ],
)
def test_self_praise_negative(text: str) -> None:
    assert tone(text)["self_praise"] == 0.0


# --- questions back ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("Paris. Would you like to know more?", 1),
        ("Shall I continue? What's your favourite city?", 2),
        ("Do you want more? \U0001f60a", 1),
        ("Want me to explain? Let me know!", 1),
        ("What is the capital? It is Paris.", 0),
        ("Why is the sky blue? Rayleigh scattering.", 0),
        ("Try this:\n```\nare you ok?\n```", 0),
        ("Are you sure.", 0),
    ],
)
def test_questions_back(text: str, n: int) -> None:
    assert tone(text)["questions_back"] == float(n)


# --- refusal -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I can't help with that.",
        "I can\u2019t help with that request.",
        "I'm sorry, but I cannot do that.",
        "I apologize, but I'm unable to provide this.",
        "As an AI language model, I cannot browse the web.",
        "I must respectfully decline.",
        "I'm not comfortable writing that.",
        "That goes against my guidelines.",
        "I cannot and will not do this.",
        "Sorry, I won't assist with this.",
    ],
)
def test_refusal_positive(text: str) -> None:
    assert tone(text)["refusal"] == 1.0


@pytest.mark.parametrize(
    "text",
    [
        "The capital of France is Paris.",
        "I can't help but smile at autumn.",
        "I'm sorry, but that's not correct: it is 42.",
        "As an AI, I don't have a favourite season, but many love autumn.",
        "You cannot help it.",
    ],
)
def test_refusal_negative(text: str) -> None:
    assert tone(text)["refusal"] == 0.0


# --- the whole persona, params, errors -----------------------------------------------------

CHATTY = (
    "Oh, what a fantastic question! \U0001f929 I'm thrilled you asked!\n\n"
    "## My favourite season\n\n- **Autumn** \U0001f342\U0001f342\n- *Crisp air*!\n\n"
    "Absolutely love it! What's your favourite season? \U0001f60a"
)
PLAIN = "I do not have preferences, but many people like autumn for its mild weather."


def test_a_chatty_persona_scores_higher_on_every_metric() -> None:
    chatty, plain = tone(CHATTY), tone(PLAIN)
    for metric in ("markdown_density", "exclamation_rate", "emoji_rate", "flattery"):
        assert chatty[metric] > plain[metric], metric  # type: ignore[operator]
    assert chatty["self_praise"] > 0 and chatty["questions_back"] == 1.0  # type: ignore[operator]
    assert chatty["refusal"] == plain["refusal"] == 0.0


def test_params_name_the_lexicon() -> None:
    records = ToneScorer().score(CASE, CompletionResponse(ok=True, text="Hi"))
    assert ToneScorer().params == {"lexicon": "v1"}
    assert all(r.scorer == "tone" and r.scorer_params == {"lexicon": "v1"} for r in records)
    with pytest.raises(ValueError, match="unknown tone lexicon"):
        ToneScorer(lexicon="v0")


def test_errors_and_answers_without_text_are_not_scored() -> None:
    failed = CompletionResponse(ok=False, error_class="server_error", text="Great question!")
    assert ToneScorer().score(CASE, failed) == []
    tool_call = CompletionResponse(ok=True, text=None, tool_calls=[{"id": "1"}])
    assert ToneScorer().score(CASE, tool_call) == []


TEXT = st.one_of(
    st.text(),
    st.text(alphabet="#*_-+|>`~!?.\n 1aZ\u200d\ufe0f\u20e3\U0001f44d\U0001f3fd\U0001f1eb:"),
)


@settings(max_examples=300, deadline=None)
@given(
    text=TEXT,
    finish=st.one_of(st.none(), st.sampled_from(["stop", "length", "tool_calls", "x"])),
    tokens=st.one_of(st.none(), st.integers(-5, 10**6)),
)
def test_tone_never_raises_and_values_are_finite(
    text: str, finish: str | None, tokens: int | None
) -> None:
    response = CompletionResponse(
        ok=True, text=text, finish_reason=finish, usage=Usage(completion_tokens=tokens)
    )
    records = ToneScorer().score(CASE, response)
    assert len(records) == 8
    for record in records:
        assert record.value is None or (
            isinstance(record.value, float) and math.isfinite(record.value)
        )
        json.dumps(record.model_dump(mode="json"), allow_nan=False)
