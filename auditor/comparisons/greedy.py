"""Greedy (temperature-0) answers beside the reference's: how many are the same text, and how
many part ways early. Figures for readers (the tests against honest noise are in
`auditor.comparisons.noise`)."""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from auditor.comparisons.base import (
    MIN_SAMPLES,
    Comparator,
    Comparison,
    ComparisonInput,
    Scope,
    comparators,
    figure,
)
from auditor.comparisons.observation import Observation


class GreedyMetric(StrEnum):
    EXACT = "greedy_exact"  # share of answers equal to the reference's
    EARLY = "greedy_early"  # share diverging from the reference's within the first quarter


G = GreedyMetric


def greedy_agreement(reference: list[Observation], provider: list[Observation]) -> list[Comparison]:
    """At temperature 0 the reference is deterministic: the share of the provider's answers
    that equal it exactly, and the share that diverge within their first quarter."""
    pairs = _greedy_pairs(reference, provider)
    if len(pairs) < MIN_SAMPLES:
        return []
    exact = float(np.mean([a == b for a, b in pairs]))
    early = float(np.mean([diverges_early(a, b) for a, b in pairs]))
    n = len(pairs)
    return [
        Comparison(figure("greedy:exact_match", exact, exact - 1, n), G.EXACT, Scope.GREEDY),
        Comparison(figure("greedy:early_divergence", early, early, n), G.EARLY, Scope.GREEDY),
    ]


def common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def diverges_early(first: str, other: str) -> bool:
    """`other` parts from `first` within `first`'s first quarter."""
    return common_prefix(first, other) < 0.25 * max(len(first), 1)


def _greedy_pairs(reference: list[Observation], obs: list[Observation]) -> list[tuple[str, str]]:
    """(reference answer, answer) for every temperature-0 request both answered."""
    ref = {o.key: o.text or "" for o in reference if o.ok and o.temperature == 0}
    return [(ref[o.key], o.text or "") for o in obs if o.ok and o.key in ref]


@comparators.register("greedy")
class GreedyComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        return greedy_agreement(data.reference, data.provider)
