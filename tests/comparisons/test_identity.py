"""Answers that name another model: a different parameter count is evidence, a differently
spelled name is not."""

from __future__ import annotations

import pytest
from helpers.observations import observation

from auditor.comparisons.identity import names_another_model, served_names, sizes


@pytest.mark.parametrize(
    ("requested", "served", "other"),
    [
        ("smollm2-135m-instruct", "smollm2-360m-instruct", True),
        ("meta-llama/Llama-3.1-70B-Instruct", "llama-3.1-8b-instruct", True),
        ("meta-llama/Llama-3.1-70B-Instruct", "llama3.1-70b", False),
        ("mixtral-8x7b", "Mixtral-8x7B-Instruct-v0.1", False),
        ("smollm2-135m-instruct", "/models/SmolLM2-135M-Instruct.Q4_1.gguf", False),
        ("smollm2-135m-instruct", "gpt-3.5-turbo", False),  # llama.cpp server's old default
        ("qwen3-32b", "qwen3-32b-2025-04-29", False),  # a date is no parameter count
        ("gpt-oss-120b", "gpt-oss-20b", True),
    ],
)
def test_names_another_model(requested: str, served: str, other: bool) -> None:
    assert names_another_model(requested, served) is other


def test_sizes() -> None:
    assert sizes("Qwen2.5-1.5B-Instruct") == {"1.5b"}
    assert sizes("llama-v3") == frozenset()


def test_served_names_is_a_violation_test_and_says_which_model() -> None:
    asked = "smollm2-135m-instruct"
    honest = [observation(i, served_model=asked, requested_model=asked) for i in range(20)]
    (c,) = served_names(honest)
    assert c.result.p_value == 1.0 and c.result.note is None
    other = [
        observation(i, served_model="smollm2-360m-instruct", requested_model=asked)
        for i in range(20)
    ]
    (c,) = served_names(other)
    assert c.result.p_value is not None and c.result.p_value < 1e-6
    assert c.result.note == (
        "answers name smollm2-360m-instruct; the request asked for smollm2-135m-instruct"
    )
    assert served_names([observation(0)]) == []  # no names: nothing to compare
