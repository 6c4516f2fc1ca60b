"""The record every test returns, and the input clean-up the tests share."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class TestOutcome:
    """One two-sample (or one-sample) test's result.

    `statistic` is the test's own statistic, `p_value` its p-value under the null named in the
    function's docstring, `effect` the function's documented effect size (signed so that a
    positive value means "the second sample, the provider, is larger") and `n` the number of
    samples that entered the test after dropping unusable ones. All three floats are finite:
    degenerate inputs (empty, constant, too small) give statistic 0, p-value 1, effect 0.
    """

    __test__ = False  # not a pytest test class, despite the name

    statistic: float
    p_value: float
    effect: float
    n: int

    def __post_init__(self) -> None:
        for name in ("statistic", "p_value", "effect"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"TestOutcome.{name} must be finite, got {value}")
            object.__setattr__(self, name, value)
        p = self.p_value
        object.__setattr__(self, "p_value", min(1.0, max(0.0, p)))
        object.__setattr__(self, "n", int(self.n))


def degenerate(n: int) -> TestOutcome:
    """The outcome of a test that had nothing to compare: never evidence of a difference."""
    return TestOutcome(statistic=0.0, p_value=1.0, effect=0.0, n=n)


def finite_values(values: npt.ArrayLike) -> np.ndarray:
    """A 1-D float array of the finite entries of `values` (NaN, None and infinities dropped)."""
    arr = np.asarray(values, dtype=float).ravel() if np.size(values) else np.empty(0)
    return arr[np.isfinite(arr)]


def safe_float(value: float, default: float) -> float:
    """`value` as a float, or `default` when it is NaN or infinite."""
    value = float(value)
    return value if math.isfinite(value) else default
