"""The rank test on sampled answers, on synthetic likelihood scores with known answers."""

from __future__ import annotations

import random

from helpers.observations import observation

from auditor.comparisons.observation import Observation
from auditor.comparisons.sampled import likelihood_ranks


def sample(endpoint: str, probe: int, index: int, logprob: float) -> Observation:
    return observation(
        probe,
        index,
        endpoint=endpoint,
        temperature=1.0,
        text="t",
        prompt_tokens=10,
        completion_tokens=5,
        total_tokens=15,
        scores={"ref_logprob_mean": logprob},
    )


def fleet(seed: int, shift: float, probes: int = 30, samples: int = 6) -> tuple[list, list]:  # type: ignore[type-arg]
    """Reference and provider samples of `probes` prompts; each prompt has its own mean
    likelihood (prompts differ), the provider's draws are moved by `shift`."""
    rng = random.Random(seed)
    reference, provider = [], []
    for p in range(probes):
        centre = rng.uniform(-3.0, -0.5)
        reference += [sample("reference", p, i, rng.gauss(centre, 0.3)) for i in range(samples)]
        provider += [sample("p", p, i, rng.gauss(centre + shift, 0.3)) for i in range(samples)]
    return reference, provider


def test_an_honest_provider_is_rejected_at_about_the_nominal_rate() -> None:
    rejections = 0
    for seed in range(200):
        reference, provider = fleet(seed, 0.0)
        (result,) = likelihood_ranks(reference, provider, f"s{seed}")
        rejections += (result.result.p_value or 1) <= 0.05
    assert rejections <= 20  # 5% of 200 is 10; 20 is beyond 3 standard deviations


def test_less_likely_samples_are_found_with_one_sample_per_prompt() -> None:
    reference, provider = fleet(1, -0.6)
    (result,) = likelihood_ranks(reference, provider, "s")
    assert result.result.name == "rank:ref_logprob@sampled"
    assert result.result.p_value < 1e-3  # type: ignore[operator]
    assert result.result.effect < -0.5  # type: ignore[operator]
    assert result.result.n == 30  # one provider sample per prompt


def test_ties_between_identical_answers_are_not_evidence() -> None:
    """Prompts whose answers are all alike (one likely completion) tie everywhere."""
    reference = [sample("reference", p, i, -0.1) for p in range(20) for i in range(6)]
    provider = [sample("p", p, 0, -0.1) for p in range(20)]
    (result,) = likelihood_ranks(reference, provider, "s")
    assert result.result.p_value > 0.01  # type: ignore[operator]


def test_too_few_sampled_prompts_give_no_test() -> None:
    reference, provider = fleet(2, -1.0, probes=3)
    assert likelihood_ranks(reference, provider, "s") == []
