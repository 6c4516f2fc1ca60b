"""Honest data -> the false-alarm rate of the detector and the noise band of every figure.

Providers known (or vouched) to be honest are exchangeable: for any probe and sample number,
their answers are draws from the same distribution (the reference weights, served with
numeric noise). So a new honest round can be simulated from stored ones: for each request,
draw the answer of a random honest provider. Each simulated round casts one honest endpoint
as the provider under test and the others as the trusted ones, runs the same comparisons
and Benjamini-Hochberg as a real round, and records whether the provider would be flagged
and each test's statistic. Over a few hundred rounds that gives the rate at which an honest
provider is flagged (with its Clopper-Pearson upper bound) and, per test, the central 95%
of what honest providers show: the noise band reported beside every figure.

`calibrate` is a pure function over observations; `calibrate_round` reads the rounds from
the database and stores the result.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field, replace

import numpy as np

from auditor.comparisons import compare
from auditor.comparisons.observation import Observation
from auditor.errors import UsageError
from auditor.judging.verdict import ALPHA, DETECTOR, rejected
from auditor.stats import clopper_pearson
from auditor.storage.observations import load_observations
from auditor.storage.repository import Store
from auditor.storage.tables import CalibrationRow

MIN_HONEST_ENDPOINTS = 2


@dataclass
class Calibration:
    rounds: int
    flagged: int
    alpha: float
    honest_endpoints: list[str]
    # per test name: the statistic's central 95% over the simulated honest rounds
    honest_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    # per test name: in how many simulated rounds it survived Benjamini-Hochberg
    flagged_by_test: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.flagged / self.rounds if self.rounds else 0.0

    @property
    def upper_bound(self) -> float:
        """One-sided 95% Clopper-Pearson upper bound on the false-alarm rate."""
        return clopper_pearson(self.flagged, self.rounds, confidence=0.90)[1]


def _pools(honest: dict[str, list[Observation]]) -> dict[tuple[str, int], list[Observation]]:
    pools: dict[tuple[str, int], list[Observation]] = defaultdict(list)
    for observations in honest.values():
        for o in observations:
            pools[o.key].append(o)
    return pools


def _draw(
    pools: dict[tuple[str, int], list[Observation]], name: str, rng: random.Random
) -> list[Observation]:
    """One simulated honest endpoint: a random honest answer for every request."""
    return [replace(rng.choice(pool), endpoint=name) for pool in pools.values()]


def calibrate(
    reference: list[Observation],
    honest: dict[str, list[Observation]],
    rounds: int = 200,
    seed: int = 0,
    alpha: float = ALPHA,
) -> Calibration:
    """Simulate `rounds` honest rounds from the honest endpoints' stored answers (see the
    module docstring). Each round has as many trusted endpoints as there are honest ones
    besides the provider, as the real rounds they were drawn from did."""
    if len(honest) < MIN_HONEST_ENDPOINTS:
        raise ValueError(
            f"calibration needs at least {MIN_HONEST_ENDPOINTS} honest providers, got {len(honest)}"
        )
    rng = random.Random(seed)
    pools = _pools(honest)
    statistics: dict[str, list[float]] = defaultdict(list)
    flagged_by_test: dict[str, int] = defaultdict(int)
    flagged = 0
    for i in range(rounds):
        provider = _draw(pools, "provider", rng)
        trusted = [o for k in range(len(honest) - 1) for o in _draw(pools, f"trusted-{k}", rng)]
        for o in trusted:
            o.trusted = True
        comparisons = compare(reference, provider, f"calibration/{seed}/{i}", trusted)
        survivors = rejected(comparisons, alpha)
        flagged += bool(survivors)
        for r in survivors:
            flagged_by_test[r.comparison.result.name] += 1
        for c in comparisons:
            if c.result.statistic is not None:
                statistics[c.result.name].append(float(c.result.statistic))
    ranges = {
        name: (float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975)))
        for name, values in statistics.items()
    }
    return Calibration(
        rounds=rounds,
        flagged=flagged,
        alpha=alpha,
        honest_endpoints=sorted(honest),
        honest_ranges=ranges,
        flagged_by_test=dict(flagged_by_test),
    )


def calibrate_round(
    store: Store,
    round_ids: list[str],
    honest: list[str] | None = None,
    rounds: int = 200,
    seed: int = 0,
    alpha: float = ALPHA,
) -> list[CalibrationRow]:
    """Calibrate each model of the rounds (of one suite) on their honest providers: those
    marked `trusted: true` and those named in `honest`; every round's answers join the
    pools the simulated rounds draw from, the first round's reference answers are the
    baseline. Stores the result (see `auditor.judging.calibration`)."""
    by_endpoint: dict[tuple[str, str], list[Observation]] = defaultdict(list)
    references: dict[str, list[Observation]] = {}
    for round_id in round_ids:
        answers: dict[str, list[Observation]] = defaultdict(list)
        for o in load_observations(store, round_id):
            if o.kind == "reference":
                answers[o.model].append(o)
            else:
                by_endpoint[(o.model, o.endpoint)].append(o)
        for model, observations in answers.items():
            references.setdefault(model, observations)
    names = ", ".join(round_ids)
    out = []
    for model in sorted({m for m, _ in by_endpoint}):
        reference = references.get(model, [])
        chosen = {
            name: obs
            for (m, name), obs in by_endpoint.items()
            if m == model
            and obs[0].kind == "provider"
            and (obs[0].trusted or name in (honest or []))
        }
        if not reference:
            raise UsageError(f"round(s) {names} hold no reference samples for {model}")
        try:
            result = calibrate(reference, chosen, rounds, seed, alpha)
        except ValueError as exc:
            raise UsageError(f"{model}: {exc} (mark them trusted: true or name them)") from None
        out.append(
            store.save_calibration(
                CalibrationRow(
                    model=model,
                    round_ids=round_ids,
                    honest_endpoints=result.honest_endpoints,
                    detector=DETECTOR,
                    alpha=alpha,
                    rounds=result.rounds,
                    flagged=result.flagged,
                    rate=result.rate,
                    upper_bound=result.upper_bound,
                    honest_ranges={k: list(v) for k, v in result.honest_ranges.items()},
                    flagged_by_test=result.flagged_by_test,
                )
            )
        )
    return out
