"""Per-answer likelihood figures and their comparisons, on synthetic token scores."""

from __future__ import annotations

import math
import random

from helpers.observations import observation

from auditor.comparisons import reference_likelihood
from auditor.comparisons.observation import Observation
from auditor.providers.continuation import TokenScore
from auditor.scorers.reference_likelihood import likelihood_scores, token_trace


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
    return observation(
        probe,
        index,
        endpoint=endpoint,
        trusted=endpoint.startswith("trusted"),
        temperature=1.0 if sampled else 0.0,
        text="t",
        prompt_tokens=10,
        completion_tokens=5,
        total_tokens=15,
        scores={"ref_logprob_mean": logprob, "ref_gap_mean": gap},
    )


def endpoint(name: str, seed: int, gap_scale: float, logprob_shift: float) -> list[Observation]:
    rng = random.Random(seed)
    return [
        obs(name, p, i, rng.expovariate(1) * gap_scale, rng.gauss(-1.5, 0.3) + logprob_shift)
        for p in range(30)
        for i in range(2)
    ]


def by_name(comparisons: list) -> dict:  # type: ignore[type-arg]
    return {c.result.name: c.result for c in comparisons}


def test_sampled_answers_from_other_weights_are_less_likely() -> None:
    reference = endpoint("reference", 0, 0.0, 0.0)
    honest = by_name(reference_likelihood(reference, endpoint("honest", 2, 0.05, 0.0)))
    other = by_name(reference_likelihood(reference, endpoint("other", 3, 0.3, -0.6)))
    assert honest["shift:ref_logprob@sampled"].p_value > 0.01  # type: ignore[operator]
    assert other["shift:ref_logprob@sampled"].p_value < 1e-4  # type: ignore[operator]
    assert other["shift:ref_logprob@sampled"].effect < -0.5  # type: ignore[operator]


def test_the_trace_keeps_each_step() -> None:
    tokens = [
        TokenScore("a", -0.1, 0, [("a", -0.1), ("b", -0.2), ("c", -5.0)]),
        TokenScore("b", -1.0, 1, [("c", -0.4), ("b", -1.0)]),
    ]
    trace = token_trace(tokens)
    assert trace["rank"] == [0, 1]
    assert trace["gap"] == [0.0, 0.6]
    assert trace["near"] == [[0.1], [0.6]]  # candidates within 3 nats of the top only
    assert "cuts" not in trace  # greedy: scored without a sampler


def test_the_greedy_gap_is_a_figure() -> None:
    reference = endpoint("reference", 0, 0.0, 0.0)
    results = by_name(reference_likelihood(reference, endpoint("p", 2, 0.3, 0.0)))
    figure = results["likelihood:ref_gap"]
    assert figure.status == "figure" and figure.p_value is None and figure.statistic > 0.1  # type: ignore[operator]


def test_not_available_without_scores_is_said_never_faked() -> None:
    reference = endpoint("reference", 0, 0.0, 0.0)
    for o in reference:
        o.scores.clear()
    (result,) = by_name(reference_likelihood(reference, endpoint("p", 2, 0.3, 0.0))).values()
    assert result.status == "not_available" and result.p_value is None
    assert "did not score" in (result.note or "")
