"""Diagnosis rules as data: which test moving, in which probes and which way, names what cause.

A rule reads the tests that rejected (after the verdict's multiple-testing correction, see
`auditor.judging.verdict`) and the figures beside them. Each comparison module declares its
rules next to the metrics it emits and registers them in `rules`, the way a third party
registers its own (entry point group `auditor.rules`)::

    from auditor.comparisons.rules import Moved, Rule, rules

    rules.add("other.my_signal", Rule(
        name="other.my_signal", metric=MyMetric.SIGNAL, direction="up", kind="other",
        weight=0.8, summary="my signal moved ({effect:+.0%})",
        suppressed_by=("max_tokens",),
    ))

Fields:

- `metric` (one or several), `scope` (None: any) and `direction` (`up`, `down`, `any`: the
  sign of the comparison's `moved`) pick the rejected test the rule reads; with several
  matching, the strongest.
- `when`: conditions that must also hold: `Moved(...)` (some other test rejected),
  `Figure(...)` (a figure or test statistic above or below a threshold), `Not(...)`,
  `AllOf(...)`.
- `kind` and `weight`: the diagnosis it names (a registered `Kind`: the report contract's, or
  one the module registers in `kinds`), with confidence `weight * (1 - adjusted p)`
  (at most 0.99 of the weight).
- `summary`: a format string over the test read (`{effect}`, `{statistic}`, `{moved}`,
  `{name}`, `{note}`, `{p}`) and the round's figures (`{figures[<metric>]}`), or a callable.
- `suppressed_by`: rule names or diagnosis kinds this rule yields to: it fires only if none of
  them fires. The suppression graph must be acyclic; the evaluator
  (`auditor.judging.diagnose`) is independent of registration order.
- `fallback`: fires only when no other rule does (something moved that no rule explains).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from auditor.comparisons.base import Comparison
from auditor.plugins import Registry

Direction = Literal["up", "down", "any"]


@dataclass(frozen=True)
class Kind:
    """A diagnosis kind: what the report's `kind` names. `critical`: the provider serves
    something other than the model (its deviant findings are critical, others warnings)."""

    name: str
    critical: bool
    meaning: str


kinds: Registry[Kind] = Registry("diagnosis kind", group="auditor.rules")
for _name, _critical, _meaning in (
    ("sampling_params", False, "the request's sampling parameters are not honoured"),
    ("context_truncation", True, "the context is cut below the model's window"),
    ("chat_template", True, "another chat template, or none, is applied"),
    ("system_prompt", True, "the system message is dropped, replaced or added to"),
    ("max_tokens", False, "answers are cut below the requested max_tokens"),
    ("quantization", True, "the same weights, more heavily quantized"),
    ("model_variant", True, "other weights: a fine-tune or another model"),
    ("tool_calling", False, "tool calls are not parsed, or mangled"),
    ("other", False, "something else differs from the reference"),
):
    kinds.add(_name, Kind(_name, _critical, _meaning))


@dataclass(frozen=True)
class Rejection:
    """A test that rejected, with its adjusted p-value (what rules read)."""

    comparison: Comparison
    adjusted_p: float

    @property
    def effect(self) -> float:
        return self.comparison.result.effect or 0.0

    @property
    def strength(self) -> float:
        return max(0.0, min(0.99, 1.0 - self.adjusted_p))


class Readings:
    """One provider's rejected tests and all its comparisons (figures included), as the
    rules' conditions query them."""

    def __init__(self, rejected: list[Rejection], comparisons: list[Comparison]) -> None:
        self.rejected = rejected
        self.comparisons = comparisons
        self.figures: dict[str, float] = {}
        for c in comparisons:
            if c.result.p_value is None and c.result.statistic is not None:
                self.figures.setdefault(c.metric, float(c.result.statistic))

    def moved(
        self, metrics: tuple[str, ...], scope: str | None, direction: Direction
    ) -> list[Rejection]:
        return [
            r
            for r in self.rejected
            if r.comparison.metric in metrics
            and (scope is None or r.comparison.scope == scope)
            and _goes(r.comparison.moved, direction)
        ]

    def value(self, metric: str, scope: str | None, field: str) -> float | None:
        """A comparison's statistic, effect or (uncorrected) p-value, None when there is
        none."""
        for c in self.comparisons:
            if c.metric == metric and (scope is None or c.scope == scope):
                value = {
                    "statistic": c.result.statistic,
                    "effect": c.result.effect,
                    "p_value": c.result.p_value,
                }[field]
                if value is not None:
                    return float(value)
        return None


