"""Returned logprobs against the reference's at the same positions, on synthetic tokens."""

from __future__ import annotations

import random

import pytest
from helpers.observations import observation

from auditor.comparisons import compare
from auditor.comparisons.logprobs import _position_pairs, returned_logprobs
from auditor.comparisons.observation import Observation
from auditor.judging.diagnose import diagnose
from auditor.judging.verdict import rejected


def tokens(logprobs: list[float], words: list[str]) -> list[dict]:  # type: ignore[type-arg]
    return [
        {
            "token": w,
            "logprob": lp,
            "top_logprobs": [{"token": w, "logprob": lp}, {"token": w + "?", "logprob": lp - 2}],
        }
        for w, lp in zip(words, logprobs, strict=True)
    ]


def test_only_the_common_prefix_is_compared() -> None:
    ref = [answer_of("reference", [-0.1, -0.5, -1.0], ["a", "b", "c"])]
    got = [answer_of("p", [-0.2, -0.3, -9.0], ["a", "b", "x"])]
    (pairs,) = _position_pairs(ref, got)
    assert pairs[0] == pytest.approx([-0.1, 0.2]) and pairs[1] == [1.0, 1.0]
    assert _position_pairs(ref, [answer_of("p", [-0.1], ["z"])]) == []


def answer_of(name: str, logprobs: list[float], words: list[str]) -> Observation:
    return observation(
        0,
        endpoint=name,
        text=" ".join(words),
        case={"params": {"temperature": 0, "logprobs": True}},
        logprobs=tokens(logprobs, words),
    )


def answer(endpoint: str, probe: int, rng: random.Random, noise: float) -> Observation:
    words = [f"w{probe}-{i}" for i in range(8)]
    base = [-(probe % 5) / 10 - i / 20 for i in range(8)]
    got = [lp + rng.gauss(0, noise) for lp in base] if noise else base
    return observation(
        probe,
        endpoint=endpoint,
        trusted=endpoint.startswith("trusted"),
        text=" ".join(words),
        finish_reason="length",
        prompt_tokens=10,
        completion_tokens=8,
        total_tokens=18,
        case={"params": {"temperature": 0, "logprobs": True}, "signals": ["logprobs"]},
        logprobs=tokens(got, words),
    )


def endpoint(name: str, seed: int, noise: float, probes: int = 12) -> list[Observation]:
    rng = random.Random(seed)
    return [answer(name, p, rng, noise) for p in range(probes)]


def by_name(comparisons: list) -> dict:  # type: ignore[type-arg]
    return {c.result.name: c for c in comparisons}


def test_logprobs_beyond_numeric_noise_are_flagged_and_read_as_other_numerics() -> None:
    reference = endpoint("reference", 0, 0.0)
    honest = by_name(returned_logprobs(reference, endpoint("h", 3, 0.1), 0.2, "a tolerance"))
    quantized = by_name(returned_logprobs(reference, endpoint("q", 4, 0.6), 0.2, "a tolerance"))
    assert honest["shift:logprob_distance"].result.p_value > 0.05
    test = quantized["shift:logprob_distance"].result
    assert test.p_value < 1e-4 and test.statistic > 0.3  # type: ignore[operator]
    assert test.honest_range[1] == pytest.approx(
        0.2 * 2 / (2 * 3.14159265) ** 0.5 * 2**0.5, rel=1e-3
    )
    assert quantized["logprobs:top_k_overlap"].result.statistic == 1.0
    comparisons = compare(reference, endpoint("q", 4, 0.6), "s", noise_tolerance=0.2)
    assert diagnose(rejected(comparisons), comparisons)[0].kind == "quantization"
