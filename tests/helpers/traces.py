"""Answers simulated step by step as the reference scores them (`token_trace`): greedy
decoding (or sampling) on random logits plus noise, for the noise model's tests."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from auditor.comparisons.observation import Observation
from helpers.observations import observation

STEPS = 40


def answer_trace(
    rng: np.random.Generator, noise: float, shift: float = 0.0, temperature: float = 0.0
) -> dict[str, list]:
    """One answer's steps as `token_trace` stores them: greedy decoding (or sampling) on the
    reference's logits plus noise (and `shift`, other weights' difference), scored under
    the clean logits."""
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


@dataclass(frozen=True)
class Fault:
    """How a simulated provider differs from the reference."""

    shift: float = 0.0  # other logits, on every kind of probe
    long_shift: float = 0.0  # more, on long prompts only (a cut context)
    plain_shift: float = 0.0  # on plain short prompts only (something ahead of the prompt)
    share: float = 1.0  # the share of answers that get the shifts (a mix)
    temperature: float = 0.0  # greedy requests sampled at this temperature


def endpoint(
    name: str,
    seed: int,
    noise: float = 0.0,
    shift: float = 0.0,
    long_shift: float = 0.0,
    fault: Fault | None = None,
) -> list[Observation]:
    """Greedy answers to 24 plain short probes, 6 with a system message and 6 long-context
    ones, and, for the reference, its own sampled answers (the departure-gap figure)."""
    fault = fault or Fault(shift=shift, long_shift=long_shift)
    rng = np.random.default_rng(seed)
    out = []
    for probe in range(36):
        system, long = 24 <= probe < 30, probe >= 30
        moved = rng.random() < fault.share
        extra = fault.long_shift if long else (0.0 if system else fault.plain_shift)
        total = math.hypot(fault.shift, extra) if moved else 0.0
        trace = answer_trace(rng, noise, total, fault.temperature)
        messages = [{"role": "system", "content": "s"}] if system else []
        messages.append({"role": "user", "content": f"question {probe}"})
        case = {"signals": ["long_context"] if long else [], "messages": messages}
        out.append(observation(probe, endpoint=name, trace=trace, case=case))
    if name == "reference":
        for probe in range(36, 40):
            trace = answer_trace(rng, 0.0, temperature=1.0)
            out.append(observation(probe, endpoint=name, temperature=1.0, trace=trace))
    return out
