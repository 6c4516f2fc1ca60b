"""Prompt reuse without a changed logit (`auditor.providers.llama_prefix`), on the real
packaged SmolLM2-135M-Instruct GGUF."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from auditor.providers.llama_cpp import packaged_model_path
from auditor.providers.llama_prefix import SAVED_BYTES, ExactPrefixLlama

pytestmark = pytest.mark.model


def load(
    threads: int = 1, logits_all: bool = False, n_batch: int = 512, saved_bytes: int = SAVED_BYTES
) -> ExactPrefixLlama:
    return ExactPrefixLlama(
        model_path=str(packaged_model_path()),
        n_ctx=1024,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=logits_all,
        n_batch=n_batch,
        saved_bytes=saved_bytes,
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


def test_evaluating_over_the_cached_prompt_forgets_it_unless_it_was_saved() -> None:
    for saved_bytes in (0, SAVED_BYTES):
        llm = load(saved_bytes=saved_bytes)
        tokens = llm.tokenize(QUESTIONS[0].encode(), add_bos=False, special=True)
        assert llm.prime(tokens) is False
        assert llm.prime(tokens) is True
        llm.n_tokens = 3  # as a scorer rewinds to evaluate its own tokens from there
        llm.eval(tokens[3:])
        assert llm.split_prefix == ()
        assert llm.prime(tokens) is (saved_bytes > 0)  # the saved cache is put back


STORY = "Once upon a time there was a small village by the sea where fishermen lived. " * 6
#: Prompts sharing a long start (about 110 tokens) in several batches of 32, or a shorter one.
SHARING = [
    prompt(STORY + "Who lived there?"),
    prompt(STORY + "Where was the village?"),
    prompt("Hi"),
    prompt(STORY + "Who lived there? Answer briefly."),
    prompt(STORY[:200] + "What?"),
]


@pytest.mark.parametrize(
    ("logits_all", "saved_bytes"), [(False, 0), (False, SAVED_BYTES), (True, SAVED_BYTES)]
)
def test_prompts_sharing_whole_batches_reuse_them_with_the_same_logits(
    logits_all: bool, saved_bytes: int
) -> None:
    fresh = {q: greedy(load(2, logits_all, n_batch=32), q) for q in SHARING}
    llm = load(1, logits_all, n_batch=32, saved_bytes=saved_bytes)
    order = [*SHARING, *reversed(SHARING), SHARING[1]]
    for question in order:
        text, rows = greedy(llm, question)
        assert text == fresh[question][0]
        for row, expected in zip(rows, fresh[question][1], strict=True):
            assert np.array_equal(row, expected)
    if saved_bytes and not logits_all:
        # every prompt of the second pass and the last is found among the saved ones
        assert llm.prefix_hits == len(SHARING) + 1
    else:
        # only the prompt in the model's cache: the one repeat right after itself, and the
        # whole batches of 32 tokens consecutive prompts share
        assert llm.prefix_hits == 1
        assert llm.reused_tokens > 3 * 32 + len(llm.tokenize(SHARING[-1].encode()))


def test_saved_caches_stay_within_their_memory() -> None:
    llm = load(n_batch=32, saved_bytes=4 * 1024 * 1024)
    for question in SHARING:
        llm.prime(llm.tokenize(question.encode(), add_bos=False, special=True))
    assert llm.saved_size <= 4 * 1024 * 1024
    assert 0 < len(llm.saved) < len(SHARING)  # the oldest were dropped
