"""Per-answer likelihood figures and their comparisons, on synthetic token scores."""

from __future__ import annotations

import math
import random

import pytest

from auditor.comparisons import reference_likelihood
from auditor.comparisons.observation import Observation
from auditor.providers.continuation import TokenScore
from auditor.scorers.reference_likelihood import likelihood_scores


def token(logprob: float, top: float) -> TokenScore:
    rank = 0 if logprob >= top else 1
    return TokenScore(token="x", logprob=logprob, rank=rank, top=[("t", top)])


def test_figures_of_an_answer() -> None:
    records = {
        r.metric: r.value
        for r in likelihood_scores(
            [token(-0.1, -0.1), token(-2.0, -0.5), token(-0.3, -0.3)], {"top_k": 5}
        )
    }
    assert math.isclose(records["ref_logprob_mean"] or 0, -0.8)
    assert math.isclose(records["ref_top1_share"] or 0, 2 / 3)
    assert math.isclose(records["ref_gap_mean"] or 0, 0.5)
    assert records["ref_tokens"] == 3


def obs(endpoint: str, probe: int, index: int, gap: float, logprob: float) -> Observation:
    sampled = probe % 2 == 1
    return Observation(
        model="m", endpoint=endpoint, kind="reference" if endpoint == "reference" else "provider",
        trusted=endpoint.startswith("trusted"), probe_id=f"p{probe}", probe_hash=f"h{probe}",
        sample_index=index, ok=True, text="t", finish_reason="stop", prompt_tokens=10,
        completion_tokens=5, total_tokens=15, error_class=None,
        case={"params": {"temperature": 1.0 if sampled else 0.0}},
        scores={"ref_logprob_mean": logprob, "ref_gap_mean": gap},
    )  # fmt: skip


def endpoint(name: str, seed: int, gap_scale: float, logprob_shift: float) -> list[Observation]:
    rng = random.Random(seed)
    return [
        obs(name, p, i, rng.expovariate(1) * gap_scale, rng.gauss(-1.5, 0.3) + logprob_shift)
        for p in range(30)
        for i in range(2)
    ]


def by_name(comparisons: list) -> dict:  # type: ignore[type-arg]
    return {c.result.name: c.result for c in comparisons}


def test_honest_gaps_are_within_the_trusted_band_and_other_weights_are_not() -> None:
    reference = endpoint("reference", 0, 0.0, 0.0)
    trusted = endpoint("trusted-a", 1, 0.05, 0.0)
    honest = by_name(reference_likelihood(reference, endpoint("honest", 2, 0.05, 0.0), trusted))
    other = by_name(reference_likelihood(reference, endpoint("other", 3, 0.3, -0.6), trusted))
    assert honest["rate:ref_gap_tail@trusted"].p_value > 0.01  # type: ignore[operator]
    assert honest["shift:ref_logprob@sampled"].p_value > 0.01  # type: ignore[operator]
    assert other["rate:ref_gap_tail@trusted"].p_value < 1e-4  # type: ignore[operator]
    # The whole upper fifth of the pooled gaps is the provider's: 12 of its 30 answers.
    assert other["rate:ref_gap_tail@trusted"].effect == pytest.approx(0.4)
    assert other["shift:ref_logprob@sampled"].effect < -0.5  # type: ignore[operator]
    assert other["rate:ref_gap_tail@trusted"].honest_range == (0.0, 0.0)


def test_a_share_of_traffic_on_other_weights_shows_in_the_tail() -> None:
    reference = endpoint("reference", 0, 0.0, 0.0)
    trusted = endpoint("trusted-a", 1, 0.01, 0.0) + endpoint("trusted-b", 4, 0.01, 0.0)
    mixed = endpoint("mixed", 5, 0.01, 0.0)
    for o in mixed[::2]:
        o.scores["ref_gap_mean"] = 0.2 + (o.scores["ref_gap_mean"] or 0)
    result = by_name(reference_likelihood(reference, mixed, trusted))["rate:ref_gap_tail@trusted"]
    assert result.p_value < 1e-3 and 0.4 < result.statistic < 0.9  # type: ignore[operator]


def test_a_provider_closer_to_the_reference_than_trusted_ones_is_no_fault() -> None:
    reference = endpoint("reference", 0, 0.0, 0.0)
    trusted = endpoint("trusted-a", 1, 0.3, 0.0)
    exact = by_name(reference_likelihood(reference, endpoint("exact", 2, 0.0, 0.0), trusted))
    assert exact["rate:ref_gap_tail@trusted"].p_value > 0.5  # type: ignore[operator]


def test_without_trusted_providers_the_gap_is_a_figure() -> None:
    reference = endpoint("reference", 0, 0.0, 0.0)
    results = by_name(reference_likelihood(reference, endpoint("p", 2, 0.3, 0.0), []))
    figure = results["likelihood:ref_gap"]
    assert figure.status == "figure" and figure.p_value is None and figure.statistic > 0.1  # type: ignore[operator]


def test_not_available_without_scores_is_said_never_faked() -> None:
    reference = endpoint("reference", 0, 0.0, 0.0)
    for o in reference:
        o.scores.clear()
    (result,) = by_name(reference_likelihood(reference, endpoint("p", 2, 0.3, 0.0), [])).values()
    assert result.status == "not_available" and result.p_value is None
    assert "did not score" in (result.note or "")
