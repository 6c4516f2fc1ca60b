"""Sampled answers against the sampler that was asked for: a server whose own defaults cut the
distribution (llama.cpp's server samples with top_k 40, top_p 0.95 and min_p 0.05 unless
told otherwise) never draws the rarer tokens honest sampling draws now and then.

Each sampled answer is scored under the reference with its request's sampler
(`auditor.scorers.reference_likelihood.sampler_cuts`): for every cut a server may apply
(`auditor.providers.continuation.SAMPLER_CUTS`), how many of its tokens that cut would have
removed, and how many honest sampling is expected to draw. Too few (`deficit_test`, one-sided)
means a cut. The cuts overlap (a top_k 40 cut also thins what top_k 50 removes), so the family
is summarised by its most significant cut, Bonferroni-corrected over the cuts tested.

`sampler:cut`: statistic, the tokens the named cut removes; effect, observed minus expected
per sampled step (negative: fewer than honest sampling draws). Needs the reference's whole
distribution (the embedded engine); an endpoint reference gives top-k logprobs only, and the
test is then `not_available`.
"""

from __future__ import annotations

from enum import StrEnum

from auditor.comparisons.base import (
    Comparator,
    Comparison,
    ComparisonInput,
    Scope,
    comparators,
    result_of,
)
from auditor.comparisons.observation import Observation, independent_draws
from auditor.comparisons.rules import Rule, register
from auditor.records import TestResult
from auditor.stats.numeric_noise import deficit_test

MIN_EXPECTED = 3.0  # a cut honest sampling would hardly ever hit tells nothing


class SamplerMetric(StrEnum):
    CUT = "sampler_cut"


def sampled(obs: list[Observation]) -> list[Observation]:
    return independent_draws(o for o in obs if o.ok and (o.temperature or 0) > 0 and o.trace)


def sampler_cut(provider: list[Observation]) -> list[Comparison]:
    answers = sampled(provider)
    if not answers:
        return []
    traced = [o for o in answers if (o.trace or {}).get("cuts")]
    if not traced:
        result = TestResult(
            name="sampler:cut", statistic=None, p_value=None, effect=None, n=0,
            status="not_available",
            note="the reference scored no sampled answer over its whole distribution "
            "(an endpoint reference gives top-k logprobs only)",
        )  # fmt: skip
        return [Comparison(result, SamplerMetric.CUT, Scope.SAMPLED)]
    steps = sum(len((o.trace or {}).get("rank") or []) for o in traced)
    totals: dict[str, list[float]] = {}
    for o in traced:
        for cut, (hits, expected, log_none) in (o.trace or {})["cuts"].items():
            total = totals.setdefault(cut, [0.0, 0.0, 0.0])
            total[0] += hits
            total[1] += expected
            total[2] += log_none
    tested = {c: t for c, t in totals.items() if t[1] >= MIN_EXPECTED}
    if not tested:
        return []
    outcomes = {
        c: deficit_test(int(hits), expected, log_none, steps)
        for c, (hits, expected, log_none) in tested.items()
    }
    cut = min(outcomes, key=lambda c: (outcomes[c].p_value, -tested[c][1]))
    outcome = outcomes[cut]
    p = min(1.0, outcome.p_value * len(outcomes))
    hits, expected, _ = tested[cut]
    note = (
        f"a {cut} cut removes {hits:.0f} of the sampled tokens where honest sampling draws "
        f"{expected:.1f} ({len(outcomes)} cuts tested)"
    )
    if tightest := _tightest_unhit(tested):
        note = (
            f"no sampled token that {' or '.join(tightest)} removes, where honest sampling "
            f"draws {max(tested[c][1] for c in tightest):.1f}"
        )
    result = result_of("sampler:cut", outcome).model_copy(update={"p_value": p, "note": note})
    return [Comparison(result, SamplerMetric.CUT, Scope.SAMPLED)]


def _tightest_unhit(tested: dict[str, list[float]]) -> list[str]:
    """Per kind of cut, the tightest that removed none of the sampled tokens (the smallest
    top_k, the largest min_p, the smallest top_p), where honest sampling expects some."""
    out = []
    for kind, tighter in (("top_k", min), ("min_p", max), ("top_p", min)):
        unhit = {
            float(c.split("=")[1]): c
            for c, (hits, expected, _) in tested.items()
            if c.startswith(kind) and hits == 0 and expected >= MIN_EXPECTED
        }
        if unhit:
            out.append(unhit[tighter(unhit)])
    return out


@comparators.register("sampler")
class SamplerComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        return sampler_cut(data.provider)


register(
    Rule(
        name="sampling_params.sampler_cut",
        metric=SamplerMetric.CUT,
        direction="down",
        kind="sampling_params",
        weight=0.9,
        summary="{note}: the host's sampler cuts the distribution, whatever the request asks",
    ),
)
