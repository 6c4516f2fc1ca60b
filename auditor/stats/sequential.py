"""Deciding early: when may a budget policy stop sampling a provider?

A policy that samples in batches and re-tests after each batch looks at the data several
times. Testing every look at level alpha inflates the false-alarm rate (five looks at 0.05
raise it to about 0.14 for a typical test). The rule here spends the false-alarm budget
across the looks, Bonferroni style: with at most K looks planned, a look declares the
provider deviant only when its p-value is at most alpha / K. By the union bound,

    P(any look falsely alarms) <= sum over looks of P(p_k <= alpha / K) <= K * alpha / K
                                = alpha,

whatever the dependence between looks (they share data, so they are strongly dependent and
the true rate is well below alpha). Stopping early for consistency never adds a false alarm,
so the consistency rule (p-value at least `consistent_p` once `n_min` samples are in) is free
to choose for the budget's sake: it only trades power for cost. Looking fewer than K times
keeps the guarantee; looking more than K times breaks it, so K must be fixed in advance
(e.g. ceil(n_max / batch size)).
"""

from __future__ import annotations

import math
from typing import Literal

Decision = Literal["continue", "settled_deviant", "settled_consistent"]


def per_look_alpha(alpha: float, looks: int) -> float:
    """The significance level each of `looks` planned looks is tested at: alpha / looks."""
    if looks < 1:
        raise ValueError("looks must be at least 1")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    return alpha / looks


def sequential_decision(
    p_value: float,
    n: int,
    n_max: int,
    *,
    looks: int,
    alpha: float = 0.05,
    n_min: int = 0,
    consistent_p: float = 0.5,
    smallest_p: float | None = None,
    futility_p: float = 0.0,
) -> Decision:
    """Decide after one look: stop as deviant, stop as consistent, or sample more.

    - "settled_deviant" when `p_value` <= alpha / looks (see the module docstring for why the
      overall false-alarm rate stays at most alpha);
    - "settled_consistent" when the budget is spent (n >= n_max), or when n >= n_min,
      `p_value` >= consistent_p and no single test is promising (`smallest_p`, the smallest
      uncorrected p-value, at least `futility_p`): the data look like the reference, more
      samples are unlikely to change that, and stopping here cannot cause a false alarm. A
      lone test pointing somewhere keeps the provider in doubt even where the correction for
      many tests hides it: more samples are what tell a weak fault from chance;
    - "continue" otherwise. A NaN p-value counts as 1.
    """
    threshold = per_look_alpha(alpha, looks)
    p = 1.0 if math.isnan(p_value) else p_value
    if p <= threshold:
        return "settled_deviant"
    promising = smallest_p is not None and smallest_p < futility_p
    if n >= n_max or (n >= n_min and p >= consistent_p and not promising):
        return "settled_consistent"
    return "continue"
