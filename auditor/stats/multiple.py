"""Many tests at once: false discovery rate and family-wise error control, and combining
independent p-values."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from auditor.stats.outcome import TestOutcome, degenerate

_P_FLOOR = 1e-300  # keeps -log(p) finite for p-values that underflowed to 0


def _clean(p_values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """p-values as floats; None, NaN and out-of-range values become 1 (never evidence)."""
    arr = np.array([1.0 if p is None else p for p in p_values], dtype=float)
    arr[~np.isfinite(arr) | (arr > 1.0)] = 1.0
    return np.asarray(np.clip(arr, 0.0, 1.0), dtype=float)


def bh_adjust(p_values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input order.

    q_(i) = min over j >= i of m p_(j) / j on the sorted p-values, capped at 1; rejecting
    every hypothesis with q <= alpha controls the false discovery rate at alpha for
    independent or positively dependent tests. None/NaN p-values count as 1 (they still
    count in m, which only makes the procedure more conservative).
    """
    p = _clean(p_values)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def shared_bh_adjust(
    p_values: Sequence[float | None] | np.ndarray, shares: Sequence[float]
) -> np.ndarray:
    """Adjusted p-values, in the input order, of Benjamini-Hochberg with some tests set apart:
    test i with `shares[i]` > 0 is tested alone at that share of the level (`p / share`), the
    others together by Benjamini-Hochberg at what is left (`q / (1 - sum of shares)`). A test
    is rejected at level alpha when its adjusted value is at most alpha.

    Why: a suite asked one main question (a context ladder: where does the window break?)
    should not see that test diluted among the round's many other tests. By the union bound
    the chance that anything is rejected when nothing differs stays at most alpha. A share is
    counted only where its test has a p-value (None/NaN: the share goes back to the others);
    nothing is passed on when a set-apart test rejects.
    """
    p = _clean(p_values)
    s = np.asarray(shares, dtype=float)
    if s.shape != p.shape:
        raise ValueError(f"need one share per p-value, got {s.size} for {p.size}")
    if np.any((s < 0) | (s >= 1)):
        raise ValueError("each share must be in [0, 1)")
    raw = np.array([np.nan if v is None else v for v in p_values], dtype=float)
    apart = (s > 0) & np.isfinite(raw)
    left = 1.0 - float(s[apart].sum())
    if left <= 0:
        raise ValueError("the shares of the tests set apart must sum to less than 1")
    out = np.empty(p.size)
    out[apart] = np.minimum(p[apart] / s[apart], 1.0)
    pooled = ~apart
    out[pooled] = np.minimum(bh_adjust(p[pooled]) / left, 1.0)
    return out


def holm_adjust(p_values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values, in the input order.

    a_(i) = max over j <= i of min(1, (m - j + 1) p_(j)) on the sorted p-values; rejecting
    every hypothesis with a <= alpha controls the family-wise error rate at alpha under any
    dependence, like Bonferroni (m p), and rejects whatever Bonferroni rejects and possibly
    more (Holm 1979). The smallest adjusted value is m times the smallest p-value, so the two
    reject *something* in exactly the same cases. None/NaN p-values count as 1.
    """
    p = _clean(p_values)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(p[order] * np.arange(m, 0, -1), 1.0)
    out = np.empty(m)
    out[order] = np.maximum.accumulate(scaled)
    return out


def benjamini_hochberg(
    p_values: Sequence[float | None] | np.ndarray, alpha: float = 0.05
) -> list[bool]:
    """Which hypotheses the Benjamini-Hochberg procedure rejects at FDR level `alpha`.

    None/NaN p-values are never rejected.
    """
    return [bool(q <= alpha) for q in bh_adjust(p_values)]


def fisher_combine(p_values: Sequence[float | None] | np.ndarray) -> TestOutcome:
    """Fisher's method: one p-value from k independent tests of the same question.

    Null: every component null holds and the p-values are independent (and uniform, or
    conservative). Statistic: -2 sum log p, chi-squared with 2k degrees of freedom under the
    null. Effect: mean(-log p) - 1, the average evidence per test beyond the null's
    expectation (-log p of a uniform p-value has mean 1), so 0 under the null.
    None/NaN p-values are dropped; `n` = number of p-values combined.
    """
    raw = np.array([np.nan if p is None else p for p in p_values], dtype=float)
    p = np.clip(raw[np.isfinite(raw)], _P_FLOOR, 1.0)
    if p.size == 0:
        return degenerate(0)
    neg_log = -np.log(p)
    statistic = 2.0 * float(neg_log.sum())
    p_value = float(stats.chi2.sf(statistic, 2 * p.size))
    return TestOutcome(
        statistic=statistic, p_value=p_value, effect=float(neg_log.mean()) - 1.0, n=int(p.size)
    )
