"""Logprobs the provider returns, against the reference's at the same positions.

Where both answered a request with per-token logprobs, walk the tokens both chose alike (the
common token prefix): the chosen tokens' log-probabilities and the two top-k sets. The same
weights on other hardware differ by numeric noise; a heavier quantization or other weights
move every position. The distances are tested against the noise model's tolerance
(`auditor.comparisons.noise`), no trusted provider needed.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
from scipy import stats

from auditor.comparisons.base import (
    MIN_SAMPLES,
    Comparator,
    Comparison,
    ComparisonInput,
    Scope,
    comparators,
    figure,
)
from auditor.comparisons.noise import tolerance_for
from auditor.comparisons.noise_rules import SAMPLING
from auditor.comparisons.observation import Observation
from auditor.comparisons.rules import Rule, register
from auditor.records import TestResult


class LogprobMetric(StrEnum):
    OVERLAP = "logprobs_overlap"  # Jaccard overlap of the top-k sets (figure)
    DISTANCE = "logprob_distance"  # mean |logprob difference| of the same chosen tokens


def returned_logprobs(
    reference: list[Observation], provider: list[Observation], sigma: float, band: str
) -> list[Comparison]:
    """The overlap of the top-k sets (a figure), and the distance of the chosen tokens'
    log-probabilities against honest noise: with noise of std `sigma` on every logit, the
    difference at a position has a variance of at most 2 sigma^2 (the token's own logit and
    the normaliser), so the sum of squared differences over 2 sigma^2 is at most chi-squared
    with one degree per position (`shift:logprob_distance`, one-sided; statistic: the mean
    absolute difference in nats)."""
    pairs = _position_pairs(reference, provider)
    if not pairs:
        return []
    diffs = np.array([d for answer in pairs for d in answer[0]])
    overlap = float(np.mean([o for answer in pairs for o in answer[1]] or [1.0]))
    out = [
        Comparison(
            figure("logprobs:top_k_overlap", overlap, overlap - 1.0, len(pairs)),
            LogprobMetric.OVERLAP,
            Scope.LOGPROBS,
        )
    ]
    if len(pairs) < MIN_SAMPLES or not diffs.size:
        return out
    statistic = float(np.sum(diffs**2) / (2.0 * sigma**2))
    expected = float(np.sqrt(2.0 / np.pi) * np.sqrt(2.0) * sigma)  # E|N(0, 2 sigma^2)|
    result = TestResult(
        name="shift:logprob_distance",
        statistic=float(np.mean(np.abs(diffs))),
        p_value=float(stats.chi2.sf(statistic, diffs.size)),
        effect=float(np.mean(np.abs(diffs))) - expected,
        n=int(diffs.size),
        honest_range=(0.0, expected),
        note=f"honest band from {band}",
    )
    out.append(Comparison(result, LogprobMetric.DISTANCE, Scope.LOGPROBS))
    return out


def _position_pairs(
    reference: list[Observation], obs: list[Observation]
) -> list[tuple[list[float], list[float]]]:
    """Per answer both returned logprobs for: the signed logprob differences and the top-k
    overlaps over the tokens both chose alike (the common token prefix)."""
    ref = {o.key: o.logprobs for o in reference if o.ok and o.logprobs}
    out = []
    for o in obs:
        if not (o.ok and o.logprobs and o.key in ref):
            continue
        diffs, overlaps = [], []
        for a, b in zip(ref[o.key] or [], o.logprobs, strict=False):
            if a.get("token") != b.get("token"):
                break
            if not isinstance(a.get("logprob"), int | float) or not isinstance(
                b.get("logprob"), int | float
            ):
                break
            diffs.append(float(b["logprob"]) - float(a["logprob"]))
            top_a = {t.get("token") for t in a.get("top_logprobs") or []}
            top_b = {t.get("token") for t in b.get("top_logprobs") or []}
            if top_a and top_b:
                overlaps.append(len(top_a & top_b) / len(top_a | top_b))
        if diffs:
            out.append((diffs, overlaps))
    return out


@comparators.register("logprobs")
class LogprobComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        sigma, band = tolerance_for(data)
        return returned_logprobs(data.reference, data.provider, sigma, band)


# Returned logprobs of the very tokens the reference chose, further from its own than numeric
# noise allows: the numbers behind the answers differ, as a heavier quantization makes them.
_MOVED = (
    "returned logprobs of the same tokens differ from the reference's by {statistic:.3f} nats "
    "on average, beyond numeric noise"
)
register(
    Rule(
        name="quantization.logprobs_moved",
        metric=LogprobMetric.DISTANCE,
        direction="up",
        suppressed_by=SAMPLING,
        kind="quantization",
        weight=0.75,
        summary=_MOVED + ": the same weights, more heavily quantized",
    ),
    Rule(
        name="model_variant.logprobs_moved",
        metric=LogprobMetric.DISTANCE,
        direction="up",
        suppressed_by=SAMPLING,
        kind="model_variant",
        weight=0.65,
        summary=_MOVED + ": or other weights",
    ),
)
