"""Exact within-group label permutation test: do the labelled members of each group stand out?

Built for perturbed pairs (a problem and its twins with other numbers), but generic: each group
holds a few values, some of them carry a label (the original problem), the others do not (its
twins). If the label carries no information about the value, every choice of which members
carry it is equally likely, and the sum of the labelled values has a distribution that can be
computed exactly, group by group, by convolution: no sampling, no approximation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

from auditor.stats.outcome import TestOutcome, degenerate

_DIGITS = 9  # sums are rounded to this many decimals before they are compared


def label_permutation_test(
    groups: Sequence[tuple[Sequence[float], Sequence[float]]],
) -> TestOutcome:
    """One-sided exact permutation test that labelled values are larger than their group's others.

    `groups`: one `(labelled, others)` pair of value lists per group (e.g. the original's and
    the twins' provider-minus-reference pass rates). Groups lacking either side carry no
    information and are left out, as are groups whose values are all equal.

    Null: within each group the labels are exchangeable, i.e. given the group's values, every
    subset of the labelled size is equally likely to be the labelled one, independently across
    groups. Statistic: T, the sum of the labelled values. p-value: P(T* >= T) over all
    relabellings, computed exactly (the distribution of T* is the convolution of the groups'
    own distributions). Because the groups' sizes are fixed, T is a monotone function of the
    pooled difference mean(labelled) - mean(others), the effect reported, so the test is the
    permutation test of that difference too. `n` = number of values in the usable groups.
    """
    usable = [
        ([float(v) for v in lab], [float(v) for v in oth])
        for lab, oth in groups
        if len(lab) and len(oth)
    ]
    n = sum(len(lab) + len(oth) for lab, oth in usable)
    if not usable:
        return degenerate(0)
    labelled = [v for lab, _ in usable for v in lab]
    others = [v for _, oth in usable for v in oth]
    if not all(math.isfinite(v) for v in labelled + others):
        raise ValueError("label_permutation_test needs finite values")
    effect = sum(labelled) / len(labelled) - sum(others) / len(others)
    observed = sum(labelled)

    distribution: dict[float, float] = {0.0: 1.0}
    for lab, oth in usable:
        values = lab + oth
        if max(values) == min(values):
            continue  # every relabelling gives the same sum: a constant shift
        shift = sum(lab)
        choices = list(combinations(values, len(lab)))
        weight = 1.0 / len(choices)
        group: dict[float, float] = {}
        for chosen in choices:
            key = round(sum(chosen) - shift, _DIGITS)
            group[key] = group.get(key, 0.0) + weight
        distribution = _convolve(distribution, group)
    # T* - T is the convolution's variable: the p-value is P(T* - T >= 0)
    p_value = sum(p for value, p in distribution.items() if value >= -(10.0**-_DIGITS))
    return TestOutcome(statistic=observed, p_value=min(1.0, p_value), effect=effect, n=n)


def label_permutation_floor(sizes: Sequence[tuple[int, int]]) -> float:
    """The smallest p-value `label_permutation_test` can reach with groups of these sizes.

    `sizes`: one `(labelled, others)` count per group. Reached when, in every group, the
    labelled values are the largest and strictly above the others: 1 / prod C(size, labelled).
    A design whose floor is above the test level cannot reject whatever the answers.
    """
    floor = 1.0
    for labelled, others in sizes:
        if labelled > 0 and others > 0:
            floor /= math.comb(labelled + others, labelled)
    return floor


def _convolve(a: dict[float, float], b: dict[float, float]) -> dict[float, float]:
    out: dict[float, float] = {}
    for va, pa in a.items():
        for vb, pb in b.items():
            key = round(va + vb, _DIGITS)
            out[key] = out.get(key, 0.0) + pa * pb
    return out
