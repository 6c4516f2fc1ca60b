"""Logprobs the provider returns, against the reference's at the same positions.

Where both answered a request with per-token logprobs, walk the tokens both chose alike (the
common token prefix) and take, per answer, the mean absolute difference of the chosen token's
log-probability and the overlap of the two top-k sets. Same weights on other hardware differ
by numeric noise (thousandths of a nat); a heavier quantization or other weights move every
position. The distances are tested against trusted providers' (their noise is the honest
band) and reported as figures where no provider is trusted.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

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
)
from auditor.comparisons.likelihood import SAMPLING_SEEN
from auditor.comparisons.observation import Observation
from auditor.comparisons.rules import Rule, register
from auditor.stats import mean_shift_test


class LogprobMetric(StrEnum):
    OVERLAP = "logprobs_overlap"  # Jaccard overlap of the top-k sets (figure)
    DISTANCE = "logprob_distance"  # mean |logprob difference| of the same chosen tokens


def position_distance(
    reference: list[dict[str, Any]], provider: list[dict[str, Any]]
) -> tuple[float, float] | None:
    """(mean |logprob difference| of the chosen tokens, mean top-k overlap) over the common
    token prefix; None when the answers share no first token."""
    diffs, overlaps = [], []
    for ref, got in zip(reference, provider, strict=False):
        if ref.get("token") != got.get("token"):
            break
        if not isinstance(ref.get("logprob"), int | float) or not isinstance(
            got.get("logprob"), int | float
        ):
            break
        diffs.append(abs(float(ref["logprob"]) - float(got["logprob"])))
        ref_top = {t.get("token") for t in ref.get("top_logprobs") or []}
        got_top = {t.get("token") for t in got.get("top_logprobs") or []}
        if ref_top and got_top:
            overlaps.append(len(ref_top & got_top) / len(ref_top | got_top))
    if not diffs:
        return None
    return float(np.mean(diffs)), float(np.mean(overlaps)) if overlaps else 1.0


def _distances(reference: list[Observation], obs: list[Observation]) -> list[tuple[float, float]]:
    ref = {o.key: o.logprobs for o in reference if o.ok and o.logprobs}
    found = [
        position_distance(ref[o.key], o.logprobs)
        for o in obs
        if o.ok and o.logprobs and o.key in ref
    ]
    return [d for d in found if d is not None]


def returned_logprobs(
    reference: list[Observation], provider: list[Observation], trusted: list[Observation]
) -> list[Comparison]:
    distances = _distances(reference, provider)
    if not distances:
        return []
    diffs = [d for d, _ in distances]
    overlap = float(np.mean([o for _, o in distances]))
    honest = [d for d, _ in _distances(reference, trusted)]
    out = [
        Comparison(
            figure("logprobs:top_k_overlap", overlap, overlap - 1.0, len(distances)),
            LogprobMetric.OVERLAP,
            Scope.LOGPROBS,
        )
    ]
    if len(diffs) >= MIN_SAMPLES and len(honest) >= MIN_SAMPLES:
        outcome = mean_shift_test(honest, diffs, greater=True)
        result = result_of("shift:logprob_distance@trusted", outcome).model_copy(
            update={"statistic": float(np.mean(diffs)), "honest_range": (0.0, max(honest))}
        )
        out.append(Comparison(result, LogprobMetric.DISTANCE, Scope.TRUSTED))
    else:
        mean = float(np.mean(diffs))
        out.append(
            Comparison(
                figure("logprobs:distance", mean, mean, len(diffs)),
                LogprobMetric.DISTANCE,
                Scope.LOGPROBS,
            )
        )
    return out


@comparators.register("logprobs")
class LogprobComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        return returned_logprobs(data.reference, data.provider, data.trusted)


_MOVED = (
    "returned logprobs of the same tokens differ from the reference's by {statistic:.3f} nats "
    "on average, beyond trusted providers'"
)
register(
    Rule(
        name="quantization.logprobs_moved",
        metric=LogprobMetric.DISTANCE,
        scope=Scope.TRUSTED,
        direction="up",
        suppressed_by=SAMPLING_SEEN,
        kind="quantization",
        weight=0.75,
        summary=_MOVED + ": the same weights, more heavily quantized",
    ),
    Rule(
        name="model_variant.logprobs_moved",
        metric=LogprobMetric.DISTANCE,
        scope=Scope.TRUSTED,
        direction="up",
        suppressed_by=SAMPLING_SEEN,
        kind="model_variant",
        weight=0.65,
        summary=_MOVED + ": or other weights",
    ),
)
