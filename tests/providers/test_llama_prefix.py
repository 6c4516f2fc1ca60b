"""Prompt reuse without a changed logit (`auditor.providers.llama_prefix`), on the real
packaged SmolLM2-135M-Instruct GGUF."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from auditor.providers.llama_cpp import packaged_model_path
from auditor.providers.llama_prefix import ExactPrefixLlama

pytestmark = pytest.mark.model


def load(threads: int = 1, logits_all: bool = False) -> ExactPrefixLlama:
    return ExactPrefixLlama(
        model_path=str(packaged_model_path()),
        n_ctx=1024,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=logits_all,
        verbose=False,
    )


def prompt(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


QUESTIONS = [
    prompt("What is the capital of Japan?"),
    prompt("What is the capital of France?"),
    prompt("What is the capital of Japan? Answer"),  # shares most of the first one's tokens
    prompt("Tell me a story. " * 40),
]


def greedy(llm: Any, text: str, steps: int = 8) -> tuple[str, list[np.ndarray]]:
    """The greedy answer and the logits of every step, as a logits processor sees them."""
    rows: list[np.ndarray] = []

    def record(_ids: Any, logits: Any) -> Any:
        rows.append(np.array(logits, copy=True))
        return logits

    tokens = llm.tokenize(text.encode(), add_bos=False, special=True)
    out = llm.create_completion(
        tokens,
        max_tokens=steps,
        temperature=0,
        top_k=0,
        top_p=1,
        min_p=0,
        repeat_penalty=1,
        logits_processor=[record],
    )
    return out["choices"][0]["text"], rows


@pytest.mark.parametrize("logits_all", [False, True])
def test_a_reused_prompt_gives_the_same_logits_as_a_fresh_model(logits_all: bool) -> None:
    fresh = {q: greedy(load(2, logits_all), q) for q in QUESTIONS}  # each on a new model
    llm = load(1, logits_all)
    for question in [*QUESTIONS, *reversed(QUESTIONS), QUESTIONS[0], QUESTIONS[0]]:
        text, rows = greedy(llm, question)
        assert text == fresh[question][0]
        for row, expected in zip(rows, fresh[question][1], strict=True):
            assert np.array_equal(row, expected)
    # repeats of a question reused its prefix; the near-copy of the first one did not
    assert 0 < llm.prefix_hits < llm.prompts


def test_plain_llama_reuse_changes_the_logits_which_is_why_the_split_exists() -> None:
    """What the module guards against: llama-cpp-python's own prefix reuse (the last
    token evaluated alone) against a whole-prompt evaluation."""
    from llama_cpp import Llama

    plain = Llama(model_path=str(packaged_model_path()), n_ctx=1024, verbose=False)
    changed = []
    for question in QUESTIONS:
        _, whole = greedy(plain, question)
        _, reused = greedy(plain, question)  # the cached prompt's last token evaluated alone
        changed.append(any(not np.array_equal(a, b) for a, b in zip(whole, reused, strict=False)))
    assert any(changed)


def test_evaluating_over_the_cached_prompt_forgets_it() -> None:
    llm = load()
    tokens = llm.tokenize(QUESTIONS[0].encode(), add_bos=False, special=True)
    assert llm.prime(tokens) is False
    assert llm.prime(tokens) is True
    llm.n_tokens = 3  # as a scorer rewinds to evaluate its own tokens from there
    llm.eval(tokens[3:])
    assert llm.split_prefix == ()
    assert llm.prime(tokens) is False
