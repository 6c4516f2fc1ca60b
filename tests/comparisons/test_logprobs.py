"""Returned logprobs against the reference's at the same positions, on synthetic tokens."""

from __future__ import annotations

import random

import pytest

from auditor.comparisons import compare
from auditor.comparisons.logprobs import position_distance, returned_logprobs
from auditor.comparisons.observation import Observation
from auditor.judging.diagnose import diagnose
from auditor.judging.verdict import rejected


def tokens(logprobs: list[float], words: list[str]) -> list[dict]:  # type: ignore[type-arg]
    return [
        {"token": w, "logprob": lp, "top_logprobs": [{"token": w, "logprob": lp},
                                                     {"token": w + "?", "logprob": lp - 2}]}
        for w, lp in zip(words, logprobs, strict=True)
    ]  # fmt: skip


def test_distance_walks_the_common_prefix_only() -> None:
    ref = tokens([-0.1, -0.5, -1.0], ["a", "b", "c"])
    got = tokens([-0.2, -0.3, -9.0], ["a", "b", "x"])
    distance, overlap = position_distance(ref, got)  # type: ignore[misc]
    assert distance == pytest.approx(0.15) and overlap == 1.0
    assert position_distance(ref, tokens([-0.1], ["z"])) is None


def answer(endpoint: str, probe: int, rng: random.Random, noise: float) -> Observation:
    words = [f"w{probe}-{i}" for i in range(8)]
    base = [-(probe % 5) / 10 - i / 20 for i in range(8)]
    got = [lp + rng.gauss(0, noise) for lp in base] if noise else base
    return Observation(
        model="m", endpoint=endpoint, kind="reference" if endpoint == "reference" else "provider",
        trusted=endpoint.startswith("trusted"), probe_id=f"p{probe}", probe_hash=f"h{probe}",
        sample_index=0, ok=True, text=" ".join(words), finish_reason="length", prompt_tokens=10,
        completion_tokens=8, total_tokens=18, error_class=None,
        case={"params": {"temperature": 0, "logprobs": True}, "signals": ["logprobs"]},
        logprobs=tokens(got, words),
    )  # fmt: skip


def endpoint(name: str, seed: int, noise: float, probes: int = 12) -> list[Observation]:
    rng = random.Random(seed)
    return [answer(name, p, rng, noise) for p in range(probes)]


def by_name(comparisons: list) -> dict:  # type: ignore[type-arg]
    return {c.result.name: c for c in comparisons}


def test_logprobs_far_beyond_trusted_noise_are_flagged_and_read_as_other_numerics() -> None:
    reference = endpoint("reference", 0, 0.0)
    trusted = endpoint("trusted-a", 1, 0.003) + endpoint("trusted-b", 2, 0.003)
    honest = by_name(returned_logprobs(reference, endpoint("h", 3, 0.003), trusted))
    quantized = by_name(returned_logprobs(reference, endpoint("q", 4, 0.08), trusted))
    assert honest["shift:logprob_distance@trusted"].result.p_value > 0.05
    test = quantized["shift:logprob_distance@trusted"].result
    assert test.p_value < 1e-4 and test.statistic > 0.03  # type: ignore[operator]
    comparisons = compare(reference, endpoint("q", 4, 0.08), "s", trusted)
    assert diagnose(rejected(comparisons), comparisons)[0].kind == "quantization"


def test_without_trusted_providers_the_distance_is_a_figure() -> None:
    result = by_name(returned_logprobs(endpoint("reference", 0, 0.0), endpoint("q", 4, 0.08), []))
    figure = result["logprobs:distance"].result
    assert figure.status == "figure" and figure.p_value is None and figure.statistic > 0.03
    assert result["logprobs:top_k_overlap"].result.statistic == 1.0
