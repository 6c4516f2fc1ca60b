"""The expect scorer: right and wrong answers of every kind, and robustness to any text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.records import CompletionResponse, Expect, Message, ProbeCase, ScoreRecord
from auditor.scorers import score_all
from auditor.scorers.expect import ExpectScorer, first_number, is_only_number


def case(expect: dict[str, Any] | None) -> ProbeCase:
    return ProbeCase(
        id="c",
        suite="s",
        messages=[Message(role="user", content="question")],
        expect=None if expect is None else Expect.model_validate(expect),
    )


def ok(text: str | None, **fields: Any) -> CompletionResponse:
    return CompletionResponse(ok=True, text=text, **fields)


def scores(expect: dict[str, Any], text: str | None) -> dict[str, ScoreRecord]:
    return {r.metric: r for r in ExpectScorer().score(case(expect), ok(text))}


def passes(expect: dict[str, Any], text: str | None) -> bool | None:
    return scores(expect, text)["expect_pass"].passed


# --- number -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("42.", 42),
        ("-3.5", -3.5),
        ("\u22127", -7),
        ("1,000", 1000),
        ("1,234,567.25 dollars", 1234567.25),
        ("The answer is 42 apples.", 42),
        ("**42**", 42),
        ("(-4)", -4),
        ("+8", 8),
        (".5", 0.5),
        ("5-3", 5),
        ("x-3", 3),
        ("17 + 25 = 42", 42),
        ("It is 42, I think", 42),
        ("1,0000", 1),
        ("version 1.2.3", 1.2),
        ("no digits here", None),
        ("", None),
        ("9" * 400, None),
    ],
)
def test_first_number(text: str, value: float | None) -> None:
    assert first_number(text) == value


@pytest.mark.parametrize(
    ("expect", "text", "passed"),
    [
        ({"number": 42}, "42", True),
        ({"number": 42}, "The answer is 42.", True),
        ({"number": 42}, "42.0", True),
        ({"number": 42}, "43", False),
        ({"number": 42}, "forty-two", False),
        ({"number": 1000}, "1,000", True),
        ({"number": -3.5}, "It is -3.5 degrees", True),
        ({"number": 3.5}, "It is -3.5 degrees", False),
        ({"number": 0.3}, "0.30000000000000004", True),
        ({"number": 3.14, "tolerance": 0.01}, "about 3.141", True),
        ({"number": 3.14, "tolerance": 0.001}, "about 3.15", False),
    ],
)
def test_number_expectations(expect: dict[str, Any], text: str, passed: bool) -> None:
    record = scores(expect, text)["expect_pass"]
    assert record.passed is passed
    assert record.value == float(passed)
    assert record.detail["kind"] == "number"


@pytest.mark.parametrize(
    ("text", "only"),
    [("42", True), (" 42.\n", True), ("-1,000", True), ("42 apples", False), ("It is 42", False)],
)
def test_only_number_measures_format_not_correctness(text: str, only: bool) -> None:
    assert is_only_number(text) is only
    record = scores({"number": 7}, text)["only_number"]
    assert record.passed is only and record.value == float(only)


# --- exact, regex ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expect", "text", "passed"),
    [
        ({"exact": "Paris"}, "Paris", True),
        ({"exact": "Paris"}, "  paris.\n", True),
        ({"exact": "Paris"}, '"Paris"', True),
        ({"exact": "Paris"}, "\u201cParis.\u201d", True),
        ({"exact": "Paris"}, "'Paris'.", True),
        ({"exact": "Paris"}, "Paris, France", False),
        ({"exact": "Paris"}, "The capital is Paris.", False),
        ({"exact": "Paris"}, '"Paris', False),
        ({"exact": "Paris", "case_sensitive": True}, "paris", False),
        ({"exact": "New York"}, "new   york", True),
        ({"exact": "Paris"}, None, False),
    ],
)
def test_exact_expectations(expect: dict[str, Any], text: str | None, passed: bool) -> None:
    assert passes(expect, text) is passed


def test_regex_is_case_insensitive_unless_asked() -> None:
    assert passes({"regex": r"\bblue\b"}, "It is BLUE today") is True
    assert passes({"regex": r"\bblue\b"}, "bluest") is False
    assert passes({"regex": "TANGERINE", "case_sensitive": True}, "tangerine") is False
    record = scores({"regex": r"\d{4}"}, "The code is 4821.")["expect_pass"]
    assert record.detail == {"kind": "regex", "extracted": "4821"}


def test_an_invalid_regex_is_not_scored_as_a_failure() -> None:
    record = scores({"regex": "(("}, "anything")["expect_pass"]
    assert record.value is None and record.passed is None
    assert "invalid regex" in record.detail["error"]


# --- json_schema ----------------------------------------------------------------------

PERSON = {
    "json_schema": {
        "type": "object",
        "required": ["name", "age"],
        "properties": {"name": {"type": "string"}, "age": {"type": "number"}},
    }
}


@pytest.mark.parametrize(
    ("text", "passed", "fenced"),
    [
        ('{"name": "Ada", "age": 36}', True, False),
        ('  {"name": "Ada", "age": 36}\n', True, False),
        ('```json\n{"name": "Ada", "age": 36}\n```', True, True),
        ('Sure! Here it is:\n```\n{"name": "Ada", "age": 36}\n```', True, True),
        ('{"name": "Ada", "age": "36"}', False, False),
        ('{"name": "Ada"}', False, False),
        ('Here you go: {"name": "Ada", "age": 36}', False, False),
        ('{"name": "Ada", "age": NaN}', False, False),
        ('{"name": "Ada", "age": 36', False, False),
        ("", False, False),
    ],
)
def test_json_schema_expectations(text: str, passed: bool, fenced: bool) -> None:
    record = scores(PERSON, text)["expect_pass"]
    assert record.passed is passed
    assert record.detail["fenced"] is fenced
    assert ("error" in record.detail) is (not passed)
    json.dumps(record.detail, allow_nan=False)


# --- what is not scored ---------------------------------------------------------------


def test_no_expect_or_failed_request_gives_no_scores() -> None:
    assert ExpectScorer().score(case(None), ok("42")) == []
    failed = CompletionResponse(ok=False, error_class="timeout", text="42")
    assert ExpectScorer().score(case({"number": 42}), failed) == []
    assert score_all(case({"number": 42}), failed) == []


def test_score_all_stamps_the_scorer_name_and_params() -> None:
    records = score_all(case({"number": 42}), ok("42", finish_reason="stop"))
    by_metric = {r.metric: r for r in records}
    assert {"expect_pass", "only_number", "chars", "completion_tokens", "hit_max_tokens"} <= set(
        by_metric
    )
    assert by_metric["expect_pass"].scorer == "expect"
    assert by_metric["chars"].scorer == "shape"
    assert all(r.scorer_params == {} for r in records if r.scorer in ("expect", "shape"))


# --- robustness -----------------------------------------------------------------------

EXPECTS = [
    {"number": 42},
    {"number": -0.5, "tolerance": 0.1},
    {"exact": "Paris"},
    {"regex": r"^\W*(yes|no)\b"},
    PERSON,
]
TEXT = st.one_of(
    st.text(),
    st.text(alphabet='0123456789,.-+ \u2212eE{}[]":`json\n'),
    st.from_regex(r"```json\n.*\n```", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(text=TEXT, which=st.sampled_from(range(len(EXPECTS))))
def test_scorers_never_raise_and_emit_clean_json(text: str, which: int) -> None:
    records = score_all(case(EXPECTS[which]), ok(text, finish_reason="stop"))
    assert records
    for record in records:
        if record.scorer in ("expect", "shape"):
            assert record.value in (None, 0.0, 1.0) or record.metric in (
                "chars",
                "completion_tokens",
            )
        json.dumps(record.model_dump(mode="json"), allow_nan=False)


def test_number_after_an_equals_sign_is_the_answer() -> None:
    from auditor.scorers.expect import first_number

    assert first_number("17 + 25 = 42") == 42
    assert first_number("So 3 * 4 = 12, and 12 + 1 = 13 apples.") == 13
    assert first_number("x = nothing, but 7") == 7
