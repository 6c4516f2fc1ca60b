"""The provider's answers scored under the reference weights (`auditor.likelihood`)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from auditor.comparisons.base import MIN_SAMPLES, Comparison, figure, result_of, values_of
from auditor.observations import Observation
from auditor.records import TestResult
from auditor.stats import mean_shift_test, proportion_test

GAP_TAIL_QUANTILE = 0.8


def _scored(obs: Iterable[Observation], greedy: bool) -> list[Observation]:
    return [
        o
        for o in obs
        if o.scores.get("ref_logprob_mean") is not None and (o.temperature == 0) == greedy
    ]


def reference_likelihood(
    reference: list[Observation], provider: list[Observation], trusted: list[Observation]
) -> list[Comparison]:
    """The provider's own answers scored under the reference weights (`auditor.likelihood`).

    Sampled answers (temperature > 0): their mean token log-likelihood against that of the
    reference's own samples of the same probes (Mann-Whitney); honest serving draws from the
    same distribution. Greedy answers: the mean gap between the reference's top choice and
    the token the answer has. Numeric noise only breaks near-ties, so honest gaps are small
    but not zero; the provider's gaps are tested against trusted providers' (the noise band)
    and reported as a figure where no provider is trusted.
    """
    if not any(o.scores.get("ref_logprob_mean") is not None for o in reference):
        note = (
            "the reference did not score continuations in this round"
            if any(o.kind == "reference" for o in reference)
            else "needs a reference engine in the round"
        )
        return [
            Comparison(
                TestResult(
                    name="reference_likelihood", statistic=None, p_value=None, effect=None,
                    n=0, status="not_available", note=note,
                ),
                "ref_likelihood",
                "all",
            )
        ]  # fmt: skip
    out = []
    probes = {o.probe_hash for o in _scored(provider, greedy=False)}
    a = values_of(
        (o for o in _scored(reference, greedy=False) if o.probe_hash in probes), "ref_logprob_mean"
    )
    b = values_of(_scored(provider, greedy=False), "ref_logprob_mean")
    if len(a) >= MIN_SAMPLES and len(b) >= MIN_SAMPLES:
        outcome = mean_shift_test(a, b)
        out.append(
            Comparison(result_of("shift:ref_logprob@sampled", outcome), "ref_logprob", "sampled")
        )
    gaps = values_of(_scored(provider, greedy=True), "ref_gap_mean")
    honest = values_of(_scored(trusted, greedy=True), "ref_gap_mean")
    sampled_gaps = values_of(_scored(reference, greedy=False), "ref_gap_mean")
    likeness = (
        float(np.mean(gaps)) / float(np.mean(sampled_gaps))
        if gaps and sampled_gaps and np.mean(sampled_gaps) > 0
        else None
    )
    if len(gaps) >= MIN_SAMPLES and len(honest) >= MIN_SAMPLES:
        out.append(_gap_tail_test(gaps, honest, likeness))
    elif gaps:
        mean_gap = float(np.mean(gaps))
        shown = figure("likelihood:ref_gap", mean_gap, mean_gap, len(gaps))
        out.append(Comparison(shown, "ref_gap_figure", "greedy"))
    return out


def _gap_tail_test(gaps: list[float], honest: list[float], likeness: float | None) -> Comparison:
    """How many of the provider's greedy answers fall in the upper tail (above the pooled
    `GAP_TAIL_QUANTILE`) of the gaps, against trusted providers' (Fisher). The threshold is
    a symmetric function of the pooled values, so under the null the count is exactly
    hypergeometric. A tail test, because other weights on a share of the traffic (or in a
    share of the prompts) move a share of the answers far and leave the rest alone; one-sided,
    because a provider closer to the reference than the trusted ones is no fault.

    `likeness` (kept for the diagnosis): the provider's mean greedy gap over the mean gap of
    the reference's own sampled answers. Greedy decoding on other weights picks the argmax
    of slightly different logits, tokens near the reference's top; sampling picks tokens as
    far from it as the reference's own samples do."""
    threshold = float(np.quantile(np.concatenate([gaps, honest]), GAP_TAIL_QUANTILE))
    k_provider = sum(g > threshold for g in gaps)
    k_honest = sum(g > threshold for g in honest)
    outcome = proportion_test(k_honest, len(honest), k_provider, len(gaps), greater=True)
    result = result_of("rate:ref_gap_tail@trusted", outcome).model_copy(
        update={"statistic": k_provider / len(gaps), "honest_range": (0.0, k_honest / len(honest))}
    )
    beyond = sum(g > max(honest) for g in gaps) / len(gaps)
    return Comparison(
        result, "ref_gap", "trusted", beyond_honest=beyond, sampling_likeness=likeness
    )
