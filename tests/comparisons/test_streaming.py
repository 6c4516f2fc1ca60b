"""Streaming parity on the params suite's twins as written: a provider whose streamed
answers (or assembled tool calls, or usage) differ from its plain ones is found and named;
an honest one, even a noisy one whose repeats differ, is not."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from auditor.comparisons.base import Comparison
from auditor.comparisons.observation import Observation
from auditor.comparisons.streaming import StreamMetric, calls_of, streaming_parity
from auditor.comparisons.tools import SCOPE, ToolMetric
from auditor.judging.diagnose import diagnose
from auditor.judging.verdict import rejected
from auditor.probes import load_suite
from auditor.records import ProbeCase, TestResult

SUITE = load_suite("params", Path(__file__).parents[2] / "probes")
TWINS = [c for c in SUITE.cases if "stream_pair" in c.metadata]


def call(name: str, arguments: str) -> dict[str, Any]:
    return {"id": "c0", "type": "function", "function": {"name": name, "arguments": arguments}}


def answers(serve: Any, seed: int = 0) -> list[Observation]:
    rng = random.Random(seed)
    out = []
    for case in TWINS:
        for k in range(case.samples):
            text, calls, usage = serve(case, rng)
            out.append(
                Observation(
                    model="m", endpoint="p", kind="provider", trusted=False,
                    probe_id=case.id, probe_hash=case.content_hash, sample_index=k, ok=True,
                    text=text, finish_reason="tool_calls" if calls else "stop",
                    prompt_tokens=usage, completion_tokens=5, total_tokens=None,
                    error_class=None, case=case.model_dump(mode="json"), tool_calls=calls,
                )
            )  # fmt: skip
    return out


def honest(case: ProbeCase, rng: random.Random, flip: float = 0.0) -> Any:
    """The same answer plain and streamed; with `flip`, numeric noise changes any answer,
    plain or streamed alike, that often."""
    noisy = "" if rng.random() >= flip else " (a near tie broken otherwise)"
    if case.params.tools:
        return None, [call("lookup_order", '{"order_id": "A-1"' + noisy + "}")], 30
    return f"answer{noisy}", None, 30


def test_an_honest_provider_passes_even_when_noise_changes_its_repeats() -> None:
    comparisons = streaming_parity(answers(lambda c, r: honest(c, r, flip=0.3)))
    assert {c.metric for c in comparisons} == set(StreamMetric)
    assert rejected(comparisons) == []
    flagged = sum(
        bool(rejected(streaming_parity(answers(lambda c, r: honest(c, r, flip=0.3), s))))
        for s in range(200)
    )
    assert flagged <= 10  # at most the 5% the level allows, with room for chance


def test_streamed_tool_calls_that_differ_are_found_and_named_tool_calling() -> None:
    def mangled(case: ProbeCase, rng: random.Random) -> Any:
        text, calls, usage = honest(case, rng)
        if case.stream and calls:
            arguments = calls[0]["function"]["arguments"][:-1]  # the last delta lost
            calls = [call("lookup_order", arguments)]
        return text, calls, usage

    comparisons = streaming_parity(answers(mangled))
    diagnoses = diagnose(rejected(comparisons), comparisons)
    assert [d.kind for d in diagnoses] == ["tool_calling"]
    assert "streamed tool calls" in diagnoses[0].summary


def test_calls_broken_only_where_streamed_are_blamed_on_the_streaming_parser() -> None:
    """The mangled streamed calls also fall short of the reference's: the diagnosis names the
    streaming, which the plain answers clear; without the stream test, the arguments."""

    def mangled(case: ProbeCase, rng: random.Random) -> Any:
        text, calls, usage = honest(case, rng)
        if case.stream and calls:
            calls = [call("lookup_order", calls[0]["function"]["arguments"][:-1])]
        return text, calls, usage

    broken = TestResult(
        name="violations:tool_args_broken", statistic=4.0, p_value=1e-6, effect=0.5, n=8
    )
    against_reference = [Comparison(broken, ToolMetric.ARGS_BROKEN, SCOPE)]
    both = streaming_parity(answers(mangled)) + against_reference
    (diagnosis,) = diagnose(rejected(both), both)
    assert diagnosis.kind == "tool_calling" and "streamed tool calls" in diagnosis.summary
    (diagnosis,) = diagnose(rejected(against_reference), against_reference)
    assert "mangled on the way out" in diagnosis.summary


def test_streamed_answers_that_differ_and_missing_usage_are_found() -> None:
    def other(case: ProbeCase, rng: random.Random) -> Any:
        text, calls, usage = honest(case, rng)
        if case.stream:
            return (None if text is None else text + "!"), calls, None
        return text, calls, usage

    comparisons = streaming_parity(answers(other))
    moved = {r.comparison.metric for r in rejected(comparisons)}
    assert moved == {StreamMetric.ANSWERS_DIFFER, StreamMetric.USAGE_MISSING}


def test_no_twins_no_test_and_calls_compare_by_parsed_arguments() -> None:
    assert streaming_parity([]) == []
    one = {"function": {"name": "f", "arguments": '{"a": 1, "b": 2}'}}
    two = {"function": {"name": "f", "arguments": '{"b":2,"a":1}'}}
    obs = answers(honest)[:2]
    obs[0].tool_calls, obs[1].tool_calls = [one], [two]
    assert calls_of(obs[0]) == calls_of(obs[1])
