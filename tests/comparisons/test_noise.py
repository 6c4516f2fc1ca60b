"""The greedy tests against honest noise, on answers simulated step by step: honest serving
with noise up to the tolerance passes, whatever its noise; other logits, sampling and a cut
context are caught, in the scope where they act; trusted providers tighten the band."""

from __future__ import annotations

from dataclasses import replace

from helpers.traces import endpoint

from auditor.comparisons.base import ComparisonInput, Scope
from auditor.comparisons.noise import NoiseComparator, NoiseMetric
from auditor.comparisons.observation import Observation


def noise_tests(
    provider: list[Observation], trusted: list[Observation] | None = None, tolerance: float = 0.2
) -> dict[str, tuple[float | None, float | None]]:
    data = ComparisonInput(endpoint("reference", 0), provider, trusted or [], "t", tolerance)
    return {
        f"{c.metric}@{c.scope}": (c.result.p_value, c.result.statistic)
        for c in NoiseComparator().compare(data)
    }


def test_honest_noise_up_to_the_tolerance_passes() -> None:
    for seed, noise in enumerate([0.0, 0.05, 0.1, 0.15, 0.2] * 4):
        found = noise_tests(endpoint("honest", 100 + seed, noise))
        for name, (p, _) in found.items():
            assert p is None or p > 0.001, (noise, name, p)


def test_other_logits_move_every_scope() -> None:
    found = noise_tests(endpoint("variant", 1, 0.05, shift=1.0))
    assert found[f"{NoiseMetric.DEPARTURES}@{Scope.SHORT}"][0] < 1e-6
    assert found[f"{NoiseMetric.DEPARTURES}@{Scope.LONG_CONTEXT}"][0] < 1e-2
    moved_share = found[f"{NoiseMetric.MOVED_SHARE}@{Scope.GREEDY}"][1]
    assert moved_share is not None and moved_share > 0.5


def test_a_cut_context_moves_long_prompts_only() -> None:
    found = noise_tests(endpoint("cut", 2, 0.05, long_shift=2.0))
    assert found[f"{NoiseMetric.DEPARTURES}@{Scope.LONG_CONTEXT}"][0] < 1e-6
    assert found[f"{NoiseMetric.DEPARTURES}@{Scope.SHORT}"][0] > 0.01


def test_trusted_providers_tighten_the_band() -> None:
    slight = endpoint("slight", 3, 0.05, shift=0.12)
    trusted = endpoint("trusted-a", 4, 0.02) + endpoint("trusted-b", 5, 0.02)
    key = f"{NoiseMetric.DEPARTURES}@{Scope.SHORT}"
    loose = noise_tests(slight)[key][0]
    tight = noise_tests(slight, trusted)[key][0]
    assert loose is not None and tight is not None and tight < loose / 100


def test_answers_decoded_under_a_grammar_are_not_read() -> None:
    """A JSON `response_format` or a forced tool call masks the logits the trace is scored
    on: such answers, however far they move, are left to the tests that read them."""
    moved = endpoint("variant", 1, 0.05, shift=1.0)
    for params in (
        {"temperature": 0, "response_format": {"type": "json_schema", "json_schema": {}}},
        {"temperature": 0, "response_format": {"type": "json_object"}},
        {"temperature": 0, "tool_choice": "required"},
    ):
        constrained = [replace(o, case={**o.case, "params": params}) for o in moved]
        assert all(o.constrained for o in constrained)
        assert noise_tests(constrained) == {}
    plain_format = {"temperature": 0, "response_format": {"type": "text"}}
    free = [replace(o, case={**o.case, "params": plain_format}) for o in moved]
    assert noise_tests(free)[f"{NoiseMetric.DEPARTURES}@{Scope.SHORT}"][0] < 1e-6
