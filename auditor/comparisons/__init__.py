"""Observations of a provider and of the reference -> statistical comparisons.

One module per kind of evidence, each a registered `Comparator` that declares the metrics it
emits and, beside them, the diagnosis rules that read them (`auditor.comparisons.rules`).
`compare` runs every registered comparator for one provider. Pure functions over
observations; no I/O.
"""

from __future__ import annotations

from auditor.comparisons.base import Comparison, ComparisonInput, comparators
from auditor.comparisons.greedy import common_prefix
from auditor.comparisons.likelihood import reference_likelihood
from auditor.comparisons.observation import Observation
from auditor.config import DEFAULT_NOISE_TOLERANCE

__all__ = [
    "DEFAULT_NOISE_TOLERANCE",
    "Comparison",
    "ComparisonInput",
    "common_prefix",
    "compare",
    "reference_likelihood",
]


def compare(
    reference: list[Observation],
    provider: list[Observation],
    seed: str,
    trusted: list[Observation] | None = None,
    noise_tolerance: float = DEFAULT_NOISE_TOLERANCE,
    context_window: int | None = None,
    level: float | None = None,
) -> list[Comparison]:
    """Every registered comparison of `provider` against `reference` (in the order of the
    comparators' names, so a round's tests always come in the same order). `level`: the one
    the verdict tests at (None: its default)."""
    data = ComparisonInput(
        reference, provider, trusted or [], seed, noise_tolerance, context_window, level
    )
    return [c for _, comparator in comparators.items() for c in comparator().compare(data)]
