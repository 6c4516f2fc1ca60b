"""Synthetic rounds with a known answer: an endpoint's answers to 40 probes, 3 each, seeded,
that a test changes to plant a fault (`fleet("p", 1, prompt_tokens=...)`)."""

from __future__ import annotations

import random

from auditor.comparisons.observation import Observation
from helpers.observations import observation


def synthetic(
    endpoint: str, probe: int, index: int, rng: random.Random, **changes: object
) -> Observation:
    """One answer: every fourth probe long (800+ prompt tokens), every fourth with a system
    message (12 tokens more), every fourth sampled (random words); the scores of an honest
    endpoint. `changes` set a field or a score, or compute it from the answer when callable."""
    long = probe % 4 == 0
    system = probe % 4 == 1
    sampled = probe % 4 == 3
    signals = ["long_context"] if long else []
    messages = [{"role": "system", "content": "s"}] if system else []
    messages.append({"role": "user", "content": "u"})
    tokens = 800 + probe if long else 40 + probe + (12 if system else 0)
    text = f"answer {probe}" if not sampled else " ".join(rng.choice("abcdefgh") for _ in range(12))
    scores: dict[str, float | None] = {
        "expect_pass": 1.0 if rng.random() < 0.8 else 0.0,
        "words": float(rng.randint(5, 30)),
        "flattery": 0.0,
        "emoji_rate": 0.0,
        "stopped_short_at_length": 0.0,
        "role_leak": 0.0,
    }
    case = {
        "signals": signals,
        "messages": messages,
        "samples": 3,
        "params": {"temperature": 1.0 if sampled else 0.0},
    }
    obs = observation(
        probe,
        index,
        endpoint=endpoint,
        trusted=endpoint.startswith("trusted"),
        text=text,
        prompt_tokens=tokens,
        completion_tokens=10,
        total_tokens=tokens + 10,
        case=case,
        scores=scores,
    )
    for key, value in changes.items():
        if key in scores:
            obs.scores[key] = value(obs) if callable(value) else value  # type: ignore[assignment]
        else:
            setattr(obs, key, value(obs) if callable(value) else value)
    return obs


def fleet(endpoint: str, seed: int, **changes: object) -> list[Observation]:
    """A synthetic endpoint: 40 probes, 3 answers each (see `synthetic`), seeded."""
    rng = random.Random(seed)
    return [synthetic(endpoint, p, i, rng, **changes) for p in range(40) for i in range(3)]
