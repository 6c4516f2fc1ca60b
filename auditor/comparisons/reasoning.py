"""Reasoning, provider against reference: returned apart from the answer, never leaked into
it, an answer after it, as long as the reference's, and longer at a higher effort.

Read from the `reasoning` scorer's metrics (`auditor.scorers.reasoning`). Nothing is compared
unless one side reasons (returns reasoning, or leaves it in its answers), so a model that
does not reason gets no test at all:

- `violations:reasoning_leak`: the provider's answers holding reasoning markers, where the
  reference's never do, against the tolerated quirk rate (exact binomial, one-sided): a
  server's reasoning parser leaves none, whatever the sampling; `rate:reasoning_leak`
  (Fisher, one-sided) where the reference itself leaks some.
- `rate:answer_missing`: answers with reasoning but no answer after it, against the
  reference's rate on the same budgets (Fisher, one-sided: a sampled reasoning pass may run
  out of budget on an honest host too, as it does on the reference).
- `rate:reasoning_returned`: on probes where the reference returns reasoning, the share of
  the provider's answers that return it too (Fisher).
- `shift:reasoning_chars`: reasoning length, in characters, at the same effort levels
  (Mann-Whitney on every answer that returned reasoning).
- `effort:reasoning_growth`: how much longer the reasoning grows from the lowest effort level
  a probe asks for to the highest: each top-level answer's log length less the mean log
  length of the same side's lowest-level answers to the same prompt, provider against
  reference (Mann-Whitney, one-sided: the provider's grows less). A host that drops the
  effort parameter reasons alike at every level.

Effects: observed minus tolerated rate; differences of rates; Cliff's delta.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from enum import StrEnum

from auditor.comparisons.base import (
    MIN_SAMPLES,
    TOLERATED_RATE,
    Comparator,
    Comparison,
    ComparisonInput,
    Scope,
    comparators,
    result_of,
    values_of,
)
from auditor.comparisons.observation import Observation
from auditor.comparisons.rules import Kind, Rule, kinds, register
from auditor.stats import excess_rate_test, mean_shift_test, proportion_test


class ReasoningMetric(StrEnum):
    LEAK = "reasoning_leak"
    ANSWER_MISSING = "answer_missing"
    RETURNED = "reasoning_returned"
    CHARS = "reasoning_chars"
    EFFORT_GROWTH = "reasoning_effort_growth"


R = ReasoningMetric
SCOPE = Scope.ALL


def reasons(observations: list[Observation]) -> bool:
    """Whether any answer returned reasoning or left it in the answer."""
    return any(o.scores.get(R.RETURNED) == 1 or o.scores.get(R.LEAK) == 1 for o in observations)


def _rate(
    reference: list[Observation], provider: list[Observation], metric: str, *, greater: bool
) -> Comparison | None:
    a, b = values_of(reference, metric), values_of(provider, metric)
    if len(a) < MIN_SAMPLES or len(b) < MIN_SAMPLES:
        return None
    outcome = proportion_test(int(sum(a)), len(a), int(sum(b)), len(b), greater=greater)
    return Comparison(result_of(f"rate:{metric}", outcome), metric, SCOPE)


def leaks(reference: list[Observation], provider: list[Observation]) -> Comparison | None:
    a = values_of(reference, R.LEAK)
    if sum(a):
        return _rate(reference, provider, R.LEAK, greater=True)
    b = values_of(provider, R.LEAK)
    if len(b) < MIN_SAMPLES:
        return None
    outcome = excess_rate_test(int(sum(b)), len(b), TOLERATED_RATE)
    return Comparison(result_of(f"violations:{R.LEAK}", outcome), R.LEAK, SCOPE)


def returned(reference: list[Observation], provider: list[Observation]) -> Comparison | None:
    """On the probes where the reference returns reasoning."""
    probes = {o.probe_hash for o in reference if o.scores.get(R.RETURNED) == 1}
    return _rate(
        [o for o in reference if o.probe_hash in probes],
        [o for o in provider if o.probe_hash in probes],
        R.RETURNED,
        greater=False,
    )


def _log_length(o: Observation) -> float | None:
    chars = o.scores.get(R.CHARS)
    return None if chars is None else math.log1p(chars)


def effort_growth(observations: list[Observation]) -> list[float]:
    """Each highest-effort answer's log reasoning length less the mean of the lowest-effort
    answers to the same prompt; the levels are ranked as the model profile lists them
    (`metadata.effort_rank`, set when the case is sent)."""
    by_prompt: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for o in observations:
        rank = (o.case.get("metadata") or {}).get("effort_rank")
        length = _log_length(o)
        if rank is None or length is None:
            continue
        prompt = json.dumps(o.case.get("messages"), sort_keys=True)
        by_prompt[prompt][int(rank)].append(length)
    growth: list[float] = []
    for ranks in by_prompt.values():
        if len(ranks) < 2:
            continue
        low, high = ranks[min(ranks)], ranks[max(ranks)]
        base = sum(low) / len(low)
        growth += [v - base for v in high]
    return growth


def reasoning_comparisons(
    reference: list[Observation], provider: list[Observation]
) -> list[Comparison]:
    """The comparisons of the module docstring; none when neither side reasons."""
    if not (reasons(reference) or reasons(provider)):
        return []
    out = [
        leaks(reference, provider),
        _rate(reference, provider, R.ANSWER_MISSING, greater=True),
        returned(reference, provider),
    ]
    a, b = values_of(reference, R.CHARS), values_of(provider, R.CHARS)
    if len(a) >= MIN_SAMPLES and len(b) >= MIN_SAMPLES:
        out.append(Comparison(result_of(f"shift:{R.CHARS}", mean_shift_test(a, b)), R.CHARS, SCOPE))
    ga, gb = effort_growth(reference), effort_growth(provider)
    if len(ga) >= MIN_SAMPLES and len(gb) >= MIN_SAMPLES:
        outcome = mean_shift_test(ga, gb)
        out.append(
            Comparison(result_of("effort:reasoning_growth", outcome), R.EFFORT_GROWTH, SCOPE)
        )
    return [c for c in out if c is not None]


@comparators.register("reasoning")
class ReasoningComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        return reasoning_comparisons(data.reference, data.provider)


kinds.add(
    "reasoning",
    Kind(
        "reasoning",
        False,
        "the reasoning is not served as the reference serves it: leaked into the answer, "
        "not returned, the answer missing after it, or its effort or length changed",
    ),
)
register(
    Rule(
        name="reasoning.leaked",
        metric=R.LEAK,
        direction="up",
        kind="reasoning",
        weight=0.95,
        summary="leaves the model's reasoning inside the answer ({effect:+.0%} of answers "
        "over the reference): the host's reasoning parser is off or does not match the model",
    ),
    Rule(
        name="reasoning.answer_missing",
        metric=R.ANSWER_MISSING,
        direction="up",
        kind="reasoning",
        weight=0.9,
        summary="returns reasoning without an answer after it ({effect:+.0%} of answers over "
        "the reference): the answer is cut, or the budget spent thinking",
    ),
    Rule(
        name="reasoning.not_returned",
        metric=R.RETURNED,
        direction="down",
        kind="reasoning",
        weight=0.85,
        summary="does not return the reasoning where the reference does ({effect:+.0%})",
        suppressed_by=("reasoning.leaked",),
    ),
    Rule(
        name="reasoning.effort_ignored",
        metric=R.EFFORT_GROWTH,
        direction="down",
        kind="reasoning",
        weight=0.85,
        summary="reasons no longer at a higher effort than at a lower one, unlike the "
        "reference: the effort level is not honoured",
    ),
    Rule(
        name="reasoning.length_shift",
        metric=R.CHARS,
        direction="any",
        kind="reasoning",
        weight=0.6,
        summary="reasons at another length than the reference (Cliff's delta {effect:+.2f})",
        suppressed_by=("reasoning.effort_ignored", "reasoning.answer_missing"),
    ),
)
