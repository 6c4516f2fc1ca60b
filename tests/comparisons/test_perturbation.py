"""auditor.comparisons.perturbation on hand-built observations: the gap between original
problems and their perturbed twins, provider against reference."""

from __future__ import annotations

import pytest

from auditor.comparisons.observation import Observation
from auditor.comparisons.perturbation import perturbation_gap


def obs(
    endpoint: str,
    group: str,
    role: str,
    index: int,
    passed: float | None,
    *,
    ok: bool = True,
    sample_index: int = 0,
) -> Observation:
    kind = "reference" if endpoint == "reference" else "provider"
    probe_id = f"{group}.{'orig' if role == 'original' else f'p{index}'}"
    case = {
        "id": probe_id,
        "messages": [{"role": "user", "content": f"problem {probe_id}"}],
        "params": {"temperature": 0, "max_tokens": 16},
        "signals": ["perturbation"],
        "group": group,
        "expect": {"number": 1},
        "metadata": {"generator": "perturbed_arithmetic", "role": role, "values": {}},
    }
    return Observation(
        model="m",
        endpoint=endpoint,
        kind=kind,
        trusted=False,
        probe_id=probe_id,
        probe_hash=f"h-{probe_id}",
        sample_index=sample_index,
        ok=ok,
        text="1" if ok else None,
        finish_reason="stop" if ok else None,
        prompt_tokens=10,
        completion_tokens=1,
        total_tokens=11,
        error_class=None if ok else "server_error",
        case=case,
        scores={} if passed is None else {"expect_pass": passed},
    )


def endpoint(name: str, outcomes: dict[str, tuple[int, list[int]]]) -> list[Observation]:
    """group -> (original passed, [twins passed])."""
    out = []
    for group, (original, twins) in outcomes.items():
        out.append(obs(name, group, "original", 0, float(original)))
        out += [obs(name, group, "perturbed", i + 1, float(t)) for i, t in enumerate(twins)]
    return out


GROUPS = [f"g{i}" for i in range(6)]
# the released weights: solve two originals and some twins
REFERENCE = {g: (int(i < 2), [int(i % 2 == 0), 0]) for i, g in enumerate(GROUPS)}


def test_a_provider_solving_every_original_but_no_more_twins_is_flagged() -> None:
    tuned = {g: (1, twins) for g, (_, twins) in REFERENCE.items()}
    (c,) = perturbation_gap(endpoint("reference", REFERENCE), endpoint("tuned", tuned))
    assert c.result.name == "gap:perturbation" and c.metric == "perturbation_gap"
    assert c.result.status == "tested" and c.result.n == 18
    # reference: originals 2/6, twins 3/12; provider: originals 6/6, the same twins
    assert c.result.statistic == pytest.approx(1 - 3 / 12)
    assert c.result.effect == pytest.approx((1 - 3 / 12) - (2 / 6 - 3 / 12))
    # four groups where only the original moved: (1/3) ** 4
    assert c.result.p_value == pytest.approx(3.0**-4)


def test_the_same_answers_as_the_reference_do_not_reject() -> None:
    (c,) = perturbation_gap(endpoint("reference", REFERENCE), endpoint("honest", REFERENCE))
    assert c.result.status == "tested" and c.result.p_value == 1.0
    assert c.result.effect == pytest.approx(0.0)


def test_a_provider_worse_everywhere_is_not_a_benchmark_tune() -> None:
    # fails everything: its gap shrinks with the reference's, no preference for originals
    broken = {g: (0, [0, 0]) for g in GROUPS}
    (c,) = perturbation_gap(endpoint("reference", REFERENCE), endpoint("broken", broken))
    assert c.result.p_value is not None and c.result.p_value > 0.5
    # better everywhere: no preference either
    better = {g: (1, [1, 1]) for g in GROUPS}
    (c,) = perturbation_gap(endpoint("reference", REFERENCE), endpoint("better", better))
    assert c.result.p_value is not None and c.result.p_value > 0.5


def test_noise_flipping_a_few_cases_is_not_significant() -> None:
    noisy = dict(REFERENCE)
    noisy["g3"] = (1, [0, 0])  # one original flipped
    noisy["g4"] = (1, [1, 1])  # and a group flipped throughout
    (c,) = perturbation_gap(endpoint("reference", REFERENCE), endpoint("noisy", noisy))
    assert c.result.p_value is not None and c.result.p_value > 0.05


def test_too_few_groups_give_a_figure() -> None:
    ref = {"a": (0, [0]), "b": (0, [0]), "c": (0, [0, 0])}  # as in the core suite
    tuned = {g: (1, twins) for g, (_, twins) in ref.items()}
    (c,) = perturbation_gap(endpoint("reference", ref), endpoint("tuned", tuned))
    assert c.result.status == "figure" and c.result.p_value is None
    assert c.result.statistic == pytest.approx(1.0) and c.result.effect == pytest.approx(1.0)
    assert "at best p = 0.083" in (c.result.note or "")


def test_errors_and_unpaired_cases_are_left_out() -> None:
    ref = endpoint("reference", REFERENCE)
    tuned = endpoint("tuned", {g: (1, twins) for g, (_, twins) in REFERENCE.items()})
    # g0's original failed at the provider: the whole group has no original, so it is out
    tuned = [o for o in tuned if o.probe_id != "g0.orig"]
    tuned.append(obs("tuned", "g0", "original", 0, None, ok=False))
    # a case only the provider has, and one without a score, change nothing
    tuned.append(obs("tuned", "g9", "original", 0, 1.0))
    tuned.append(obs("tuned", "g1", "perturbed", 7, None))
    (c,) = perturbation_gap(ref, tuned)
    assert c.result.n == 15
    # g0 left out changes nothing: the reference solved its original, the provider moved
    # g2-g5 only
    assert c.result.p_value == pytest.approx(3.0**-4)


def test_repeated_samples_count_as_a_pass_rate() -> None:
    ref = endpoint("reference", REFERENCE)
    tuned = endpoint("tuned", {g: (1, twins) for g, (_, twins) in REFERENCE.items()})
    # a second sample of every original, failing: rates of 1/2 instead of 1
    tuned += [obs("tuned", g, "original", 0, 0.0, sample_index=1) for g in GROUPS]
    (c,) = perturbation_gap(ref, tuned)
    assert c.result.statistic == pytest.approx(0.5 - 3 / 12)


def test_no_perturbed_pairs_no_comparison() -> None:
    plain = obs("reference", "g", "original", 0, 1.0)
    plain.case.pop("group")
    assert perturbation_gap([plain], [plain]) == []
    assert perturbation_gap([], endpoint("p", REFERENCE)) == []
