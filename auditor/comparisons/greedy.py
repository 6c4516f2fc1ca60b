"""Greedy (temperature-0) answers: agreement with the reference, repeats, trusted providers."""

from __future__ import annotations

from collections import defaultdict
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
)
from auditor.comparisons.likelihood import NEAR_TOP
from auditor.comparisons.metrics import PROMPT_CHANGED
from auditor.comparisons.observation import Observation
from auditor.comparisons.rules import Figure, Not, Rule, register
from auditor.stats import proportion_test


class GreedyMetric(StrEnum):
    EXACT = "greedy_exact"  # share of answers equal to the reference's (figure)
    EARLY = "greedy_early"  # share diverging from the reference's within the first quarter
    REPEATS_VARY = "repeats_vary"  # temperature-0 repeats parting ways early
    REPEATS_VARY_FIGURE = "repeats_vary_figure"  # the same, beside trusted providers'


G = GreedyMetric


def greedy_agreement(reference: list[Observation], provider: list[Observation]) -> list[Comparison]:
    """At temperature 0 the reference is deterministic: the share of the provider's answers
    that equal it exactly, and the share that diverge within their first quarter. Honest
    serving diverges late and rarely. Without a calibrated noise band these are reported
    as figures, not tests (p-value null)."""
    pairs = _greedy_pairs(reference, provider)
    if len(pairs) < MIN_SAMPLES:
        return []
    exact = float(np.mean([a == b for a, b in pairs]))
    early = float(np.mean([_diverges_early(a, b) for a, b in pairs]))
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


def _greedy_pairs(reference: list[Observation], obs: list[Observation]) -> list[tuple[str, str]]:
    """(reference answer, answer) for every temperature-0 request both answered."""
    ref = {o.key: o.text or "" for o in reference if o.ok and o.temperature == 0}
    return [(ref[o.key], o.text or "") for o in obs if o.ok and o.key in ref]


def _diverges_early(reference_text: str, text: str) -> bool:
    """Diverges from the reference's answer within its first quarter."""
    return common_prefix(reference_text, text) < 0.25 * max(len(reference_text), 1)


def _greedy_counts(reference: list[Observation], obs: list[Observation]) -> tuple[int, int]:
    """(answers diverging early from the reference's, greedy answers)."""
    pairs = _greedy_pairs(reference, obs)
    return sum(_diverges_early(a, b) for a, b in pairs), len(pairs)


def _varying_repeats(obs: list[Observation]) -> tuple[int, int]:
    """(temperature-0 probes whose repeats diverge early from one another, such probes).
    Numeric noise flips a near-tie now and then, late in an answer; sampling makes repeats
    part ways within their first quarter."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for o in obs:
        if o.ok and o.temperature == 0 and o.case.get("samples", 1) > 1:
            groups[(o.endpoint, o.probe_hash)].append(o.text or "")
    varying = sum(any(_diverges_early(g[0], t) for t in g[1:]) for g in groups.values())
    return varying, len(groups)


def against_trusted(
    reference: list[Observation], provider: list[Observation], trusted: list[Observation]
) -> list[Comparison]:
    """Greedy behaviour against providers the user vouches for (`trusted: true`): they show
    how far honest serving strays from the reference (numeric noise), so the provider's
    early divergence is tested against theirs (Fisher), and how often its temperature-0
    repeats differ is reported beside theirs."""
    if not trusted:
        return []
    (kb, nb), (ka, na) = _greedy_counts(reference, provider), _greedy_counts(reference, trusted)
    out = []
    if nb >= MIN_SAMPLES and na >= MIN_SAMPLES:
        outcome = proportion_test(ka, na, kb, nb)
        result = result_of("rate:greedy_early_divergence@trusted", outcome).model_copy(
            update={"statistic": kb / nb, "honest_range": (0.0, ka / na)}
        )
        out.append(Comparison(result, G.EARLY, Scope.TRUSTED))
    (vb, mb), (va, ma) = _varying_repeats(provider), _varying_repeats(trusted)
    if mb and ma:
        shown = figure(
            "greedy:repeats_vary", vb / mb, vb / mb - va / ma, mb, honest_range=(0.0, va / ma)
        )
        out.append(Comparison(shown, G.REPEATS_VARY_FIGURE, Scope.TRUSTED))
    return out


def repeat_variation(reference: list[Observation], provider: list[Observation]) -> list[Comparison]:
    """Temperature-0 probes sent several times: how often the provider's repeats differ from
    one another, against the reference's (which never do)."""
    (ka, na), (kb, nb) = _varying_repeats(reference), _varying_repeats(provider)
    if na < 2 or nb < 2:
        return []
    return [
        Comparison(
            result_of("rate:greedy_repeats_vary", proportion_test(ka, na, kb, nb)),
            G.REPEATS_VARY,
            Scope.GREEDY,
        )
    ]


@comparators.register("greedy")
class GreedyComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        return [
            *against_trusted(data.reference, data.provider, data.trusted),
            *greedy_agreement(data.reference, data.provider),
            *repeat_variation(data.reference, data.provider),
        ]


STRAYS_AND_VARIES = "sampling_params.strays_and_varies"
register(
    Rule(
        name="sampling_params.repeats_vary",
        metric=G.REPEATS_VARY,
        direction="up",
        when=(Not(NEAR_TOP),),
        kind="sampling_params",
        weight=0.9,
        summary="temperature-0 requests give different answers each time: the request's "
        "sampling parameters are not honoured",
    ),
    Rule(
        name=STRAYS_AND_VARIES,
        metric=G.EARLY,
        scope=Scope.TRUSTED,
        direction="up",
        when=(
            Not(PROMPT_CHANGED),
            Figure(G.REPEATS_VARY_FIGURE, field="effect", above=0.0),
            Not(NEAR_TOP),
        ),
        kind="sampling_params",
        weight=0.9,
        summary="temperature-0 answers stray from the reference far more than trusted "
        "providers' and vary from one request to the next: the temperature is not honoured",
    ),
    Rule(
        name="model_variant.strays_early",
        metric=G.EARLY,
        scope=Scope.TRUSTED,
        direction="up",
        when=(Not(PROMPT_CHANGED),),
        suppressed_by=(STRAYS_AND_VARIES,),
        kind="model_variant",
        weight=0.6,
        summary="temperature-0 answers stray early from the reference's {effect:+.0%} more "
        "often than trusted providers' do: other weights",
    ),
    Rule(
        name="quantization.strays_early",
        metric=G.EARLY,
        scope=Scope.TRUSTED,
        direction="up",
        when=(Not(PROMPT_CHANGED),),
        suppressed_by=(STRAYS_AND_VARIES,),
        kind="quantization",
        weight=0.55,
        summary="temperature-0 answers stray early from the reference's {effect:+.0%} more "
        "often than trusted providers' do: or the same weights, more heavily quantized",
    ),
)
