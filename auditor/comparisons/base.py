"""What every comparison returns, and the helpers the comparison modules share.

Each comparison is a named test with its statistic, p-value, effect and sample size, plus the
metric and probe scope it looked at (what the diagnosis rules read). All tests are two-sample
or paired tests whose null is "the provider behaves as the reference": exact under an honest
provider, up to the small numeric noise of real serving, which moves none of these
distributions measurably. Pure functions over observations; no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from auditor.observations import Observation
from auditor.records import TestResult
from auditor.stats.outcome import TestOutcome

MIN_SAMPLES = 5  # fewer paired or scored samples than this: no test
TOLERATED_RATE = 0.01  # honest quirks allowed for: 1 request in 100

Scope = Callable[[Observation], bool]
SCOPES: dict[str, Scope] = {
    "all": lambda o: True,
    "long_context": lambda o: "long_context" in o.signals,
    "system_prompt": lambda o: o.has_system_message,
    "short": lambda o: "long_context" not in o.signals and not o.has_system_message,
}


@dataclass(frozen=True)
class Comparison:
    result: TestResult
    metric: str
    scope: str
    direction: float = 0.0  # for prompt accounting: the median difference in tokens
    beyond_honest: float | None = None  # share of values beyond every trusted provider's
    sampling_likeness: float | None = None  # greedy gaps over the reference's sampled gaps


def result_of(name: str, outcome: TestOutcome) -> TestResult:
    return TestResult(
        name=name,
        statistic=outcome.statistic,
        p_value=outcome.p_value,
        effect=outcome.effect,
        n=outcome.n,
    )


def figure(name: str, value: float, effect: float | None, n: int, **extra: object) -> TestResult:
    """A number reported beside the tests, without a p-value."""
    return TestResult(
        name=name, statistic=value, p_value=None, effect=effect, n=n, status="figure", **extra
    )  # type: ignore[arg-type]


def values_of(obs: Iterable[Observation], metric: str) -> list[float]:
    return [v for o in obs if (v := o.scores.get(metric)) is not None]


def seeded_rng(seed: str) -> np.random.Generator:
    """A generator fixed by a text seed (round, model, provider): recomputing a round's
    findings gives the same p-values."""
    return np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16))