def _goes(moved: float, direction: Direction) -> bool:
    return direction == "any" or (moved > 0 if direction == "up" else moved < 0)


class Condition(Protocol):
    def holds(self, readings: Readings) -> bool: ...


@dataclass(frozen=True)
class Moved:
    """Some test of `metric` (in `scope`, going `direction`) rejected."""

    metric: str | tuple[str, ...]
    scope: str | None = None
    direction: Direction = "any"

    def holds(self, readings: Readings) -> bool:
        return bool(readings.moved(_tuple(self.metric), self.scope, self.direction))


@dataclass(frozen=True)
class Figure:
    """A comparison's `field` (statistic, effect, or its uncorrected p-value: a hint too weak
    to reject by itself) is at least `at_least`, above `above` and below `below`;
    `if_missing` when the round has no such comparison."""

    metric: str
    at_least: float = -math.inf
    above: float = -math.inf
    below: float = math.inf
    scope: str | None = None
    field: Literal["statistic", "effect", "p_value"] = "statistic"
    if_missing: bool = False

    def holds(self, readings: Readings) -> bool:
        value = readings.value(self.metric, self.scope, self.field)
        if value is None:
            return self.if_missing
        return self.at_least <= value < self.below and value > self.above


@dataclass(frozen=True)
class Not:
    condition: Condition

    def holds(self, readings: Readings) -> bool:
        return not self.condition.holds(readings)


@dataclass(frozen=True)
class AllOf:
    conditions: tuple[Condition, ...]

    def holds(self, readings: Readings) -> bool:
        return all(c.holds(readings) for c in self.conditions)


Summary = str | Callable[[Rejection, Readings], str]


@dataclass(frozen=True)
class Rule:
    """One reading of a rejected test (see the module docstring)."""

    name: str
    metric: str | tuple[str, ...]
    kind: str
    weight: float
    summary: Summary
    scope: str | None = None
    direction: Direction = "any"
    when: tuple[Condition, ...] = ()
    suppressed_by: tuple[str, ...] = ()
    fallback: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.weight <= 1:
            raise ValueError(f"rule {self.name}: weight must be in (0, 1]")

    def match(self, readings: Readings) -> Rejection | None:
        """The strongest rejected test this rule reads, if its conditions hold."""
        metrics = _tuple(self.metric) if not self.fallback else None
        found = (
            readings.rejected
            if metrics is None
            else readings.moved(metrics, self.scope, self.direction)
        )
        if not found or not all(c.holds(readings) for c in self.when):
            return None
        return min(found, key=lambda r: r.adjusted_p)

    def describe(self, rejection: Rejection, readings: Readings) -> str:
        if callable(self.summary):
            return self.summary(rejection, readings)
        result = rejection.comparison.result
        return self.summary.format_map(
            {
                "effect": rejection.effect,
                "statistic": result.statistic if result.statistic is not None else math.nan,
                "moved": rejection.comparison.moved,
                "name": result.name,
                "note": result.note or "",
                "p": rejection.adjusted_p,
                "figures": _Figures(readings.figures),
            }
        )


class _Figures(dict[str, float]):
    def __missing__(self, key: str) -> float:
        return math.nan


def _tuple(metric: str | tuple[str, ...]) -> tuple[str, ...]:
    return (metric,) if isinstance(metric, str) else metric


rules: Registry[Rule] = Registry("diagnosis rule", group="auditor.rules")

#: Tests set apart from the verdict's Benjamini-Hochberg, by test name, each with its own
#: share of the level (`auditor.judging.verdict`): a suite's main question, which its many
#: other tests should not dilute. Registered beside the comparison that emits the test.
alpha_shares: Registry[float] = Registry("alpha share", group="auditor.rules")


def register(*declared: Rule) -> None:
    """Register a module's rules under their own names."""
    for rule in declared:
        rules.add(rule.name, rule)
