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
from auditor.comparisons.observation import Observation
from auditor.records import TestResult
from auditor.stats import mean_shift_test


class LikelihoodMetric(StrEnum):
    NOT_AVAILABLE = "ref_likelihood"  # the reference scored no continuation this round
    REF_LOGPROB = "ref_logprob"  # sampled answers' mean log-likelihood under the reference
    REF_GAP_FIGURE = "ref_gap_figure"  # greedy answers' mean gap to the reference's top token


L = LikelihoodMetric


def _scored(obs: Iterable[Observation], greedy: bool) -> list[Observation]:
    return [
        o
        for o in obs
        if o.scores.get("ref_logprob_mean") is not None and (o.temperature == 0) == greedy
    ]


def reference_likelihood(
    reference: list[Observation], provider: list[Observation]
) -> list[Comparison]:
    """The provider's own answers scored under the reference weights
    (`auditor.scorers.reference_likelihood`).

    Sampled answers (temperature > 0): their mean token log-likelihood against that of the
    reference's own samples of the same probes (Mann-Whitney); honest serving draws from the
    same distribution. Greedy answers: the mean gap between the reference's top choice and
    the token the answer has, a figure (the noise model, `auditor.comparisons.noise`, tests
    the greedy answers step by step).
    """
    if not any(o.scores.get("ref_logprob_mean") is not None for o in reference):
        note = (
            "the reference did not score continuations in this round"
            if any(o.kind == "reference" for o in reference)
            else "needs a reference engine in the round"
        )
        missing = TestResult(
            name="reference_likelihood",
            statistic=None,
            p_value=None,
            effect=None,
            n=0,
            status="not_available",
            note=note,
        )
        return [Comparison(missing, L.NOT_AVAILABLE, Scope.ALL)]
    out = []
    probes = {o.probe_hash for o in _scored(provider, greedy=False)}
    a = values_of(
        (o for o in _scored(reference, greedy=False) if o.probe_hash in probes), "ref_logprob_mean"
    )
    b = values_of(_scored(provider, greedy=False), "ref_logprob_mean")
    if len(a) >= MIN_SAMPLES and len(b) >= MIN_SAMPLES:
        shift = result_of("shift:ref_logprob@sampled", mean_shift_test(a, b))
        out.append(Comparison(shift, L.REF_LOGPROB, Scope.SAMPLED))
    gaps = values_of(_scored(provider, greedy=True), "ref_gap_mean")
    if gaps:
        mean_gap = float(np.mean(gaps))
        shown = figure("likelihood:ref_gap", mean_gap, mean_gap, len(gaps))
        out.append(Comparison(shown, L.REF_GAP_FIGURE, Scope.GREEDY))
    return out


@comparators.register("likelihood")
class LikelihoodComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        return reference_likelihood(data.reference, data.provider)
