"""Intervals: exact binomial confidence intervals and the honest-data noise band."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats

from auditor.stats.outcome import finite_values


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided confidence interval for a binomial proportion k / n.

    The bounds are Beta quantiles, so the interval covers the true proportion with
    probability at least `confidence` for every n and p. n = 0 gives (0, 1).
    """
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    tail = (1.0 - confidence) / 2.0
    low = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1.0 - tail, k + 1, n - k))
    return low, high


def honest_range(values: npt.ArrayLike, coverage: float = 0.95) -> tuple[float, float]:
    """The central `coverage` interval of a statistic's values on honest data.

    Empirical quantiles (1 - coverage) / 2 and (1 + coverage) / 2 with linear
    interpolation; NaN and infinite values are ignored. This is the noise band printed beside
    every figure: what the statistic does when nothing is wrong (e.g. reference against
    reference, or a provider against its own history). Raises ValueError when there is no
    finite value, since no band can be claimed without honest data.
    """
    if not 0 < coverage <= 1:
        raise ValueError("coverage must be in (0, 1]")
    arr = finite_values(values)
    if arr.size == 0:
        raise ValueError("honest_range needs at least one finite value")
    low, high = np.quantile(arr, [(1.0 - coverage) / 2.0, (1.0 + coverage) / 2.0])
    return float(low), float(high)
