"""The provider's answers scored under the reference weights
(`auditor.scorers.reference_likelihood`)."""

from __future__ import annotations

from collections.abc import Iterable
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
    result_of,
    values_of,
)
from auditor.comparisons.metrics import PROMPT_CHANGED
from auditor.comparisons.observation import Observation
from auditor.comparisons.rules import AllOf, Figure, Moved, Not, Rule, register
from auditor.records import TestResult
from auditor.stats import mean_shift_test, proportion_test

GAP_TAIL_QUANTILE = 0.8
WIDESPREAD_SHARE = 0.7  # answers moved beyond honest noise: all traffic, not a share of it
SAMPLING_LIKENESS = 0.5  # greedy gaps half those of sampling at temperature 1: sampled
NEAR_TOP_LIKENESS = 0.15  # greedy gaps under this share of sampling's: not sampled


class LikelihoodMetric(StrEnum):
    NOT_AVAILABLE = "ref_likelihood"  # the reference scored no continuation this round
    REF_LOGPROB = "ref_logprob"  # sampled answers' mean log-likelihood under the reference
    REF_GAP = "ref_gap"  # greedy answers' gap to the reference's top token, vs trusted
    REF_GAP_FIGURE = "ref_gap_figure"  # the same mean gap where nobody is trusted
    GAP_LIKENESS = "ref_gap_sampling_likeness"  # greedy gap over the reference's sampled gap
    BEYOND_HONEST = "ref_gap_beyond_honest"  # share of greedy gaps beyond every trusted one


L = LikelihoodMetric


def _scored(obs: Iterable[Observation], greedy: bool) -> list[Observation]:
    return [
        o
        for o in obs
        if o.scores.get("ref_logprob_mean") is not None and (o.temperature == 0) == greedy
    ]


