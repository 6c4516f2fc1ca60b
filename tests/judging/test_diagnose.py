"""Comparisons and diagnoses on synthetic observations with a known answer."""

from __future__ import annotations

import random

from helpers.synthetic import fleet

from auditor.comparisons import compare
from auditor.comparisons.observation import Observation
from auditor.judging.diagnose import diagnose
from auditor.judging.evidence import pick_evidence as evidence
from auditor.judging.verdict import rejected, severity_for


def verdict(
    provider: list[Observation], reference: list[Observation] | None = None
) -> tuple[bool, list[str]]:
    reference = reference or fleet("reference", 0)
    rej = rejected(compare(reference, provider, seed="t"))
    return bool(rej), [d.kind for d in diagnose(rej)]


def test_an_honest_provider_is_not_flagged_over_many_rounds() -> None:
    flagged = sum(verdict(fleet("honest", seed))[0] for seed in range(1, 41))
    assert flagged <= 4  # at most 10% in 40 independent rounds at alpha 0.05


def test_hidden_persona_prompt_is_a_system_prompt_diagnosis() -> None:
    flagged, kinds = verdict(
        fleet(
            "persona", 1, prompt_tokens=lambda o: o.prompt_tokens + 35, flattery=2.5, emoji_rate=4.0
        )
    )
    assert flagged and kinds[0] == "system_prompt"


def test_truncated_context_is_diagnosed_from_long_prompts_only() -> None:
    def cut(o: Observation) -> int:
        return min(o.prompt_tokens or 0, 300)

    flagged, kinds = verdict(fleet("cut", 1, prompt_tokens=cut))
    assert flagged and kinds[0] == "context_truncation"


def test_clamped_max_tokens() -> None:
    flagged, kinds = verdict(fleet("clamp", 1, stopped_short_at_length=1.0))
    assert flagged and kinds == ["max_tokens"]


def test_dropped_system_message() -> None:
    def drop(o: Observation) -> int:
        return (o.prompt_tokens or 0) - 12 if o.has_system_message else o.prompt_tokens or 0

    flagged, kinds = verdict(fleet("drop", 1, prompt_tokens=drop))
    assert flagged and kinds[0] == "system_prompt"


def test_severity_and_evidence() -> None:
    reference = fleet("reference", 0)
    provider = fleet("variant", 1, text=lambda o: f"something else {o.probe_id}")
    kinds = diagnose(rejected(compare(reference, provider, seed="t")))
    assert severity_for("deviant", kinds) in ("warning", "critical")
    assert severity_for("unavailable", []) == "warning" and severity_for("consistent", []) == "info"
    items = evidence(reference, provider, kinds)
    assert 1 <= len(items) <= 3
    assert all(e.reference != e.provider for e in items)


def with_likelihood(endpoint: str, seed: int, shift: float) -> list[Observation]:
    """Sampled answers scored under the reference weights, moved by `shift` nats a token."""
    rng = random.Random(seed + 100)
    obs = fleet(endpoint, seed)
    for o in obs:
        centre = -1.0 - (int(o.probe_hash[1:]) % 7) / 5
        o.scores["ref_logprob_mean"] = rng.gauss(centre + (shift if o.temperature else 0), 0.2)
        o.scores["ref_gap_mean"] = 0.0
    return obs


def test_sampled_answers_more_likely_than_the_references_are_a_lowered_temperature() -> None:
    reference = with_likelihood("reference", 0, 0.0)
    deviant, kinds = verdict(with_likelihood("p", 1, 0.5), reference)
    assert deviant and kinds[0] == "sampling_params"
    deviant, kinds = verdict(with_likelihood("q", 2, -0.5), reference)
    assert deviant and kinds[0] == "model_variant"
    honest, _ = verdict(with_likelihood("h", 3, 0.0), reference)
    assert not honest
