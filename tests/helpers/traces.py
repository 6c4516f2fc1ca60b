"""Answers simulated step by step as the reference scores them (`token_trace`): greedy
decoding (or sampling) on random logits plus noise, for the noise model's tests."""

from __future__ import annotations

import math

import numpy as np

from auditor.comparisons.observation import Observation
from helpers.observations import observation

STEPS = 40


def answer_trace(
    rng: np.random.Generator, noise: float, shift: float = 0.0, temperature: float = 0.0
) -> dict[str, list]:
    """One answer's steps as `token_trace` stores them: greedy decoding (or sampling) on the
    reference's logits plus noise, scored under the clean logits."""
    rank, gap, near = [], [], []
    for _ in range(STEPS):
        logits = rng.normal(0.0, 1.0, 30)
        logits[0] += rng.choice([0.05, 0.3, 1.0, 4.0, 8.0])
        noisy = logits + rng.normal(0.0, math.hypot(noise, shift), logits.size)
        if temperature:
            p = np.exp((noisy - noisy.max()) / temperature)
            chosen = int(rng.choice(p.size, p=p / p.sum()))
        else:
            chosen = int(np.argmax(noisy))
        order = np.argsort(-logits)
        top = logits[order[0]]
        rank.append(int(np.where(order == chosen)[0][0]))
        gap.append(float(top - logits[chosen]))
        near.append([float(top - logits[j]) for j in order[1:] if top - logits[j] < 3.0][:8])
    return {"rank": rank, "gap": gap, "near": near}


def endpoint(
    name: str, seed: int, noise: float = 0.0, shift: float = 0.0, long_shift: float = 0.0
) -> list[Observation]:
    """Greedy answers to 24 short probes and 6 long-context ones (`long_shift` moves only
    those), and the reference's own sampled answers for the departure-gap figure."""
    rng = np.random.default_rng(seed)
    out = []
    for probe in range(30):
        long = probe >= 24
        trace = answer_trace(rng, noise, math.hypot(shift, long_shift) if long else shift)
        case = {"signals": ["long_context"] if long else []}
        out.append(observation(probe, endpoint=name, trace=trace, case=case))
    if name == "reference":
        for probe in range(30, 34):
            trace = answer_trace(rng, 0.0, temperature=1.0)
            out.append(observation(probe, endpoint=name, temperature=1.0, trace=trace))
    return out
