"""Tool calling, provider against reference: the decision to call, and the calls' arguments.

On a greedy (temperature 0) probe that offers tools, the reference's answer says whether the
model calls a tool there. Taking it as the truth:

- `tool_calls:decision_f1` (a figure): F1 of the provider's call / no-call decisions, the
  reference's calls being the positives (1 when neither ever calls);
- `violations:tool_decision`: probes where the provider decides otherwise than the
  reference, tested against the tolerated quirk rate (exact binomial, one-sided), as the
  other violations are: with the same weights, only a near-tie broken by numeric noise flips
  a decision, rarely; a host that does not parse calls flips every one;
- `violations:tool_args_broken`: probes both answered with a call, where the reference's
  arguments are a JSON object (`tool_args_json`) or validate (`tool_args_valid`) and the
  provider's do not; same test (the reference's own arguments are often wrong for a small
  model, so being a JSON object is the bar a tool parser must keep);
- `rate:tool_args_valid`: the share of the provider's calls whose arguments validate against
  the reference's share (Fisher's exact test), over all tool-calling answers, greedy or not.

Effects: the F1 minus 1; observed minus tolerated rate; difference of rates.
"""

from __future__ import annotations

from enum import StrEnum

from auditor.comparisons.base import (
    MIN_SAMPLES,
    TOLERATED_RATE,
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
from auditor.comparisons.rules import Readings, Rejection, Rule, register
from auditor.stats import excess_rate_test, proportion_test


class ToolMetric(StrEnum):
    DECISION_F1 = "tool_decision_f1"  # F1 of call / no-call decisions (figure)
    DECISION_DIFFERS = "tool_decision_differs"  # probes decided otherwise than the reference
    ARGS_BROKEN = "tool_args_broken"  # arguments short of a bar the reference's meet
    ARGS_VALID = "tool_args_valid"  # share of calls whose arguments validate


T = ToolMetric
SCOPE = Scope.TOOLS


def offers_tools(o: Observation) -> bool:
    params = o.case.get("params") or {}
    return bool(params.get("tools")) and params.get("tool_choice") != "none"


def called(o: Observation) -> bool:
    return bool(o.tool_calls)


def decision_f1(pairs: list[tuple[bool, bool]]) -> float:
    """F1 of (reference called, provider called) pairs, the reference's calls the truth;
    1.0 when there is no call on either side (every decision agrees)."""
    tp = sum(r and p for r, p in pairs)
    fp = sum(p and not r for r, p in pairs)
    fn = sum(r and not p for r, p in pairs)
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def _worse_arguments(reference: Observation, provider: Observation) -> bool:
    """The provider's arguments fall short of a bar the reference's meet (JSON, valid)."""
    return any(
        reference.scores.get(m) == 1 and provider.scores.get(m) != 1
        for m in ("tool_args_json", "tool_args_valid")
    )


def _greedy_pairs(
    reference: list[Observation], provider: list[Observation]
) -> list[tuple[Observation, Observation]]:
    """(reference's answer, provider's answer) of every greedy tool probe both answered."""
    ref = {o.key: o for o in reference if o.ok and o.temperature == 0 and offers_tools(o)}
    return [(ref[o.key], o) for o in provider if o.ok and o.key in ref]


def tool_use(reference: list[Observation], provider: list[Observation]) -> list[Comparison]:
    """The tool-calling comparisons of the module docstring (none without tool probes)."""
    out: list[Comparison] = []
    pairs = _greedy_pairs(reference, provider)
    if len(pairs) >= MIN_SAMPLES:
        decisions = [(called(r), called(p)) for r, p in pairs]
        f1 = decision_f1(decisions)
        n = len(decisions)
        out.append(
            Comparison(figure("tool_calls:decision_f1", f1, f1 - 1, n), T.DECISION_F1, SCOPE)
        )
        differ = sum(r != p for r, p in decisions)
        outcome = excess_rate_test(differ, n, TOLERATED_RATE)
        out.append(
            Comparison(result_of("violations:tool_decision", outcome), T.DECISION_DIFFERS, SCOPE)
        )
    both = [(r, p) for r, p in pairs if r.scores.get("tool_args_json") == 1 and called(p)]
    if both:
        broken = sum(_worse_arguments(r, p) for r, p in both)
        outcome = excess_rate_test(broken, len(both), TOLERATED_RATE)
        out.append(
            Comparison(result_of("violations:tool_args_broken", outcome), T.ARGS_BROKEN, SCOPE)
        )
    a, b = values_of(reference, "tool_args_valid"), values_of(provider, "tool_args_valid")
    if len(a) >= MIN_SAMPLES and len(b) >= MIN_SAMPLES:
        outcome = proportion_test(int(sum(a)), len(a), int(sum(b)), len(b))
        out.append(Comparison(result_of("rate:tool_args_valid", outcome), T.ARGS_VALID, SCOPE))
    return out


@comparators.register("tools")
class ToolComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        return tool_use(data.reference, data.provider)


def _decisions_summary(_: Rejection, readings: Readings) -> str:
    f1 = readings.figures.get(T.DECISION_F1)
    against = f" (F1 {f1:.2f} against the reference's decisions)" if f1 is not None else ""
    return (
        f"calls tools where the reference does not, or answers in text where it calls"
        f"{against}: the model's tool calls are not parsed as it writes them"
    )


register(
    Rule(
        name="tool_calling.decisions_differ",
        metric=T.DECISION_DIFFERS,
        direction="up",
        kind="tool_calling",
        weight=0.95,
        summary=_decisions_summary,
    ),
    Rule(
        name="tool_calling.arguments_broken",
        metric=T.ARGS_BROKEN,
        direction="up",
        kind="tool_calling",
        weight=0.9,
        summary="tool-call arguments fall short of the reference's (not JSON, or not valid "
        "for the tool's schema) on the same probes: the calls are mangled on the way out",
        # Broken only where streamed: the streaming parser is the cause, and says so.
        suppressed_by=("tool_calling.streamed_calls_differ",),
    ),
    Rule(
        name="tool_calling.fewer_valid_arguments",
        metric=T.ARGS_VALID,
        direction="down",
        kind="tool_calling",
        weight=0.8,
        summary="fewer tool calls have arguments valid for the tool's schema ({effect:+.0%})",
        suppressed_by=("tool_calling.streamed_calls_differ",),
    ),
)
