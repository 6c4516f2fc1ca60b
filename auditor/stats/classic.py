"""Classical two-sample tests on per-sample scores: proportions, shifts, paired shifts.

Convention throughout: `a` is the baseline (the reference), `b` the sample under audit (the
provider), and every effect is signed "b relative to a".
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import stats

from auditor.stats.outcome import TestOutcome, degenerate, finite_values, safe_float


def proportion_test(
    successes_a: int, n_a: int, successes_b: int, n_b: int, *, greater: bool = False
) -> TestOutcome:
    """Two-sided Fisher exact test of equal success probabilities (one-sided, b's rate
    greater than a's, with `greater`).

    For exact-match rates, pass rates, "stopped at max_tokens" rates and the like.
    Null: a's and b's successes are Binomial(n_a, p) and Binomial(n_b, p) with the same p
    (the test conditions on the total number of successes, so it is exact and somewhat
    conservative). Statistic: the log odds ratio of b versus a with the Haldane-Anscombe
    +0.5 correction (finite even with empty cells). Effect: the difference in proportions
    successes_b / n_b - successes_a / n_a, in [-1, 1]. `n` = n_a + n_b.
    """
    for k, n in ((successes_a, n_a), (successes_b, n_b)):
        if n < 0 or not 0 <= k <= n:
            raise ValueError(f"need 0 <= successes <= n, got {k} of {n}")
    if n_a == 0 or n_b == 0:
        return degenerate(n_a + n_b)
    table = [[successes_b, n_b - successes_b], [successes_a, n_a - successes_a]]
    alternative = "greater" if greater else "two-sided"
    p_value = stats.fisher_exact(table, alternative=alternative).pvalue
    log_odds = math.log(
        (successes_b + 0.5)
        * (n_a - successes_a + 0.5)
        / ((n_b - successes_b + 0.5) * (successes_a + 0.5))
    )
    effect = successes_b / n_b - successes_a / n_a
    return TestOutcome(
        statistic=log_odds, p_value=safe_float(p_value, 1.0), effect=effect, n=n_a + n_b
    )


def cliffs_delta(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """P(b > a) - P(b < a) over all pairs, in [-1, 1] (0 when either sample is empty)."""
    xa, xb = np.sort(finite_values(a)), finite_values(b)
    if xa.size == 0 or xb.size == 0:
        return 0.0
    greater = np.searchsorted(xa, xb, side="left").sum()
    less = (xa.size - np.searchsorted(xa, xb, side="right")).sum()
    return float((greater - less) / (xa.size * xb.size))


def mean_shift_test(
    a: npt.ArrayLike, b: npt.ArrayLike, *, method: str = "auto", greater: bool = False
) -> TestOutcome:
    """Two-sided Mann-Whitney U test for continuous per-sample scores (lengths, rates, logprobs);
    one-sided (b stochastically greater than a) with `greater`.

    Null: a and b are i.i.d. draws from one distribution (the test has power against
    stochastic dominance, i.e. P(b > a) != P(b < a)). NaN and infinite values are dropped.
    `method` is passed to `scipy.stats.mannwhitneyu` ("auto", "exact" or "asymptotic";
    "auto" is exact for small untied samples, else normal with tie and continuity
    corrections). Statistic: U of b, the number of pairs with b > a plus half the ties.
    Effect: Cliff's delta P(b > a) - P(b < a) = 2 U / (n_a n_b) - 1, in [-1, 1].
    """
    xa, xb = finite_values(a), finite_values(b)
    n = int(xa.size + xb.size)
    if xa.size == 0 or xb.size == 0 or np.ptp(np.concatenate([xa, xb])) == 0:
        return degenerate(n)
    alternative = "greater" if greater else "two-sided"
    result = stats.mannwhitneyu(xb, xa, alternative=alternative, method=method)
    effect = 2.0 * float(result.statistic) / (xa.size * xb.size) - 1.0
    return TestOutcome(
        statistic=result.statistic, p_value=safe_float(result.pvalue, 1.0), effect=effect, n=n
    )


def paired_shift_test(a: npt.ArrayLike, b: npt.ArrayLike) -> TestOutcome:
    """Two-sided Wilcoxon signed-rank test on paired values (one pair per prompt).

    Null: the differences d = b - a are symmetric about 0 (e.g. the same prompt answered by
    the reference and the provider gives exchangeable values). Pairs with a NaN on either
    side are dropped. Zero differences are handled by Pratt's method (ranked with the others,
    then left out of the sum), and all-zero differences give p = 1. Statistic: scipy's
    two-sided W, min(sum of positive ranks, sum of negative ranks). Effect: the median of
    b - a, in the scores' own units. `n` = number of pairs used.
    """
    xa, xb = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if xa.shape != xb.shape:
        raise ValueError("paired samples must have the same length")
    d = (xb - xa)[np.isfinite(xa) & np.isfinite(xb)]
    if d.size == 0 or np.all(d == 0):
        return degenerate(int(d.size))
    result = stats.wilcoxon(d, zero_method="pratt", alternative="two-sided")
    return TestOutcome(
        statistic=safe_float(result.statistic, 0.0),
        p_value=safe_float(result.pvalue, 1.0),
        effect=float(np.median(d)),
        n=int(d.size),
    )


def excess_rate_test(violations: int, n: int, tolerated_rate: float) -> TestOutcome:
    """One-sided exact binomial test: are there more violations than a tolerated rate explains?

    For events an honest provider does not produce against the reference's own answer (a
    prompt billed a different number of tokens than the reference counts for the same request,
    an answer cut at `length` below the requested `max_tokens`): the tolerated rate allows for
    rare honest quirks. Null: violations ~ Binomial(n, tolerated_rate). Statistic: the
    violation count. Effect: the observed rate minus the tolerated one.
    """
    if n < 0 or not 0 <= violations <= n:
        raise ValueError(f"need 0 <= violations <= n, got {violations} of {n}")
    if not 0 < tolerated_rate < 1:
        raise ValueError("tolerated_rate must be in (0, 1)")
    if n == 0:
        return degenerate(0)
    p_value = float(stats.binom.sf(violations - 1, n, tolerated_rate)) if violations else 1.0
    return TestOutcome(
        statistic=float(violations),
        p_value=safe_float(p_value, 1.0),
        effect=violations / n - tolerated_rate,
        n=n,
    )
