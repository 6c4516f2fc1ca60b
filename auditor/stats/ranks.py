"""Rank test: where do the provider's samples fall among the reference's own samples?

For one prompt, score a provider completion and m reference completions with the same
function (typically the reference model's log-likelihood of the completion). If the provider
serves the reference distribution, the provider's score is exchangeable with the m reference
scores, so its rank r (the number of reference scores below it, ties broken at random) is
uniform on {0, 1, ..., m}. Across prompts (m may differ per prompt) the jittered values
u = (r + U(0, 1)) / (m + 1) are then exactly Uniform(0, 1), whatever the score's distribution,
discrete or continuous.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats

from auditor.stats.outcome import TestOutcome, degenerate


def rank_of(value: float, reference_values: npt.ArrayLike, rng: np.random.Generator) -> int:
    """Rank of `value` among `reference_values`: #{ref < value} plus a uniform share of ties.

    With k reference values equal to `value`, the rank is #{ref < value} + J where J is
    uniform on {0, ..., k}, so an exchangeable value's rank is uniform on {0, ..., m}.
    NaN reference values are ignored.
    """
    ref = np.asarray(reference_values, dtype=float).ravel()
    ref = ref[~np.isnan(ref)]
    below = int(np.sum(ref < value))
    ties = int(np.sum(ref == value))
    return below + int(rng.integers(0, ties + 1))


def ranks_of(
    values: npt.ArrayLike, reference_values: npt.ArrayLike, rng: np.random.Generator
) -> np.ndarray:
    """Vectorised `rank_of`: `reference_values` is (n, m), one row per value, or (m,) shared.

    NaN reference values never count as below or tied, so leave them out of `n_candidates`.
    """
    vals = np.asarray(values, dtype=float).ravel()
    ref = np.asarray(reference_values, dtype=float)
    ref = np.broadcast_to(ref if ref.ndim == 2 else ref[None, :], (vals.size, ref.shape[-1]))
    below = np.sum(ref < vals[:, None], axis=1)
    ties = np.sum(ref == vals[:, None], axis=1)
    return np.asarray(below + rng.integers(0, ties + 1), dtype=np.int64)


def rank_uniformity_test(
    ranks: npt.ArrayLike, n_candidates: npt.ArrayLike | int, *, rng: np.random.Generator
) -> TestOutcome:
    """Cramér-von Mises test that ranks are uniform on {0, ..., m} (m = `n_candidates`).

    Null: every rank is uniform on {0, ..., m_i}, i.e. the provider's samples are
    exchangeable with the reference's. The discrete ranks are made continuous with
    u = (r + U(0, 1)) / (m + 1) (U drawn from `rng`), exactly Uniform(0, 1) under the null,
    and tested with `scipy.stats.cramervonmises` against Uniform(0, 1); it sees shifts (the
    provider's samples systematically less or more likely) and spread changes alike.
    Statistic: the CvM statistic. Effect: mean(2 r / m - 1), an unbiased estimate of Cliff's
    delta between the provider's scores and the reference's, P(provider > reference) -
    P(provider < reference) in [-1, 1]: negative when the provider's completions score lower
    (e.g. are less likely under the reference model), positive when higher (e.g. sampled
    at a lower temperature). Entries with m = 0 carry no information and are dropped.
    """
    r = np.asarray(ranks, dtype=float).ravel()
    m = np.broadcast_to(np.asarray(n_candidates, dtype=float), r.shape).ravel()
    keep = np.isfinite(r) & np.isfinite(m) & (m >= 1)
    r, m = r[keep], m[keep]
    if np.any((r < 0) | (r > m) | (r != np.round(r))):
        raise ValueError("ranks must be integers in 0..n_candidates")
    if r.size < 2:
        return degenerate(int(r.size))
    u = (r + rng.random(r.size)) / (m + 1.0)
    result = stats.cramervonmises(u, "uniform")
    effect = float(np.mean(2.0 * r / m - 1.0))
    return TestOutcome(
        statistic=result.statistic, p_value=result.pvalue, effect=effect, n=int(r.size)
    )
