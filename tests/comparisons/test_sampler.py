"""A sampler that cuts the distribution: the tokens its cut removes never come, where honest
sampling draws some; the cut masses come from the whole distribution."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from helpers.observations import observation

from auditor.comparisons.sampler import sampler_cut
from auditor.providers.continuation import SAMPLER_CUTS, TokenScore, cut_masses
from auditor.scorers.reference_likelihood import sampler_cuts

CUTS = [f"{kind}={value:g}" for kind, value in SAMPLER_CUTS]


def sampled_answers(
    rng: np.random.Generator, cut: dict[str, float] | None, answers: int = 8
) -> list:
    """Answers sampled at temperature 1 from random distributions, with or without a server
    cut, scored as the reference scores them (cut masses under the honest sampler)."""
    out = []
    for a in range(answers):
        tokens = []
        for _ in range(48):
            logprobs = rng.normal(0, 2.5, 500)
            logprobs -= np.log(np.exp(logprobs).sum())
            probs = np.exp(logprobs)
            if cut:
                order = np.argsort(-logprobs)
                keep = np.zeros(probs.size, dtype=bool)
                keep[order[: int(cut["top_k"])]] = True
                keep &= probs >= cut["min_p"] * probs.max()
                probs = np.where(keep, probs, 0.0)
                probs /= probs.sum()
            token = int(rng.choice(probs.size, p=probs))
            masses, hits = cut_masses(logprobs, token, {"temperature": 1.0})
            tokens.append(TokenScore(str(token), float(logprobs[token]), 0, [], masses, hits))
        trace = {"rank": [0] * len(tokens), "cuts": sampler_cuts(tokens)}
        out.append(observation(100, sample_index=a, temperature=1.0, trace=trace))
    return out


def test_honest_sampling_shows_no_cut() -> None:
    rng = np.random.default_rng(0)
    p_values = [sampler_cut(sampled_answers(rng, None))[0].result.p_value for _ in range(20)]
    assert min(p for p in p_values if p is not None) > 0.01


def test_a_server_default_cut_is_named() -> None:
    rng = np.random.default_rng(1)
    (c,) = sampler_cut(sampled_answers(rng, {"top_k": 40, "min_p": 0.05}))
    assert c.result.p_value is not None and c.result.p_value < 1e-4
    assert c.result.effect is not None and c.result.effect < 0
    assert c.result.note is not None
    assert c.result.note.startswith("no sampled token that top_k=40 or min_p=0.05")


def test_cut_masses_follow_the_honest_sampler() -> None:
    logprobs = np.log(np.array([0.5, 0.3, 0.16, 0.04]))
    masses, hits = cut_masses(logprobs, 3, {"temperature": 1.0})
    by_name = dict(zip(CUTS, masses, strict=True))
    assert by_name["min_p=0.1"] == pytest.approx(0.04)  # 0.04 < 0.1 * 0.5
    assert by_name["top_p=0.9"] == pytest.approx(0.04)  # outside the 0.96 nucleus
    assert by_name["top_k=20"] == 0.0
    assert dict(zip(CUTS, hits, strict=True))["min_p=0.1"]
    # asked for min_p 0.2 itself, honest sampling never draws what a 0.1 cut removes
    masses, _ = cut_masses(logprobs, 0, {"temperature": 1.0, "min_p": 0.2})
    assert dict(zip(CUTS, masses, strict=True))["min_p=0.1"] == 0.0


def test_without_the_whole_distribution_it_is_not_available() -> None:
    answers = [observation(1, temperature=1.0, trace={"rank": [0, 1]})]
    (c,) = sampler_cut(answers)
    assert c.result.status == "not_available" and c.result.p_value is None


def test_repeats_of_a_seeded_request_count_as_one_draw() -> None:
    """An honest host answers the same seed alike: two copies of a draw are one draw, or a
    cut-free answer repeated would look like twice the evidence of a cut."""
    rng = np.random.default_rng(3)
    draws = sampled_answers(rng, None, answers=4)
    seeded = [replace(o, case={**o.case, "params": {"temperature": 1.0, "seed": 7}}) for o in draws]
    # Each draw its own probe, sent twice with its seed and answered alike.
    repeated = [
        replace(o, probe_hash=f"h{i}", sample_index=k) for i, o in enumerate(seeded) for k in (0, 1)
    ]
    (once,) = sampler_cut([replace(o, probe_hash=f"h{i}") for i, o in enumerate(seeded)])
    (twice,) = sampler_cut(repeated)
    assert twice.result.n == once.result.n
    assert twice.result.p_value == once.result.p_value
    unseeded = [replace(o, case={**o.case, "params": {"temperature": 1.0}}) for o in repeated]
    (independent,) = sampler_cut(unseeded)
    assert independent.result.n == 2 * once.result.n
