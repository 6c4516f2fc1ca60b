"""Greedy (temperature-0) answers: agreement with the reference, repeats, trusted providers."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from auditor.comparisons.base import MIN_SAMPLES, Comparison, figure, result_of
from auditor.observations import Observation
from auditor.stats import proportion_test


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
        Comparison(figure("greedy:exact_match", exact, exact - 1, n), "greedy_exact", "greedy"),
        Comparison(figure("greedy:early_divergence", early, early, n), "greedy_early", "greedy"),
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
        out.append(Comparison(result, "greedy_early", "trusted"))
    (vb, mb), (va, ma) = _varying_repeats(provider), _varying_repeats(trusted)
    if mb and ma:
        shown = figure(
            "greedy:repeats_vary", vb / mb, vb / mb - va / ma, mb, honest_range=(0.0, va / ma)
        )
        out.append(Comparison(shown, "repeats_vary_figure", "trusted"))
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
            "repeats_vary",
            "greedy",
        )
    ]
