"""What every comparison returns, the plugin kind that produces comparisons, and the helpers the
comparison modules share.

Each comparison is a named test with its statistic, p-value, effect and sample size, plus the
metric and probe scope it looked at (what the diagnosis rules read, `auditor.comparisons.rules`)
and the sign of the move (`sign`: which way the provider moved, by default the effect's sign).
All tests are two-sample or paired tests whose null is "the provider behaves as the
reference". Pure functions over observations; no I/O.

A comparison module declares the metrics it emits (a `StrEnum`), a `Comparator` registered in
`comparators`, and beside them the diagnosis rules that read those metrics.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from auditor.comparisons.observation import Observation
from auditor.config import DEFAULT_NOISE_TOLERANCE
from auditor.plugins import Registry
from auditor.records import TestResult
from auditor.stats.outcome import TestOutcome

MIN_SAMPLES = 5  # fewer paired or scored samples than this: no test
TOLERATED_RATE = 0.01  # honest quirks allowed for: 1 request in 100


class Scope(StrEnum):
    """Which probes (or which baseline) a comparison looked at."""

    ALL = "all"
    LONG_CONTEXT = "long_context"
    SYSTEM_PROMPT = "system_prompt"
    SHORT = "short"  # neither long-context nor with a system message
    GREEDY = "greedy"  # temperature-0 answers
    SAMPLED = "sampled"  # temperature > 0 answers
    TRUSTED = "trusted"  # against the providers marked trusted
    LOGPROBS = "logprobs"  # answers that came with logprobs
    TOOLS = "tools"  # probes that offer tools
    LADDER = "ladder"  # context-ladder probes (`auditor.comparisons.ladder`)


PROBE_SCOPES: dict[Scope, Callable[[Observation], bool]] = {
    Scope.ALL: lambda o: True,
    Scope.LONG_CONTEXT: lambda o: "long_context" in o.signals,
    Scope.SYSTEM_PROMPT: lambda o: o.has_system_message,
    Scope.SHORT: lambda o: "long_context" not in o.signals and not o.has_system_message,
}


@dataclass(frozen=True)
class Comparison:
    """One test (or figure) of one provider, with what the diagnosis rules read: the metric,
    the probe scope, and `sign`, which way the provider moved (None: the effect's sign)."""

    result: TestResult
    metric: str
    scope: str
    sign: float | None = None

    @property
    def moved(self) -> float:
        """Which way the provider moved: positive up, negative down, 0 not at all."""
        return self.sign if self.sign is not None else (self.result.effect or 0.0)


@dataclass(frozen=True)
class ComparisonInput:
    """What every comparator reads: the reference's observations (or the provider's own
    history), the provider's, those of the providers marked trusted (the provider itself
    excluded), a text seed that fixes anything random per round and provider, the numeric
    noise honest serving may add to the reference's logits, and the context window the model's
    profile declares (prompt and answer, in tokens; None: not declared); and the level the
    verdict tests at (alpha / looks, `auditor.judging.verdict`; None: its default), read by a
    comparison whose figure is itself a decision (the context ladder's window)."""

    reference: list[Observation]
    provider: list[Observation]
    trusted: list[Observation] = field(default_factory=list)
    seed: str = ""
    noise_tolerance: float = DEFAULT_NOISE_TOLERANCE
    context_window: int | None = None
    level: float | None = None


class Comparator(ABC):
    """One kind of evidence: a provider's observations against the baseline's -> comparisons.
    Pure: no I/O, the same input gives the same comparisons."""

    @abstractmethod
    def compare(self, data: ComparisonInput) -> list[Comparison]: ...


comparators: Registry[type[Comparator]] = Registry("comparison", group="auditor.comparisons")


def result_of(name: str, outcome: TestOutcome) -> TestResult:
    return TestResult(
        name=name,
        statistic=outcome.statistic,
        p_value=outcome.p_value,
        effect=outcome.effect,
        n=outcome.n,
    )


def figure(name: str, value: float, effect: float | None, n: int, **extra: Any) -> TestResult:
    """A number reported beside the tests, without a p-value."""
    return TestResult.model_validate(
        {
            "name": name,
            "statistic": value,
            "p_value": None,
            "effect": effect,
            "n": n,
            "status": "figure",
            **extra,
        }
    )


def values_of(obs: Iterable[Observation], metric: str) -> list[float]:
    return [v for o in obs if (v := o.scores.get(metric)) is not None]


def seeded_rng(seed: str) -> np.random.Generator:
    """A generator fixed by a text seed (round, model, provider): recomputing a round's
    findings gives the same p-values."""
    return np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16))