def reference_likelihood(
    reference: list[Observation], provider: list[Observation], trusted: list[Observation]
) -> list[Comparison]:
    """The provider's own answers scored under the reference weights
    (`auditor.scorers.reference_likelihood`).

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
                    name="reference_likelihood",
                    statistic=None,
                    p_value=None,
                    effect=None,
                    n=0,
                    status="not_available",
                    note=note,
                ),
                L.NOT_AVAILABLE,
                Scope.ALL,
            )
        ]
    out = []
    probes = {o.probe_hash for o in _scored(provider, greedy=False)}
    a = values_of(
        (o for o in _scored(reference, greedy=False) if o.probe_hash in probes), "ref_logprob_mean"
    )
    b = values_of(_scored(provider, greedy=False), "ref_logprob_mean")
    if len(a) >= MIN_SAMPLES and len(b) >= MIN_SAMPLES:
        outcome = mean_shift_test(a, b)
        out.append(
            Comparison(
                result_of("shift:ref_logprob@sampled", outcome), L.REF_LOGPROB, Scope.SAMPLED
            )
        )
    gaps = values_of(_scored(provider, greedy=True), "ref_gap_mean")
    honest = values_of(_scored(trusted, greedy=True), "ref_gap_mean")
    sampled_gaps = values_of(_scored(reference, greedy=False), "ref_gap_mean")
    likeness = (
        float(np.mean(gaps)) / float(np.mean(sampled_gaps))
        if gaps and sampled_gaps and np.mean(sampled_gaps) > 0
        else None
    )
    if likeness is not None:
        shown = figure("likelihood:greedy_gap_vs_sampled", likeness, None, len(gaps))
        out.append(Comparison(shown, L.GAP_LIKENESS, Scope.GREEDY))
    if len(gaps) >= MIN_SAMPLES and len(honest) >= MIN_SAMPLES:
        out += _gap_tail_test(gaps, honest)
    elif gaps:
        mean_gap = float(np.mean(gaps))
        shown = figure("likelihood:ref_gap", mean_gap, mean_gap, len(gaps))
        out.append(Comparison(shown, L.REF_GAP_FIGURE, Scope.GREEDY))
    return out


def _gap_tail_test(gaps: list[float], honest: list[float]) -> list[Comparison]:
    """How many of the provider's greedy answers fall in the upper tail (above the pooled
    `GAP_TAIL_QUANTILE`) of the gaps, against trusted providers' (Fisher). The threshold is
    a symmetric function of the pooled values, so under the null the count is exactly
    hypergeometric. A tail test, because other weights on a share of the traffic (or in a
    share of the prompts) move a share of the answers far and leave the rest alone; one-sided,
    because a provider closer to the reference than the trusted ones is no fault. Beside it,
    the share of the provider's gaps beyond every trusted provider's (a figure)."""
    threshold = float(np.quantile(np.concatenate([gaps, honest]), GAP_TAIL_QUANTILE))
    k_provider = sum(g > threshold for g in gaps)
    k_honest = sum(g > threshold for g in honest)
    outcome = proportion_test(k_honest, len(honest), k_provider, len(gaps), greater=True)
    result = result_of("rate:ref_gap_tail@trusted", outcome).model_copy(
        update={"statistic": k_provider / len(gaps), "honest_range": (0.0, k_honest / len(honest))}
    )
    beyond = sum(g > max(honest) for g in gaps) / len(gaps)
    shown = figure("likelihood:beyond_honest_share", beyond, None, len(gaps))
    return [
        Comparison(result, L.REF_GAP, Scope.TRUSTED),
        Comparison(shown, L.BEYOND_HONEST, Scope.TRUSTED),
    ]


@comparators.register("likelihood")
class LikelihoodComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        return reference_likelihood(data.reference, data.provider, data.trusted)


#: Greedy answers whose tokens stay near the reference's top choices (a small share of the gap
#: its own temperature-1 samples show) are greedy decoding on other weights, not sampling, even
#: where those weights' flatter logits let noise split repeats.
NEAR_TOP = AllOf((Moved(L.REF_GAP, Scope.TRUSTED), Figure(L.GAP_LIKENESS, below=NEAR_TOP_LIKENESS)))
#: Rules that found the temperature not honoured: the weights rules yield to them.
SAMPLING_SEEN = ("sampling_params.repeats_vary", "sampling_params.strays_and_varies")
LIKE_SAMPLING = "sampling_params.greedy_gap_like_sampling"
_MOVED = (
    "{figures[ref_gap_beyond_honest]:.0%} of greedy answers hold tokens the reference ranks "
    "lower than any trusted provider's answers do"
)
# Greedy answers hold tokens the reference would not pick, beyond what trusted providers'
# numeric noise gives, with the same prompt: the weights differ. Nearly every answer moved:
# the same weights degraded throughout, as a heavier quantization does. A share moved and
# the rest match trusted serving: part of the traffic (or of the prompts) meets other
# weights. Weight noise alone cannot tell a heavier quantization from a light fine-tune;
# tone and task scores can (the tone rule). Gaps as large as the reference's own
# temperature-1 samples show are sampling, not other weights.
register(
    Rule(
        name=LIKE_SAMPLING,
        metric=L.REF_GAP,
        scope=Scope.TRUSTED,
        when=(Not(PROMPT_CHANGED), Figure(L.GAP_LIKENESS, at_least=SAMPLING_LIKENESS)),
        suppressed_by=SAMPLING_SEEN,
        kind="sampling_params",
        weight=0.85,
        summary="temperature-0 answers pick tokens {figures[ref_gap_sampling_likeness]:.0%} "
        "as far from the reference's top choices as its own temperature-1 samples do: the "
        "temperature is not honoured",
    ),
    Rule(
        name="quantization.widespread",
        metric=L.REF_GAP,
        scope=Scope.TRUSTED,
        when=(Not(PROMPT_CHANGED), Figure(L.BEYOND_HONEST, at_least=WIDESPREAD_SHARE)),
        suppressed_by=(*SAMPLING_SEEN, LIKE_SAMPLING),
        kind="quantization",
        weight=0.8,
        summary=_MOVED + ": the same weights, more heavily quantized",
    ),
    Rule(
        name="model_variant.widespread",
        metric=L.REF_GAP,
        scope=Scope.TRUSTED,
        when=(Not(PROMPT_CHANGED), Figure(L.BEYOND_HONEST, at_least=WIDESPREAD_SHARE)),
        suppressed_by=(*SAMPLING_SEEN, LIKE_SAMPLING),
        kind="model_variant",
        weight=0.7,
        summary=_MOVED + ": or other weights",
    ),
    Rule(
        name="model_variant.partial",
        metric=L.REF_GAP,
        scope=Scope.TRUSTED,
        when=(
            Not(PROMPT_CHANGED),
            Figure(L.BEYOND_HONEST, below=WIDESPREAD_SHARE, if_missing=True),
        ),
        suppressed_by=(*SAMPLING_SEEN, LIKE_SAMPLING),
        kind="model_variant",
        weight=0.8,
        summary=_MOVED + ": part of the traffic is served by other weights",
    ),
    Rule(
        name="quantization.partial",
        metric=L.REF_GAP,
        scope=Scope.TRUSTED,
        when=(
            Not(PROMPT_CHANGED),
            Figure(L.BEYOND_HONEST, below=WIDESPREAD_SHARE, if_missing=True),
        ),
        suppressed_by=(*SAMPLING_SEEN, LIKE_SAMPLING),
        kind="quantization",
        weight=0.5,
        summary=_MOVED + ": or a quantization that hurts some prompts only",
    ),
)
