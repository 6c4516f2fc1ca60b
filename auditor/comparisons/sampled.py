"""Sampled (temperature > 0) answers: their texts and their likelihood ranks."""

from __future__ import annotations

from collections import defaultdict
from enum import StrEnum

from auditor.comparisons.base import (
    MIN_SAMPLES,
    Comparator,
    Comparison,
    ComparisonInput,
    Scope,
    comparators,
    result_of,
    seeded_rng,
)
from auditor.comparisons.likelihood import LikelihoodMetric
from auditor.comparisons.metrics import PROMPT_CHANGED
from auditor.comparisons.noise_rules import SAMPLING
from auditor.comparisons.observation import Observation, independent_draws
from auditor.comparisons.rules import Not, Rule, register
from auditor.stats import mmd_hamming_test, rank_of, rank_uniformity_test


class SampledMetric(StrEnum):
    TEXT = "text"  # the completions themselves (MMD, Hamming kernel)
    REF_RANK = "ref_rank"  # their reference likelihood ranked among the reference's samples


S = SampledMetric


def sampled_outputs(
    reference: list[Observation], provider: list[Observation], seed: str
) -> list[Comparison]:
    """MMD with a Hamming kernel (Gao et al. 2024) on the completions of sampled probes
    (temperature > 0), compared prompt by prompt."""

    def sampled(obs: list[Observation]) -> list[Observation]:
        return independent_draws(
            o for o in obs if o.ok and o.text is not None and (o.temperature or 0) > 0
        )

    a, b = sampled(reference), sampled(provider)
    if len(a) < MIN_SAMPLES or len(b) < MIN_SAMPLES:
        return []
    rng = seeded_rng(seed)
    outcome = mmd_hamming_test(
        [o.text or "" for o in a],
        [o.text or "" for o in b],
        rng=rng,
        x_groups=[o.probe_hash for o in a],
        y_groups=[o.probe_hash for o in b],
        n_permutations=999,
    )
    return [Comparison(result_of("mmd_hamming:sampled", outcome), S.TEXT, Scope.SAMPLED)]


def likelihood_ranks(
    reference: list[Observation], provider: list[Observation], seed: str
) -> list[Comparison]:
    """Rank test (RUT): per sampled probe, the provider's first sample is ranked by its
    reference log-likelihood among the reference's own samples of that probe. Under an honest
    provider the ranks are uniform whatever the score's distribution (`rank_uniformity_test`);
    one provider sample per probe keeps the ranks independent, so the test is exact."""
    ref_scores: dict[str, list[float]] = defaultdict(list)
    for o in _scored_samples(reference):
        ref_scores[o.probe_hash].append(o.scores["ref_logprob_mean"] or 0.0)
    first: dict[str, Observation] = {}
    for o in sorted(_scored_samples(provider), key=lambda o: o.sample_index):
        first.setdefault(o.probe_hash, o)
    pairs = [
        (o.scores["ref_logprob_mean"] or 0.0, ref_scores[h])
        for h, o in first.items()
        if len(ref_scores[h]) >= 2
    ]
    if len(pairs) < MIN_SAMPLES:
        return []
    rng = seeded_rng(seed + "/ranks")
    ranks = [rank_of(value, refs, rng) for value, refs in pairs]
    outcome = rank_uniformity_test(ranks, [len(refs) for _, refs in pairs], rng=rng)
    rank = result_of("rank:ref_logprob@sampled", outcome)
    return [Comparison(rank, S.REF_RANK, Scope.SAMPLED)]


def _scored_samples(obs: list[Observation]) -> list[Observation]:
    return independent_draws(
        o
        for o in obs
        if o.ok and (o.temperature or 0) > 0 and o.scores.get("ref_logprob_mean") is not None
    )


@comparators.register("sampled")
class SampledComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        return [
            *sampled_outputs(data.reference, data.provider, data.seed),
            *likelihood_ranks(data.reference, data.provider, data.seed),
        ]


# Sampled answers more likely under the reference weights than its own samples: drawn from a
# narrower distribution (a lower temperature or top_p than asked). Less likely: other weights
# (or a higher temperature, which the greedy tests tell apart).
_LIKELIHOOD = (LikelihoodMetric.REF_LOGPROB, S.REF_RANK)
register(
    Rule(
        name="sampling_params.sampled_more_likely",
        metric=_LIKELIHOOD,
        scope=Scope.SAMPLED,
        direction="up",
        when=(Not(PROMPT_CHANGED),),
        suppressed_by=SAMPLING,
        kind="sampling_params",
        weight=0.7,
        summary="sampled answers are more likely under the reference weights than its own "
        "samples ({name}, Cliff's delta {effect:+.2f}): sampled at a lower temperature or "
        "top_p than asked",
    ),
    Rule(
        name="model_variant.sampled_less_likely",
        metric=_LIKELIHOOD,
        scope=Scope.SAMPLED,
        direction="down",
        when=(Not(PROMPT_CHANGED),),
        suppressed_by=SAMPLING,
        kind="model_variant",
        weight=0.6,
        summary="sampled answers are less likely under the reference weights than its own "
        "samples ({name}, Cliff's delta {effect:+.2f}): other weights",
    ),
    Rule(
        name="sampling_params.sampled_distribution",
        metric=S.TEXT,
        scope=Scope.SAMPLED,
        # Other weights move sampled answers too: the MMD names sampling only when nothing
        # else names other weights.
        suppressed_by=("model_variant",),
        kind="sampling_params",
        weight=0.6,
        summary="sampled answers are distributed differently (MMD {effect:.3f})",
    ),
)
