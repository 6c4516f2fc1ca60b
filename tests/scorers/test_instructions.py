"""The instruction scorer: which cases ask for a format, and whether answers follow it."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.records import CompletionResponse, Message, ProbeCase, RequestParams, Usage
from auditor.scorers.instructions import NAMES, InstructionScorer, detect, guess_language


def case(
    prompt: str,
    system: str | None = None,
    *,
    params: dict[str, Any] | None = None,
    **fields: Any,
) -> ProbeCase:
    messages = [Message(role="system", content=system)] if system else []
    messages.append(Message(role="user", content=prompt))
    return ProbeCase(
        id="c",
        suite="s",
        messages=messages,
        params=RequestParams(**(params or {})),
        **fields,
    )


def follows(probe: ProbeCase, text: str | None) -> dict[str, float | None]:
    response = CompletionResponse(ok=True, text=text, finish_reason="stop")
    return {r.metric: r.value for r in InstructionScorer().score(probe, response)}


def names(probe: ProbeCase) -> list[str]:
    return [i.name for i in detect(probe)]


# --- detection from the prompt -------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("What is 17 + 25? Answer with one number.", ["one_number"]),
        ("What is the code? Answer with the number only.", ["one_number"]),
        ("How many legs? Reply with only a single integer.", ["one_number"]),
        ("Give just the number.", ["one_number"]),
        ("What is the capital of France? Answer in one word.", ["one_word"]),
        ("Respond with a single word: your mood.", ["one_word"]),
        ("Is the sun a star? Answer yes or no.", ["yes_no"]),
        ("Is it raining? Reply with 'yes' or 'no'.", ["yes_no"]),
        ("Is water wet (yes/no)?", ["yes_no"]),
        ('Reply in JSON only, with keys "name" and "age".', ["json_only"]),
        ("Return only valid JSON.", ["json_only"]),
        ("Describe Paris in at most 10 words.", ["word_limit"]),
        ("Summarise in under 20 words.", ["word_limit"]),
        ("Answer in French. What colour is snow?", ["language"]),
        ("Please respond in German.", ["language"]),
        ("What is the capital of France?", []),
        ("Translate into French: good morning", []),
        ("How many words are in the number one?", []),
        ("Say something nice.", []),
        ("What is the uppercase form of 'a'?", []),
    ],
)
def test_detection_from_the_prompt(prompt: str, expected: list[str]) -> None:
    assert names(case(prompt)) == expected


def test_the_system_prompt_and_only_the_last_user_message_are_read() -> None:
    probe = ProbeCase(
        id="c",
        suite="s",
        messages=[
            Message(role="system", content="Always answer in uppercase letters only."),
            Message(role="user", content="Answer yes or no: ready?"),
            Message(role="assistant", content="YES"),
            Message(role="user", content="What is the capital of France?"),
        ],
    )
    assert names(probe) == ["uppercase"]


def test_word_limits_are_inclusive_or_strict_as_worded() -> None:
    assert detect(case("Answer in at most 5 words."))[0].arg == 5
    assert detect(case("Answer in no more than 5 words."))[0].arg == 5
    assert detect(case("Answer in 5 words or fewer."))[0].arg == 5
    assert detect(case("Answer in under 5 words."))[0].arg == 4
    assert detect(case("Use fewer than 5 words."))[0].arg == 4


def test_response_format_asks_for_json_only() -> None:
    probe = case("Give Ada's age.", params={"response_format": {"type": "json_object"}})
    [instruction] = detect(probe)
    assert (instruction.name, instruction.source) == ("json_only", "params")


# --- metadata and tags first ----------------------------------------------------------------


def test_metadata_comes_first_and_is_authoritative() -> None:
    probe = case("Answer in one word.", metadata={"instruction": "one_number"})
    assert names(probe) == ["one_number"]
    assert detect(probe)[0].source == "metadata"
    assert names(case("Answer in one word.", metadata={"instruction": []})) == []
    listed = case(
        "Hi", metadata={"instruction": ["follows_yes_no", "uppercase", "bogus", "yes_no"]}
    )
    assert names(listed) == ["yes_no", "uppercase"]
    assert names(case("Hi", metadata={"instruction": 3})) == []


def test_metadata_arguments_and_their_fallback_to_the_prompt() -> None:
    declared = case("Hi", metadata={"instruction": ["word_limit", "language"], "word_limit": 3})
    assert [(i.name, i.arg) for i in detect(declared)] == [("word_limit", 3), ("language", None)]
    spanish = case("Hi", metadata={"instruction": "language", "language": "Spanish"})
    assert detect(spanish)[0].arg == "es"
    from_prompt = case("Answer in at most 4 words.", metadata={"instruction": "word_limit"})
    assert detect(from_prompt)[0].arg == 4
    assert follows(declared, "one two") == {"follows_word_limit": 1.0, "follows_language": None}


def test_tags_declare_instructions_when_metadata_does_not() -> None:
    probe = case("Answer in one word.", tags=["instruction:yes_no", "other"])
    assert [(i.name, i.source) for i in detect(probe)] == [("yes_no", "tags")]


# --- following ------------------------------------------------------------------------------

NUMBER = case("What is 6 * 7? Answer with one number.")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 1.0),
        ("42.", 1.0),
        (" 42\n", 1.0),
        ("-3.5", 1.0),
        ("1,000", 1.0),
        ("42 km", 0.0),
        ("42%", 0.0),
        ("$42", 0.0),
        ("**42**", 0.0),
        ("The answer is 42.", 0.0),
        ("42 apples", 0.0),
        ("4 2", 0.0),
        ("forty-two", 0.0),
        ("", 0.0),
        (None, 0.0),
    ],
)
def test_follows_one_number(text: str | None, value: float) -> None:
    assert follows(NUMBER, text) == {"follows_one_number": value}


WORD = case("What is the capital of France? Answer in one word.")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Paris", 1.0),
        ("Paris.", 1.0),
        ('"Paris"', 1.0),
        ("dog!", 1.0),
        ("Saint-Tropez", 1.0),
        ("  Paris \n", 1.0),
        ("New York", 0.0),
        ("Paris, France", 0.0),
        ("The capital is Paris.", 0.0),
        ("**Paris**", 0.0),
        ("", 0.0),
    ],
)
def test_follows_one_word(text: str, value: float) -> None:
    assert follows(WORD, text) == {"follows_one_word": value}


YES_NO = case("Is the sun a star? Answer yes or no.")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Yes", 1.0),
        ("Yes.", 1.0),
        ("no", 1.0),
        ("NO!", 1.0),
        ("'Yes'", 1.0),
        ("Yes, because the sun is a star.", 0.0),
        ("Yes it is", 0.0),
        ("Yeah", 0.0),
        ("Yesterday", 0.0),
        ("Yes or no", 0.0),
        ("", 0.0),
    ],
)
def test_follows_yes_no(text: str, value: float) -> None:
    assert follows(YES_NO, text) == {"follows_yes_no": value}


JSON = case('Reply in JSON only. Give {"name": ..., "age": ...} for Ada, 36.')


@pytest.mark.parametrize(
    ("text", "value", "fenced"),
    [
        ('{"name": "Ada", "age": 36}', 1.0, False),
        ("  [1, 2]\n", 1.0, False),
        ("42", 1.0, False),
        ('```json\n{"name": "Ada", "age": 36}\n```', 0.0, True),
        ('Here it is: {"name": "Ada"}', 0.0, False),
        ('{"age": NaN}', 0.0, False),
        ("{'name': 'Ada'}", 0.0, False),
        ("", 0.0, False),
    ],
)
def test_follows_json_only(text: str, value: float, fenced: bool) -> None:
    [record] = InstructionScorer().score(JSON, CompletionResponse(ok=True, text=text))
    assert (record.metric, record.value, record.passed) == ("follows_json_only", value, bool(value))
    assert record.detail["fenced"] is fenced
    assert record.detail["source"] == "prompt" and record.detail["matched"] == "Reply in JSON only"


def test_follows_word_limit() -> None:
    probe = case("Describe Paris in at most 5 words.")
    assert follows(probe, "Paris: lovely, historic, busy.") == {"follows_word_limit": 1.0}
    assert follows(probe, "Paris is a lovely historic city.") == {"follows_word_limit": 0.0}
    strict = case("Describe Paris in under 5 words.")
    assert follows(strict, "Lovely, historic, busy, old, grand.") == {"follows_word_limit": 0.0}
    assert follows(strict, "") == {"follows_word_limit": 1.0}


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("La neige est blanche.", "fr"),
        ("Je pense que c'est une bonne idée pour les enfants.", "fr"),
        ("The snow is white.", "en"),
        ("La nieve es blanca y muy fría.", "es"),
        ("Der Schnee ist weiß und kalt.", "de"),
        ("La neve è bianca e fredda.", "it"),
        ("A neve é branca e não é quente.", "pt"),
        ("De sneeuw is wit en het is koud.", "nl"),
        ("Blanche", None),
        ("", None),
        ("42", None),
    ],
)
def test_guess_language(text: str, code: str | None) -> None:
    assert guess_language(text) == code


def test_follows_language() -> None:
    french = case("Answer in French. What colour is snow?")
    assert follows(french, "La neige est blanche.") == {"follows_language": 1.0}
    assert follows(french, "Snow is white, of course.") == {"follows_language": 0.0}
    assert follows(french, "Blanche.") == {"follows_language": None}


UPPER = case("What is the capital of France?", system="Always answer in uppercase letters only.")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("PARIS", 1.0),
        ("THE CAPITAL IS PARIS, OF COURSE!", 1.0),
        ("ÉTÉ", 1.0),
        ("Paris", 0.0),
        ("PARIs", 0.0),
        ("42", None),
        ("", None),
    ],
)
def test_follows_uppercase(text: str, value: float | None) -> None:
    assert follows(UPPER, text) == {"follows_uppercase": value}


def test_several_instructions_in_one_case() -> None:
    probe = case("Answer yes or no.", system="Always reply in capital letters.")
    assert follows(probe, "YES") == {"follows_yes_no": 1.0, "follows_uppercase": 1.0}
    assert follows(probe, "yes") == {"follows_yes_no": 1.0, "follows_uppercase": 0.0}


# --- params, errors, robustness -------------------------------------------------------------


def test_params_errors_and_cases_without_instructions() -> None:
    assert InstructionScorer().params == {"detectors": "v1"}
    with pytest.raises(ValueError, match="unknown instruction detectors"):
        InstructionScorer(detectors="v9")
    failed = CompletionResponse(ok=False, error_class="timeout", text="42")
    assert InstructionScorer().score(NUMBER, failed) == []
    assert follows(case("What is the capital of France?"), "Paris") == {}


ALL = case("Anything", metadata={"instruction": list(NAMES), "word_limit": 3, "language": "fr"})


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(st.none(), st.text(), st.text(alphabet='0123456789.,-{}[]":yesnoYESNO \n')),
    finish=st.one_of(st.none(), st.sampled_from(["stop", "length", "x"])),
    tokens=st.one_of(st.none(), st.integers(-5, 10**6)),
)
def test_instructions_never_raise_and_values_are_finite(
    text: str | None, finish: str | None, tokens: int | None
) -> None:
    response = CompletionResponse(
        ok=True, text=text, finish_reason=finish, usage=Usage(completion_tokens=tokens)
    )
    records = InstructionScorer().score(ALL, response)
    assert len(records) == 7
    for record in records:
        assert record.value in (None, 0.0, 1.0)
        assert record.value is None or math.isfinite(record.value)
        json.dumps(record.model_dump(mode="json"), allow_nan=False)
