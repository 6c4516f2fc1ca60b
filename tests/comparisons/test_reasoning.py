"""Reasoning, provider against reference, on answers scored by the real reasoning scorer:
each fault found and named `reasoning`, an honest reasoning host left alone over many seeds,
and a model that does not reason given no test at all."""

from __future__ import annotations

import random
from typing import Any

import pytest

from auditor.comparisons.observation import Observation
from auditor.comparisons.reasoning import R, reasoning_comparisons
from auditor.judging.diagnose import diagnose
from auditor.judging.verdict import rejected
from auditor.records import CompletionResponse
from auditor.scorers.reasoning import ReasoningScorer

LEVELS = ("low", "medium", "high")
PROMPTS = 8
SAMPLES = 3
# reasoning characters by effort level, as a reasoning model's grow (log-normal spread)
MEDIAN_CHARS = {0: 240.0, 1: 520.0, 2: 1100.0}


def reasoning_text(rng: random.Random, rank: int) -> str:
    return "x" * max(1, int(MEDIAN_CHARS[rank] * rng.lognormvariate(0, 0.35)))


def honest(rng: random.Random, rank: int) -> CompletionResponse:
    return CompletionResponse(
        ok=True, text="4", reasoning=reasoning_text(rng, rank), reasoning_source="reasoning"
    )


def answers(
    endpoint: str, seed: int, serve: Any = honest, *, effort: bool = True
) -> list[Observation]:
    """Every prompt at every effort level (or none), SAMPLES samples each, scored."""
    rng = random.Random(f"{endpoint}-{seed}")
    out = []
    for prompt in range(PROMPTS):
        for rank, level in enumerate(LEVELS if effort else (None,)):
            case: dict[str, Any] = {
                "params": {"temperature": 0.6, "max_tokens": 1100},
                "messages": [{"role": "user", "content": f"question {prompt}"}],
                "signals": [],
                "reasoning_effort": level,
                "metadata": {} if level is None else {"effort_rank": rank},
            }
            for k in range(SAMPLES):
                response = serve(rng, rank if level else 1)
                scores = {r.metric: r.value for r in ReasoningScorer().score(None, response)}  # type: ignore[arg-type]
                out.append(
                    Observation(
                        model="m",
                        endpoint=endpoint,
                        kind="reference" if endpoint == "reference" else "provider",
                        trusted=False,
                        probe_id=f"p{prompt}.{level}",
                        probe_hash=f"h{prompt}.{level}",
                        sample_index=k,
                        ok=True,
                        text=response.text,
                        finish_reason="stop",
                        prompt_tokens=20,
                        completion_tokens=100,
                        total_tokens=120,
                        error_class=None,
                        case=case,
                        scores=scores,
                        reasoning=response.reasoning,
                    )
                )
    return out


def kinds_named(reference: list[Observation], provider: list[Observation]) -> dict[str, str]:
    comparisons = reasoning_comparisons(reference, provider)
    return {d.kind: d.summary for d in diagnose(rejected(comparisons), comparisons)}


def leaking(rng: random.Random, rank: int) -> CompletionResponse:
    return CompletionResponse(ok=True, text=f"<think>{reasoning_text(rng, rank)}</think>\n\n4")


def without_answer(rng: random.Random, rank: int) -> CompletionResponse:
    cut = rng.random() < 0.5
    return CompletionResponse(
        ok=True, text=None if cut else "4", reasoning=reasoning_text(rng, rank),
        finish_reason="length" if cut else "stop",
    )  # fmt: skip


def dropped(rng: random.Random, rank: int) -> CompletionResponse:
    return CompletionResponse(ok=True, text="4")


def effort_ignored(rng: random.Random, rank: int) -> CompletionResponse:
    return honest(rng, 1)  # the default level, whatever was asked


@pytest.mark.parametrize(
    ("serve", "metric", "words"),
    [
        (leaking, R.LEAK, "inside the answer"),
        (without_answer, R.ANSWER_MISSING, "without an answer"),
        (dropped, R.RETURNED, "does not return the reasoning"),
        (effort_ignored, R.EFFORT_GROWTH, "effort level is not honoured"),
    ],
)
def test_each_reasoning_fault_is_found_and_named(serve: Any, metric: str, words: str) -> None:
    for seed in range(5):
        reference, provider = answers("reference", seed), answers("provider", seed, serve)
        comparisons = reasoning_comparisons(reference, provider)
        assert metric in {r.comparison.metric for r in rejected(comparisons)}, seed
        assert words in kinds_named(reference, provider)["reasoning"], seed


def test_a_shorter_reasoning_is_a_length_shift() -> None:
    def terse(rng: random.Random, rank: int) -> CompletionResponse:
        return CompletionResponse(ok=True, text="4", reasoning=reasoning_text(rng, rank)[::3])

    named = kinds_named(answers("reference", 1), answers("provider", 1, terse))
    assert "another length" in named["reasoning"]


def test_an_honest_reasoning_host_is_left_alone() -> None:
    """Same sampling, other seeds: any reasoning test rejects at the verdict's level (BH,
    0.05 over this module's tests) in no more than 5 of 100 rounds."""
    flagged = sum(
        bool(rejected(reasoning_comparisons(answers("reference", s), answers("provider", s))))
        for s in range(100)
    )
    assert flagged <= 5


def test_a_model_that_does_not_reason_gets_no_reasoning_test() -> None:
    def plain(rng: random.Random, rank: int) -> CompletionResponse:
        return CompletionResponse(ok=True, text="4")

    reference = answers("reference", 0, plain, effort=False)
    assert reasoning_comparisons(reference, answers("provider", 0, plain, effort=False)) == []


def test_a_provider_that_leaks_for_a_reference_that_does_not_reason_is_still_caught() -> None:
    def plain(rng: random.Random, rank: int) -> CompletionResponse:
        return CompletionResponse(ok=True, text="4")

    reference = answers("reference", 0, plain, effort=False)
    provider = answers("provider", 0, leaking, effort=False)
    assert "inside the answer" in kinds_named(reference, provider)["reasoning"]
