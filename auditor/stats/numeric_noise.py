"""Honest numeric noise, modelled from the reference's own logits. No I/O.

Real serving never matches the reference bit for bit: other kernels, batch sizes and
precisions move every logit a little. Model that as independent Gaussian noise of standard
deviation `sigma` (in nats, the logit scale) on every logit of every step. At a step where the
reference's top token leads another token by `d` nats, greedy decoding on the noisy logits
picks the other one with probability `Phi(-d / (sigma * sqrt(2)))`: noise breaks near-ties and
nothing else. So, given the reference's logits along an answer, the chance that honest serving
departs from the reference's top choice at each step is known, and a provider's departures
can be tested against it:

- `departure_probability`: at one step, from the gaps of the other candidates to the top
  (a union bound over them: it can only overstate the honest chance, so tests stay valid);
- `poisson_binomial_sf` / `_cdf`: steps are independent given the text so far (the noise is
  drawn afresh at each step), so the number of departures is a sum of independent Bernoulli
  variables with those chances (a Poisson-binomial);
- `excess_departures_test`: more departures than honest noise of at most `sigma` allows
  (one-sided, exact); honest serving with less noise departs less, so the p-value is valid for
  any noise up to the tolerance;
- `deficit_test`: fewer events than expected (one-sided): a sampler that never draws what the
  reference's distribution draws now and then (a top_k or min_p cut);
- `fit_sigma`: the noise level that explains observed departures (from providers vouched
  honest: they tighten the band).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import optimize, special, stats

from auditor.stats.outcome import TestOutcome, degenerate

NEGLIGIBLE = 1e-12  # a step whose departure chance is below this cannot depart honestly


def departure_probability(gaps: Sequence[float], sigma: float) -> float:
    """The chance that noise of std `sigma` on every logit makes greedy decoding pick another
    token than the top one, given the other candidates' gaps to the top (nats, > 0)."""
    if sigma <= 0 or not gaps:
        return 0.0
    d = np.asarray(gaps, dtype=float)
    return float(min(1.0, special.ndtr(-d / (sigma * math.sqrt(2.0))).sum()))


def departure_probabilities(near: Sequence[Sequence[float]], sigma: float) -> np.ndarray:
    """`departure_probability` of every step of an answer (`near[i]`: step i's gaps)."""
    return np.array([departure_probability(g, sigma) for g in near], dtype=float)


def poisson_binomial_pmf(probs: npt.ArrayLike) -> np.ndarray:
    """P(X = k), k = 0..n, for X a sum of independent Bernoulli(p_i); steps with a
    negligible chance are left out (they only add zeros)."""
    p = np.asarray(probs, dtype=float)
    p = np.clip(p[p > NEGLIGIBLE], 0.0, 1.0)
    pmf = np.ones(1)
    for pi in p:
        pmf = np.convolve(pmf, (1.0 - pi, pi))
    return pmf


def poisson_binomial_sf(probs: npt.ArrayLike, k: int) -> float:
    """P(X >= k)."""
    if k <= 0:
        return 1.0
    pmf = poisson_binomial_pmf(probs)
    return float(min(1.0, pmf[k:].sum())) if k < len(pmf) else 0.0


def poisson_binomial_cdf(probs: npt.ArrayLike, k: int) -> float:
    """P(X <= k)."""
    if k < 0:
        return 0.0
    pmf = poisson_binomial_pmf(probs)
    return float(min(1.0, pmf[: k + 1].sum()))


def poisson_binomial_quantile(probs: npt.ArrayLike, q: float) -> int:
    """The smallest k with P(X <= k) >= q."""
    cdf = np.cumsum(poisson_binomial_pmf(probs))
    return int(np.searchsorted(cdf, q - 1e-12))


def excess_departures_test(departed: Sequence[bool], probs: npt.ArrayLike) -> TestOutcome:
    """Do the steps depart from the reference's top choice more often than honest noise
    allows? Null: departures ~ Poisson-binomial(probs). Statistic: the number of departures;
    effect: departures minus the honest expectation, per step; n: steps."""
    n = len(departed)
    chances = np.asarray(probs, dtype=float)
    if n == 0 or chances.size != n:
        return degenerate(n)
    k = int(sum(departed))
    expected = float(chances.sum())
    return TestOutcome(
        statistic=float(k),
        p_value=poisson_binomial_sf(chances, k) if k else 1.0,
        effect=(k - expected) / n,
        n=n,
    )


def deficit_test(observed: int, expected: float, log_p_none: float, n: int) -> TestOutcome:
    """Fewer events than independent chances with mean `expected` give? One-sided. With none
    observed, the p-value is exact: P(none) = exp(`log_p_none`) (the sum of log(1 - p_i));
    with at most `expected - 1` observed, the Poisson lower tail of the same mean, which bounds
    the Poisson-binomial's there (Hoeffding 1956; Anderson and Samuels 1967); with more, 1.
    Effect: observed minus expected, per step."""
    if n == 0 or expected <= 0:
        return degenerate(n)
    if observed == 0:
        p = math.exp(min(0.0, log_p_none))
    else:
        p = float(stats.poisson.cdf(observed, expected)) if observed <= expected - 1 else 1.0
    return TestOutcome(statistic=float(observed), p_value=p, effect=(observed - expected) / n, n=n)


def fit_sigma(
    departed: Sequence[bool], near: Sequence[Sequence[float]], confidence: float = 0.95
) -> float | None:
    """The largest noise level still consistent with the observed departures at the given
    confidence (the upper end of a one-sided interval): the level at which this many
    departures or fewer would happen with probability 1 - confidence. None without steps
    that could depart."""
    if not near or not any(near):
        return None
    k = int(sum(departed))

    def excess(log_sigma: float) -> float:
        probs = departure_probabilities(near, math.exp(log_sigma))
        return poisson_binomial_cdf(probs, k) - (1.0 - confidence)

    low, high = math.log(1e-4), math.log(10.0)
    if excess(high) > 0:
        return 10.0
    if excess(low) < 0:
        return 1e-4
    return float(math.exp(optimize.brentq(excess, low, high, xtol=1e-3)))
