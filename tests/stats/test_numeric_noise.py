"""The noise model against real Gaussian noise on logits: honest serving within the tolerance
is not flagged, other logits are, and the Poisson-binomial arithmetic is exact."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from auditor.stats.numeric_noise import (
    deficit_test,
    departure_probability,
    excess_departures_test,
    fit_sigma,
    poisson_binomial_cdf,
    poisson_binomial_pmf,
    poisson_binomial_quantile,
    poisson_binomial_sf,
)


def greedy_steps(
    rng: np.random.Generator, steps: int, sigma: float, shift: float = 0.0
) -> tuple[list[bool], list[list[float]]]:
    """Greedy decoding of random logits (a clear leader or a near-tie, as text has them)
    with Gaussian noise of std `sigma` on every logit, scored under the clean logits: what
    `token_trace` stores (departed, near gaps). `shift`: other weights, logits moved by
    that much more (std) than the noise."""
    departed, near = [], []
    for _ in range(steps):
        logits = rng.normal(0.0, 1.0, 20)
        logits[0] += rng.choice([0.05, 0.3, 1.0, 4.0, 8.0])  # how clear the top choice is
        noisy = logits + rng.normal(0.0, math.hypot(sigma, shift), logits.size)
        chosen = int(np.argmax(noisy))
        top = int(np.argmax(logits))
        gaps = np.sort(logits[top] - np.delete(logits, top))
        departed.append(chosen != top)
        near.append([float(g) for g in gaps if g < 3.0][:8])
    return departed, near


@pytest.mark.parametrize("sigma", [0.02, 0.1, 0.2])
def test_honest_noise_within_the_tolerance_is_not_flagged(sigma: float) -> None:
    rng = np.random.default_rng(1)
    tolerance = 0.2
    p_values = []
    for _ in range(200):
        departed, near = greedy_steps(rng, 300, sigma)
        probs = [departure_probability(g, tolerance) for g in near]
        p_values.append(excess_departures_test(departed, probs).p_value)
    assert np.mean(np.array(p_values) <= 0.05) <= 0.05  # valid (the union bound is cautious)


def test_other_logits_are_flagged() -> None:
    rng = np.random.default_rng(2)
    flagged = 0
    for _ in range(50):
        departed, near = greedy_steps(rng, 300, 0.05, shift=0.5)
        probs = [departure_probability(g, 0.2) for g in near]
        flagged += excess_departures_test(departed, probs).p_value <= 0.01
    assert flagged >= 45


def test_departure_probability() -> None:
    assert departure_probability([], 0.2) == 0.0
    assert departure_probability([1.0], 0.0) == 0.0
    assert departure_probability([0.0], 0.3) == pytest.approx(0.5)
    assert departure_probability([0.0, 0.0, 0.0], 0.3) == 1.0  # the union bound, capped
    near, far = departure_probability([0.1], 0.2), departure_probability([2.0], 0.2)
    assert near > 0.3 and far < 1e-12
    assert departure_probability([0.5], 0.1) < departure_probability([0.5], 0.3)


def test_poisson_binomial_is_exact() -> None:
    probs = [0.1, 0.5, 0.9, 0.3, 0.0, 1e-15]
    pmf = poisson_binomial_pmf(probs)
    assert pmf.sum() == pytest.approx(1.0)
    assert len(pmf) == 5  # the negligible and zero chances add nothing
    rng = np.random.default_rng(3)
    draws = (rng.random((200_000, len(probs))) < np.array(probs)).sum(axis=1)
    for k in range(5):
        assert pmf[k] == pytest.approx(np.mean(draws == k), abs=0.005)
    same = [0.2] * 30
    assert poisson_binomial_sf(same, 9) == pytest.approx(stats.binom.sf(8, 30, 0.2))
    assert poisson_binomial_cdf(same, 4) == pytest.approx(stats.binom.cdf(4, 30, 0.2))
    assert poisson_binomial_sf(same, 0) == 1.0 and poisson_binomial_sf(same, 31) == 0.0
    q = poisson_binomial_quantile(same, 0.975)
    assert poisson_binomial_cdf(same, q) >= 0.975 > poisson_binomial_cdf(same, q - 1)


def test_deficit_test() -> None:
    masses = [0.05] * 200  # ten draws expected
    log_none = float(np.log1p(-np.array(masses)).sum())
    none = deficit_test(0, 10.0, log_none, 200)
    assert none.p_value == pytest.approx(0.95**200)
    assert none.effect == pytest.approx(-10.0 / 200)
    assert deficit_test(10, 10.0, log_none, 200).p_value == 1.0
    assert deficit_test(2, 10.0, log_none, 200).p_value == pytest.approx(stats.poisson.cdf(2, 10))
    assert deficit_test(0, 0.0, 0.0, 0).p_value == 1.0


def test_fit_sigma_bounds_the_noise_from_above() -> None:
    rng = np.random.default_rng(4)
    above = 0
    for _ in range(20):
        departed, near = greedy_steps(rng, 400, 0.08)
        fitted = fit_sigma(departed, near)
        assert fitted is not None
        above += fitted >= 0.08
    assert above >= 17  # an upper 95% bound (conservative: the union bound)
    assert fit_sigma([], []) is None
