"""Perturbed pairs: does the provider solve familiar problems better than their twins?

A `perturbed_arithmetic` group holds an original word problem (as a benchmark would hold it)
and its perturbed twins (the same problem with other numbers). A model tuned on benchmark
items, or served with their answers at hand, solves the original far better than the twins;
the released weights show no such preference beyond what the problems' own difficulty gives,
and the reference measures exactly that difficulty on the same cases. Pure functions over
observations; no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum

from auditor.comparisons.base import (
    MIN_SAMPLES,
    Comparator,
    Comparison,
    ComparisonInput,
    Scope,
    comparators,
    figure,
)
from auditor.comparisons.observation import Observation
from auditor.comparisons.rules import Rule, register
from auditor.records import TestResult
from auditor.stats import label_permutation_floor, label_permutation_test


class PerturbationMetric(StrEnum):
    GAP = "perturbation_gap"  # originals minus twins, beyond the reference's own gap


NAME = "gap:perturbation"
METRIC = PerturbationMetric.GAP
LEVEL = 0.05  # a design that cannot reach a p-value below this is reported as a figure
ROLES = ("original", "perturbed")


@dataclass(frozen=True)
class _Case:
    group: str
    role: str
    rate: float  # share of the endpoint's scored samples of the case that passed


def perturbation_gap(reference: list[Observation], provider: list[Observation]) -> list[Comparison]:
    """The provider's accuracy gap between original problems and their perturbed twins,
    against the reference's gap on the same cases (`gap:perturbation`, metric
    `perturbation_gap`).

    The unit is the case (a problem, answered once at temperature 0: the reference is then
    deterministic). For every case both endpoints answered and scored (`expect_pass`), let d
    be the provider's pass rate minus the reference's. The reference's own gap absorbs how
    much easier the originals are for the released weights; what is left, the
    difference-in-differences (provider's gap minus reference's gap), is the pooled mean of d
    over originals minus that over twins.

    Test: the exact within-group label permutation test (`label_permutation_test`). Null: the
    provider's departures from the reference do not depend on which member of a group is the
    original, i.e. the original/perturbed labels are exchangeable within each group, as they
    are for weights that never saw the originals (an honest provider's numeric noise flips a
    near-tie wherever it lies). Statistic of the test: the sum of d over the originals;
    alternative: larger than relabellings give (one-sided: only a preference for the originals
    is evidence of tuning). Reported: statistic = the provider's gap (pass rate on originals
    minus pass rate on twins), effect = that gap minus the reference's, n = cases.

    With too few groups to reach p < 0.05 even if every original stood out (3 pairs: at best
    1/8), or fewer than `MIN_SAMPLES` cases, the gap is a figure, without a p-value.
    """
    ref_cases = _cases(reference)
    prov_cases = _cases(provider)
    both = sorted(ref_cases.keys() & prov_cases.keys())
    if not both:
        return []
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: {r: [] for r in ROLES})
    ref_rates: dict[str, list[float]] = {r: [] for r in ROLES}
    prov_rates: dict[str, list[float]] = {r: [] for r in ROLES}
    for key in both:
        ref, prov = ref_cases[key], prov_cases[key]
        groups[prov.group][prov.role].append(prov.rate - ref.rate)
    kept = {g: roles for g, roles in groups.items() if roles["original"] and roles["perturbed"]}
    for key in both:
        ref, prov = ref_cases[key], prov_cases[key]
        if prov.group in kept:
            ref_rates[prov.role].append(ref.rate)
            prov_rates[prov.role].append(prov.rate)
    if not kept:
        return []
    n = sum(len(v) for v in prov_rates.values())
    gap_provider = _gap(prov_rates)
    gap_reference = _gap(ref_rates)
    effect = gap_provider - gap_reference
    sizes = [(len(r["original"]), len(r["perturbed"])) for r in kept.values()]
    floor = label_permutation_floor(sizes)
    if floor >= LEVEL or n < MIN_SAMPLES:
        note = (
            f"{len(kept)} groups of perturbed pairs ({n} cases): at best p = {floor:.2g}, too "
            f"few to test; the reference's gap is {gap_reference:+.2f}"
        )
        result = figure(NAME, gap_provider, effect, n, note=note)
        return [Comparison(result, METRIC, Scope.ALL)]
    outcome = label_permutation_test(
        [(roles["original"], roles["perturbed"]) for roles in kept.values()]
    )
    result = TestResult(
        name=NAME,
        statistic=gap_provider,
        p_value=outcome.p_value,
        effect=effect,
        n=n,
        note=f"reference's gap {gap_reference:+.2f} on the same {n} cases ({len(kept)} groups)",
    )
    return [Comparison(result, METRIC, Scope.ALL)]


def _cases(observations: list[Observation]) -> dict[str, _Case]:
    """Probe hash -> the case's group, role and pass rate, for the scored samples of cases
    that belong to a group of perturbed pairs. Failed requests are not behaviour: left out."""
    passed: dict[str, list[float]] = defaultdict(list)
    meta: dict[str, tuple[str, str]] = {}
    for o in observations:
        role = (o.case.get("metadata") or {}).get("role")
        group = o.case.get("group")
        value = o.scores.get("expect_pass")
        if role not in ROLES or not group or not o.ok or value is None:
            continue
        meta[o.probe_hash] = (str(group), role)
        passed[o.probe_hash].append(float(value))
    return {
        h: _Case(group=meta[h][0], role=meta[h][1], rate=sum(v) / len(v)) for h, v in passed.items()
    }


def _gap(rates: dict[str, list[float]]) -> float:
    originals, twins = rates["original"], rates["perturbed"]
    return sum(originals) / len(originals) - sum(twins) / len(twins)


@comparators.register("perturbation")
class PerturbationComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        return perturbation_gap(data.reference, data.provider)


register(
    Rule(
        name="model_variant.benchmark_tuned",
        metric=METRIC,
        direction="up",
        kind="model_variant",
        weight=0.85,
        summary="solves the original problems but not their perturbed twins (gap "
        "{statistic:+.0%}, {effect:+.0%} beyond the reference's): a benchmark-tuned variant",
    ),
)
