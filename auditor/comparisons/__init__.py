"""Observations of a provider and of the reference -> statistical comparisons.

One module per kind of evidence; `compare` runs them all for one provider. Pure functions
over observations; no I/O.
"""

from __future__ import annotations

from auditor.comparisons.base import Comparison
from auditor.comparisons.greedy import (
    against_trusted,
    common_prefix,
    greedy_agreement,
    repeat_variation,
)
from auditor.comparisons.likelihood import reference_likelihood
from auditor.comparisons.logprobs import returned_logprobs
from auditor.comparisons.metrics import metric_comparisons, prompt_accounting, violations
from auditor.comparisons.perturbation import perturbation_gap
from auditor.comparisons.sampled import likelihood_ranks, sampled_outputs
from auditor.comparisons.tools import tool_use
from auditor.observations import Observation

__all__ = ["Comparison", "common_prefix", "compare", "reference_likelihood"]


def compare(
    reference: list[Observation],
    provider: list[Observation],
    seed: str,
    trusted: list[Observation] | None = None,
) -> list[Comparison]:
    return [
        *against_trusted(reference, provider, trusted or []),
        *metric_comparisons(reference, provider),
        *violations(provider),
        *prompt_accounting(reference, provider),
        *sampled_outputs(reference, provider, seed),
        *likelihood_ranks(reference, provider, seed),
        *greedy_agreement(reference, provider),
        *repeat_variation(reference, provider),
        *reference_likelihood(reference, provider, trusted or []),
        *returned_logprobs(reference, provider, trusted or []),
        *perturbation_gap(reference, provider),
        *tool_use(reference, provider),
    ]
