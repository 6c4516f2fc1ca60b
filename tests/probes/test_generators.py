"""Built-in probe generators: deterministic, correctly placed, and strict about params."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from auditor.probes import GeneratorError, generators
from auditor.probes.arith import ExpressionError, evaluate, parse_expression
from auditor.probes.generators import CHARS_PER_TOKEN

_HEADER = "Read it carefully, then answer the question at the end.\n\n"


def needle(params: dict[str, Any], template: dict[str, Any] | None = None) -> list[dict]:
    return generators.get("needle")().generate(template or {"id": "n"}, params)


def arithmetic(params: dict[str, Any], template: dict[str, Any] | None = None) -> list[dict]:
    return generators.get("perturbed_arithmetic")().generate(template or {"id": "p"}, params)


def haystack_of(prompt: str) -> str:
    return prompt.split(_HEADER, 1)[1].rsplit("\n\nQuestion:", 1)[0]


def needle_sentence(case: dict) -> str:
    code = case["metadata"]["code"]
    match = re.search(rf"The secret code of the \w+ door is {code}\.", case["prompt"])
    assert match is not None
    return match.group(0)


# --- needle ---------------------------------------------------------------------------


def test_needle_is_deterministic_by_seed() -> None:
    params = {"lengths": [256, 1024], "depths": [0.1, 0.9], "seed": 7}
    assert needle(params) == needle(dict(params))
    other = needle({**params, "seed": 8})
    assert [c["prompt"] for c in other] != [c["prompt"] for c in needle(params)]
    assert [c["id"] for c in other] == [
        "len256.d0.10",
        "len256.d0.90",
        "len1024.d0.10",
        "len1024.d0.90",
    ]


@pytest.mark.parametrize("length", [128, 512, 1500, 4000])
@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_needle_lands_at_the_requested_depth_and_length(length: int, depth: float) -> None:
    [case] = needle({"lengths": [length], "depths": [depth], "seed": 1})
    prompt = case["prompt"]
    approx_tokens = len(prompt) / CHARS_PER_TOKEN
    assert abs(approx_tokens - length) <= max(0.05 * length, 25)

    haystack = haystack_of(prompt)
    sentence = needle_sentence(case)
    position = haystack.index(sentence) / len(haystack)
    # The needle sits at the sentence boundary nearest the target: off by at most half the
    # longest filler sentence (about 60 characters) plus its own length and paragraph breaks.
    assert abs(position - depth) <= 130 / len(haystack) + 0.01
    assert case["metadata"]["length"] == length and case["metadata"]["depth"] == depth
    assert case["metadata"]["needle_offset"] == pytest.approx(position)


def test_needle_is_the_only_place_the_answer_appears() -> None:
    for case in needle({"lengths": [256, 1500], "depths": [0.3, 0.6], "seed": 11}):
        prompt, code = case["prompt"], str(case["metadata"]["code"])
        assert prompt.count(code) == 1
        assert re.findall(r"[0-9]+", haystack_of(prompt).replace(needle_sentence(case), "")) == []
        assert "long_context" in case["signals"]
        assert re.search(case["expect"]["regex"], f"The code is {code}.")
        assert not re.search(case["expect"]["regex"], f"The code is {code}7.")


def test_needle_question_is_last() -> None:
    [case] = needle({"lengths": [256], "depths": [0.5]})
    colour = re.search(r"of the (\w+) door is", case["prompt"]).group(1)  # type: ignore[union-attr]
    assert case["prompt"].endswith(
        f"What is the secret code of the {colour} door? Answer with the number only."
    )


@pytest.mark.parametrize(
    "params",
    [
        {"depths": [0.5]},
        {"lengths": [256], "depths": [1.5]},
        {"lengths": [10], "depths": [0.5]},
        {"lengths": [], "depths": [0.5]},
        {"lengths": [256], "depths": [0.5], "colour": "red"},
    ],
)
def test_needle_rejects_bad_params(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        needle(params)


def test_needle_rejects_depths_that_collide_in_ids() -> None:
    with pytest.raises(GeneratorError) as err:
        needle({"lengths": [256], "depths": [0.501, 0.502]})
    assert err.value.key == "depths"


# --- perturbed arithmetic -------------------------------------------------------------

SHOP = "A shop sells {a} apples and {b} pears. How many fruits? Answer with one number."


def test_perturbed_keeps_the_original_and_adds_distinct_twins() -> None:
    cases = arithmetic(
        {"problem": SHOP, "answer": "a + b", "values": {"a": 17, "b": 25}, "twins": 4}
    )
    assert [c["id"] for c in cases] == ["orig", "p1", "p2", "p3", "p4"]
    orig = cases[0]
    assert orig["prompt"] == SHOP.format(a=17, b=25)
    assert orig["expect"] == {"number": 42}
    assert orig["metadata"]["role"] == "original"
    seen = set()
    for case in cases:
        values = case["metadata"]["values"]
        assert case["prompt"] == SHOP.format(**values)
        assert case["expect"]["number"] == values["a"] + values["b"]
        assert case["group"] == "p"
        seen.add((values["a"], values["b"]))
    assert len(seen) == 5
    assert all(c["metadata"]["role"] == "perturbed" for c in cases[1:])


def test_perturbed_is_deterministic_and_uses_the_template_group() -> None:
    params = {"problem": SHOP, "answer": "a+b", "values": {"a": 1, "b": 2}, "twins": 3, "seed": 5}
    first = arithmetic(params, {"id": "t", "group": "fruit"})
    assert first == arithmetic(params, {"id": "t", "group": "fruit"})
    assert {c["group"] for c in first} == {"fruit"}
    assert arithmetic({**params, "seed": 6}) != arithmetic(params)


def test_perturbed_subtraction_never_turns_negative_and_mul_is_right() -> None:
    sub = arithmetic(
        {"problem": "{a} minus {b}?", "answer": "a - b", "values": {"a": 20, "b": 8}, "twins": 20}
    )
    assert all(c["expect"]["number"] >= 0 for c in sub)
    mul = arithmetic(
        {"problem": "{a} times {b}?", "answer": "(a) * b", "values": {"a": 3, "b": 4}, "twins": 5}
    )
    assert all(
        c["expect"]["number"] == c["metadata"]["values"]["a"] * c["metadata"]["values"]["b"]
        for c in mul
    )


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"answer": "a ** 2"}, "answer"),
        ({"answer": "a / b"}, "answer"),
        ({"answer": "__import__('os').system('true')"}, "answer"),
        ({"answer": "a + c"}, "answer"),
        ({"problem": "{a} and {z}?"}, "problem"),
        ({"problem": "no placeholders"}, "problem"),
        ({"twins": 3, "low": 5, "high": 5}, "twins"),
    ],
)
def test_perturbed_rejects_bad_params_naming_the_key(params: dict[str, Any], key: str) -> None:
    base = {"problem": "{a} and {b}?", "answer": "a + b", "values": {"a": 5, "b": 5}}
    with pytest.raises(GeneratorError) as err:
        arithmetic({**base, **params})
    assert err.value.key == key


def test_perturbed_rejects_unknown_params() -> None:
    with pytest.raises(ValidationError):
        arithmetic({"problem": SHOP, "answer": "a+b", "values": {"a": 1, "b": 2}, "twin": 2})


# --- the safe evaluator ---------------------------------------------------------------


@given(st.integers(-1000, 1000), st.integers(-1000, 1000), st.integers(-1000, 1000))
def test_evaluator_agrees_with_python_arithmetic(a: int, b: int, c: int) -> None:
    expr = parse_expression("(a - b) * c + -a * 2 - (b + c)")
    assert evaluate(expr, {"a": a, "b": b, "c": c}) == (a - b) * c + -a * 2 - (b + c)


@pytest.mark.parametrize(
    "text", ["a if b else c", "f(a)", "a.b", "[a]", "a // b", "1.5 + a", "not a"]
)
def test_evaluator_rejects_anything_else(text: str) -> None:
    with pytest.raises(ExpressionError):
        parse_expression(text)
