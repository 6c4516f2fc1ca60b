"""Tool calling, provider against reference, on observations scored by the real tools scorer."""

from __future__ import annotations

from typing import Any

import pytest
from auditor_fleet.tools import corrupt_arguments
from helpers.openai import WEATHER_TOOL

from auditor.comparisons.observation import Observation
from auditor.comparisons.tools import decision_f1, tool_use
from auditor.records import CompletionResponse, Message, ProbeCase, RequestParams
from auditor.scorers.tools import ToolScorer

RAW = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def case(probe: int, temperature: float = 0) -> ProbeCase:
    return ProbeCase(
        id=f"p{probe}",
        suite="tools",
        messages=[Message(role="user", content=f"Question {probe}")],
        params=RequestParams(temperature=temperature, tools=[WEATHER_TOOL]),
        signals=["greedy", "tools"],
    )


def answer(calls: bool, arguments: str = '{"city": "Paris"}', raw: bool = False) -> Any:
    """What an endpoint answers: a call, the call's text left unparsed, or plain text."""
    if raw:
        return CompletionResponse(ok=True, text=RAW, finish_reason="stop")
    if not calls:
        return CompletionResponse(ok=True, text="It is sunny.", finish_reason="stop")
    call = {
        "id": "call_0",
        "type": "function",
        "function": {"name": "get_weather", "arguments": arguments},
    }
    return CompletionResponse(ok=True, finish_reason="tool_calls", tool_calls=[call])


def observe(
    endpoint: str, probe: int, response: CompletionResponse, temperature: float = 0
) -> Observation:
    c = case(probe, temperature)
    return Observation(
        model="m",
        endpoint=endpoint,
        kind="reference" if endpoint == "reference" else "provider",
        trusted=False,
        probe_id=c.id,
        probe_hash=c.content_hash,
        sample_index=0,
        ok=True,
        text=response.text,
        finish_reason=response.finish_reason,
        prompt_tokens=10,
        completion_tokens=5,
        total_tokens=15,
        error_class=None,
        case=c.model_dump(mode="json"),
        scores={r.metric: r.value for r in ToolScorer().score(c, response)},
        tool_calls=response.tool_calls,
    )


# The reference calls on probes 0-4 and answers in text on 5-9.
CALLS = [True] * 5 + [False] * 5


def reference() -> list[Observation]:
    return [observe("reference", i, answer(c)) for i, c in enumerate(CALLS)]


def by_name(comparisons: list[Any]) -> dict[str, Any]:
    return {c.result.name: c for c in comparisons}


def test_f1_of_the_call_decision() -> None:
    assert decision_f1([(True, True), (False, False)]) == 1.0
    assert decision_f1([(False, False)] * 3) == 1.0
    assert decision_f1([(True, False), (True, True), (False, True)]) == pytest.approx(0.5)
    assert decision_f1([(True, False)] * 2) == 0.0


def test_an_honest_provider_agrees() -> None:
    provider = [observe("p", i, answer(c)) for i, c in enumerate(CALLS)]
    got = by_name(tool_use(reference(), provider))
    f1 = got["tool_calls:decision_f1"].result
    assert f1.status == "figure" and f1.statistic == 1.0 and f1.p_value is None and f1.n == 10
    assert got["violations:tool_decision"].result.p_value == 1.0
    assert got["violations:tool_args_broken"].result.p_value == 1.0
    assert got["rate:tool_args_valid"].result.p_value == 1.0
    assert all(c.metric.startswith("tool_") and c.scope == "tools" for c in got.values())


def test_one_flipped_decision_is_within_honest_noise() -> None:
    flips = [not CALLS[0], *CALLS[1:]]
    provider = [observe("p", i, answer(c)) for i, c in enumerate(flips)]
    got = by_name(tool_use(reference(), provider))
    assert got["violations:tool_decision"].result.p_value > 0.05  # type: ignore[operator]
    assert got["tool_calls:decision_f1"].result.statistic == pytest.approx(8 / 9)


def test_a_host_that_does_not_parse_calls_is_found() -> None:
    provider = [observe("p", i, answer(c, raw=c)) for i, c in enumerate(CALLS)]
    got = by_name(tool_use(reference(), provider))
    assert got["tool_calls:decision_f1"].result.statistic == 0.0
    decision = got["violations:tool_decision"].result
    assert decision.p_value < 1e-6 and decision.effect == pytest.approx(0.5 - 0.01)  # type: ignore[operator]
    assert "rate:tool_args_valid" not in got  # the provider made no call to judge


def test_a_host_that_breaks_arguments_is_found() -> None:
    broken = corrupt_arguments('{"city": "Paris"}')
    provider = [observe("p", i, answer(c, broken)) for i, c in enumerate(CALLS)]
    got = by_name(tool_use(reference(), provider))
    assert got["violations:tool_decision"].result.p_value == 1.0
    assert got["violations:tool_args_broken"].result.p_value < 1e-6  # type: ignore[operator]
    rate = got["rate:tool_args_valid"].result
    assert rate.effect == -1.0 and rate.p_value < 0.01  # type: ignore[operator]


def test_wrong_arguments_the_reference_also_gets_wrong_are_not_held_against_the_provider() -> None:
    wrong = '{"town": "Paris"}'  # JSON, but not valid for the schema, on both sides
    ref = [observe("reference", i, answer(c, wrong)) for i, c in enumerate(CALLS)]
    provider = [observe("p", i, answer(c, wrong)) for i, c in enumerate(CALLS)]
    got = by_name(tool_use(ref, provider))
    assert got["violations:tool_args_broken"].result.p_value == 1.0


def test_sampled_probes_and_probes_without_tools_are_not_paired() -> None:
    sampled = [observe("reference", i, answer(c), 1.0) for i, c in enumerate(CALLS)]
    provider = [observe("p", i, answer(c, raw=c), 1.0) for i, c in enumerate(CALLS)]
    got = by_name(tool_use(sampled, provider))
    assert "violations:tool_decision" not in got and "tool_calls:decision_f1" not in got
    assert tool_use([], []) == []


@pytest.mark.parametrize("fault", ["raw", "corrupt"])
def test_the_diagnosis_names_tool_calling(fault: str) -> None:
    from auditor.comparisons import compare
    from auditor.judging.diagnose import diagnose
    from auditor.judging.verdict import rejected

    broken = corrupt_arguments('{"city": "Paris"}')
    provider = [
        observe("p", i, answer(c, raw=c) if fault == "raw" else answer(c, broken))
        for i, c in enumerate(CALLS)
    ]
    comparisons = compare(reference(), provider, "s")
    (first, *_) = diagnose(rejected(comparisons), comparisons)
    assert first.kind == "tool_calling"
    honest = [observe("p", i, answer(c)) for i, c in enumerate(CALLS)]
    assert rejected(compare(reference(), honest, "s")) == []
