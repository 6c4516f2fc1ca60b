"""Streaming parity: one provider's streamed answers against its own plain ones.

The `stream_twins` cases send one greedy request plain (at least twice) and streamed
(`metadata.stream_pair`). No reference is needed: an honest host streams what it answers
plain, so its streamed answer differs from its first plain one no more often than its second
plain answer does (numeric noise makes both happen, alike). Per pair of twins with answers
on both sides:

- `stream:answers_differ`: the streamed answer's text or finish reason differs from the
  first plain answer, against the same for the second plain answer (Fisher, one-sided:
  streamed differs more often);
- `stream:tool_calls_differ`: the same for the tool calls once the streamed deltas are
  assembled (name and parsed arguments, in order), on twins whose plain answers call;
- `stream:usage_missing`: streamed answers without usage where the plain ones have it,
  against the tolerated quirk rate (exact binomial).

Effects: differences of rates; observed minus tolerated rate.
"""

from __future__ import annotations

import json
from collections import defaultdict
from enum import StrEnum
from typing import Any

from auditor.comparisons.base import (
    MIN_SAMPLES,
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
from auditor.stats import excess_rate_test, proportion_test


class StreamMetric(StrEnum):
    ANSWERS_DIFFER = "stream_answers_differ"
    TOOL_CALLS_DIFFER = "stream_tool_calls_differ"
    USAGE_MISSING = "stream_usage_missing"


S = StreamMetric


def calls_of(o: Observation) -> list[tuple[str, Any]]:
    """The tool calls as compared: each call's name and its arguments parsed (as text when
    they are not JSON)."""
    out = []
    for call in o.tool_calls or []:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError:
            parsed = arguments
        out.append((str(function.get("name")), json.dumps(parsed, sort_keys=True)))
    return out


def twins(provider: list[Observation]) -> list[tuple[list[Observation], list[Observation]]]:
    """(plain answers, streamed answers) of each pair of twins answered on both sides, the
    plain ones at least twice."""
    pairs: dict[str, tuple[list[Observation], list[Observation]]] = defaultdict(lambda: ([], []))
    for o in provider:
        pair = (o.case.get("metadata") or {}).get("stream_pair")
        if pair is not None and o.ok:
            pairs[str(pair)][1 if o.case.get("stream") else 0].append(o)
    return [(sorted(p, key=lambda o: o.sample_index), s) for p, s in pairs.values()
            if len(p) >= 2 and s]  # fmt: skip


def _differ_test(name: str, metric: str, units: list[tuple[bool, bool]]) -> Comparison | None:
    """`units`: (second plain answer differs, streamed answer differs), each from the first."""
    if len(units) < MIN_SAMPLES:
        return None
    plain = sum(p for p, _ in units)
    streamed = sum(s for _, s in units)
    outcome = proportion_test(plain, len(units), streamed, len(units), greater=True)
    return Comparison(result_of(name, outcome), metric, Scope.ALL)


def streaming_parity(provider: list[Observation]) -> list[Comparison]:
    """The comparisons of the module docstring (none without twins)."""
    found = twins(provider)
    if not found:
        return []

    def answer(o: Observation) -> tuple[str | None, str | None]:
        return (o.text, o.finish_reason)

    text_units = [(answer(p[1]) != answer(p[0]), answer(st) != answer(p[0]))
                  for p, streamed in found for st in streamed]  # fmt: skip
    call_units = [(calls_of(p[1]) != calls_of(p[0]), calls_of(st) != calls_of(p[0]))
                  for p, streamed in found if calls_of(p[0]) for st in streamed]  # fmt: skip
    out = [
        _differ_test("stream:answers_differ", S.ANSWERS_DIFFER, text_units),
        _differ_test("stream:tool_calls_differ", S.TOOL_CALLS_DIFFER, call_units),
    ]
    with_usage = [st for p, streamed in found if p[0].prompt_tokens is not None for st in streamed]
    if with_usage:
        missing = sum(st.prompt_tokens is None for st in with_usage)
        outcome = excess_rate_test(missing, len(with_usage), TOLERATED_RATE)
        out.append(
            Comparison(result_of("stream:usage_missing", outcome), S.USAGE_MISSING, Scope.ALL)
        )
    return [c for c in out if c is not None]


@comparators.register("streaming")
class StreamingComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        return streaming_parity(data.provider)


register(
    Rule(
        name="tool_calling.streamed_calls_differ",
        metric=S.TOOL_CALLS_DIFFER,
        direction="up",
        kind="tool_calling",
        weight=0.9,
        summary="streamed tool calls, once assembled, differ from the same requests' "
        "plain ones ({effect:+.0%} more often than its own plain repeats differ): the "
        "streaming tool parser mangles them",
    ),
    Rule(
        name="other.streamed_answers_differ",
        metric=S.ANSWERS_DIFFER,
        direction="up",
        kind="other",
        weight=0.8,
        summary="streamed answers differ from the same requests' plain ones ({effect:+.0%} "
        "more often than its own plain repeats differ)",
        suppressed_by=("tool_calling.streamed_calls_differ",),
    ),
    Rule(
        name="other.streamed_usage_missing",
        metric=S.USAGE_MISSING,
        direction="up",
        kind="other",
        weight=0.7,
        summary="streamed answers carry no usage (stream_options.include_usage is ignored)",
    ),
)
