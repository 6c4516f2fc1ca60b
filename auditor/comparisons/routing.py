"""Routers: answers served by another upstream than the request pinned.

- `violations:upstream_off_pin`: the provider's answers whose upstream is not one the
  request pinned (`auditor.scorers.router`), against the tolerated quirk rate (exact
  binomial, one-sided): a router that honours the pin never serves from elsewhere. Its note
  names the upstreams that served off the pin. Only for providers whose requests pin one.

Effect: observed minus tolerated rate.
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum

from auditor.comparisons.base import (
    TOLERATED_RATE,
    Comparator,
    Comparison,
    ComparisonInput,
    Scope,
    comparators,
    result_of,
)
from auditor.comparisons.observation import Observation
from auditor.comparisons.rules import Rule, register
from auditor.stats import excess_rate_test


class RoutingMetric(StrEnum):
    OFF_PIN = "upstream_off_pin"


def off_pin(provider: list[Observation]) -> list[Comparison]:
    judged = [o for o in provider if o.scores.get(RoutingMetric.OFF_PIN) is not None]
    if not judged:
        return []
    off = [o for o in judged if o.scores[RoutingMetric.OFF_PIN] == 1]
    outcome = excess_rate_test(len(off), len(judged), TOLERATED_RATE)
    served = Counter(o.upstream or "?" for o in off)
    note = ", ".join(f"{name} ({n} of {len(judged)})" for name, n in served.most_common())
    result = result_of(f"violations:{RoutingMetric.OFF_PIN}", outcome)
    result = result.model_copy(update={"note": f"served by {note}" if off else None})
    return [Comparison(result, RoutingMetric.OFF_PIN, Scope.ALL)]


@comparators.register("routing")
class RoutingComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        return off_pin(data.provider)


register(
    Rule(
        name="other.upstream_off_pin",
        metric=RoutingMetric.OFF_PIN,
        direction="up",
        kind="other",
        weight=0.9,
        summary="answers served by another upstream than the one pinned: {note}; the router "
        "falls back though fallbacks are off",
    ),
)
