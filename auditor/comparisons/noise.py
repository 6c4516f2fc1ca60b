"""Greedy answers against honest numeric noise, from the reference's own logits.

Every temperature-0 answer is scored under the reference weights step by step
(`auditor.scorers.reference_likelihood.token_trace`): at each step, whether the answer's token
is the reference's top choice, and how far the other candidates trail it. Honest serving adds
numeric noise to the logits (other kernels, batch sizes, precision); modelled as Gaussian
noise of at most `tolerance` nats on every logit (`auditor.stats.numeric_noise`), it departs
from the top choice only where a candidate trails by little. Other weights, a heavier
quantization, a wrong sampler or a changed prompt depart where the reference's choice is
clear. No trusted provider is needed: the band comes from the reference. Providers marked
trusted, where there are some, set the tolerance instead: the noise level their own
departures allow (an upper 95% bound). Where an answer follows the reference's own answer it
departs from nothing (`walk`).

- `noise:greedy_departures@<scope>` (short probes, probes with a system message, long-context
  probes): the telling departures (at steps where honest noise departs with a chance below
  `INFORMATIVE`), against the Poisson-binomial of those chances (exact, one-sided).
  Statistic: departures; effect: departures minus the honest expectation, per step.
- `noise:greedy_agreement`: the share of greedy answers that stay on the reference's own
  answer through the scored window, against the honest chance of doing so from the
  reference's own margins along that answer. Effect: observed minus honest share.
- `noise:greedy_repeats_vary`: temperature-0 requests sent more than once (a probe's repeats,
  a sequential look's extra samples) whose answers part ways within their first quarter,
  against the chance that honest noise moves any of the repeats off the reference's path
  within the first quarter of its answer (an upper bound: they might move alike). Sampling
  makes repeats differ; other weights, deterministic, do not.
- Figures for the rules (`auditor.comparisons.noise_rules`): `noise:moved_share`, the share of
  greedy answers with a departure honest noise would make with a chance below 1e-3;
  `noise:moved_density`, the share of the steps of those answers that depart tellingly (a
  heavier quantization perturbs every step, other weights or another prompt only some);
  `noise:prefix_fade`, how often answers to long prompts moved over how often answers to
  plain short ones did; `noise:departure_gap`, the mean gap at departures over
  the mean gap where the reference's own sampled answers leave its top choice (near 1:
  sampled; small: greedy decoding on other logits).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from auditor.comparisons.base import (
    MIN_SAMPLES,
    PROBE_SCOPES,
    Comparator,
    Comparison,
    ComparisonInput,
    Scope,
    comparators,
    figure,
    result_of,
)
from auditor.comparisons.greedy import diverges_early
from auditor.comparisons.observation import Observation
from auditor.records import TestResult
from auditor.stats.numeric_noise import (
    departure_probabilities,
    excess_departures_test,
    fit_sigma,
    poisson_binomial_quantile,
    poisson_binomial_sf,
)
from auditor.stats.outcome import TestOutcome

MIN_STEPS = 20  # fewer scored greedy steps than this in a scope: no test
INFORMATIVE = 0.1  # departures count where honest noise departs with a smaller chance
MIN_LONG_ANSWERS = 2  # fewer greedy answers to long prompts: no fade
IMPLAUSIBLE = 1e-3  # a departure honest noise makes with a smaller chance: the answer moved
SCOPES = (Scope.SHORT, Scope.SYSTEM_PROMPT, Scope.LONG_CONTEXT)


class NoiseMetric(StrEnum):
    DEPARTURES = "greedy_departures"
    AGREEMENT = "greedy_agreement"
    REPEATS_VARY = "repeats_vary"
    MOVED_SHARE = "greedy_moved_share"
    MOVED_DENSITY = "greedy_moved_density"
    PREFIX_FADE = "prefix_fade"
    DEPARTURE_GAP = "departure_gap"


N = NoiseMetric


Trace = dict[str, list[Any]]
#: A step that is a near-tie whatever the numbers say: the chance of departing is one half.
TIE: list[float] = [0.0]


def walk(trace: Trace, path: Trace | None) -> list[tuple[bool, list[float], float]]:
    """Each step of an answer as the noise model reads it: (departed, the gaps that set its
    honest chance, the gap of the token taken).

    The reference's own greedy answer (`path`), scored by the same engine in one pass, does
    not always hold the scorer's top token: generating token by token and scoring in a batch
    round differently, so a near-tie can go the other way (a reference artifact, not a
    fault). So where the answer follows the reference's own answer, it departs from nothing,
    and a step where the reference's token is not the scorer's top counts as a tie. From the
    first step where it leaves that answer, a step departs where its token is not the
    reference's top choice."""
    ranks, gaps, near = trace.get("rank") or [], trace.get("gap") or [], trace.get("near") or []
    out: list[tuple[bool, list[float], float]] = []
    on_path = path is not None
    for i, (rank, gap, candidates) in enumerate(zip(ranks, gaps, near, strict=False)):
        if on_path and path is not None and i < len(path.get("rank") or []):
            artifact = path["rank"][i] > 0
            if rank == path["rank"][i] and abs(gap - path["gap"][i]) < 1e-3:
                out.append((False, TIE if artifact else candidates, gap))
                continue
            on_path = False
            out.append((True, TIE if artifact else candidates, gap))
            continue
        on_path = False
        out.append((rank > 0, candidates, gap))
    return out


@dataclass(frozen=True)
class Steps:
    """The scored steps of some greedy answers: departed or not, and the honest chance."""

    departed: list[bool]
    near: list[list[float]]
    chances: np.ndarray
    gaps: list[float]  # the gap at each departure

    @classmethod
    def of(cls, answers: Iterable[Observation], paths: dict[str, Trace], sigma: float) -> Steps:
        departed: list[bool] = []
        near: list[list[float]] = []
        gaps: list[float] = []
        for o in answers:
            for moved, candidates, gap in walk(o.trace or {}, paths.get(o.probe_hash)):
                departed.append(moved)
                near.append(candidates)
                if moved:
                    gaps.append(gap)
        return cls(departed, near, departure_probabilities(near, sigma), gaps)


def greedy(obs: Iterable[Observation]) -> list[Observation]:
    """The greedy answers the noise model can read: decoded freely. A grammar (a JSON
    `response_format`, a forced tool call) masks the logits the trace is scored on, so a
    constrained answer's departures say nothing of the weights or the noise."""
    return [
        o
        for o in obs
        if o.ok and o.temperature == 0 and o.trace and o.trace.get("rank") and not o.constrained
    ]


def reference_paths(reference: list[Observation]) -> dict[str, Trace]:
    """The reference's own greedy answer to each probe, as scored."""
    return {o.probe_hash: o.trace for o in greedy(reference) if o.trace}


def tolerance_for(data: ComparisonInput) -> tuple[float, str]:
    """The noise level honest serving may show, and where it comes from."""
    trusted = greedy(data.trusted)
    if trusted:
        steps = Steps.of(trusted, reference_paths(data.reference), data.noise_tolerance)
        fitted = fit_sigma(steps.departed, steps.near)
        if fitted is not None:
            return fitted, f"the trusted providers' noise ({fitted:.3g} nats, upper 95% bound)"
    sigma = data.noise_tolerance
    return sigma, f"a numeric tolerance of {sigma:g} nats (logit std) on the reference's logits"


def departures(
    provider: list[Observation], paths: dict[str, Trace], scope: Scope, sigma: float, band: str
) -> list[Comparison]:
    keep = PROBE_SCOPES[scope]
    steps = Steps.of((o for o in greedy(provider) if keep(o)), paths, sigma)
    if len(steps.departed) < MIN_STEPS:
        return []
    # Only steps where honest noise seldom departs tell: a near-tie goes either way.
    telling = steps.chances < INFORMATIVE
    departed = [d and bool(t) for d, t in zip(steps.departed, telling, strict=True)]
    chances = np.where(telling, steps.chances, 0.0)
    outcome = excess_departures_test(departed, chances)
    high = poisson_binomial_quantile(chances, 0.975)
    result = result_of(f"noise:greedy_departures@{scope}", outcome).model_copy(
        update={"honest_range": (0.0, float(high)), "note": f"honest band from {band}"}
    )
    return [Comparison(result, N.DEPARTURES, scope)]


def agreement(
    provider: list[Observation], paths: dict[str, Trace], sigma: float, band: str
) -> list[Comparison]:
    """Answers that stay on the reference's own answer through the scored window."""
    stayed: list[bool] = []
    honest: list[float] = []
    for o in greedy(provider):
        path = paths.get(o.probe_hash)
        if not path:
            continue
        steps = walk(o.trace or {}, path)[: len(path["rank"])]
        stayed.append(not any(moved for moved, _, _ in steps))
        # the chance of leaving the reference's answer at each of its steps
        on_path = [TIE if r > 0 else n for r, n in zip(path["rank"], path["near"], strict=False)]
        chances = departure_probabilities(on_path[: len(steps)], sigma)
        honest.append(float(np.prod(1.0 - chances)))
    n = len(stayed)
    if n < MIN_SAMPLES:
        return []
    left = [1.0 - h for h in honest]
    moved = n - sum(stayed)
    expected = float(np.mean(honest))
    outcome = TestOutcome(
        statistic=sum(stayed) / n,
        p_value=poisson_binomial_sf(left, moved) if moved else 1.0,
        effect=sum(stayed) / n - expected,
        n=n,
    )
    low = 1.0 - poisson_binomial_quantile(left, 0.975) / n
    result = TestResult(
        name="noise:greedy_agreement",
        statistic=outcome.statistic,
        p_value=outcome.p_value,
        effect=outcome.effect,
        n=n,
        honest_range=(low, 1.0),
        note=f"honest band from {band}; honest serving stays on {expected:.0%} on average",
    )
    return [Comparison(result, N.AGREEMENT, Scope.GREEDY)]


def repeats(
    provider: list[Observation], paths: dict[str, Trace], sigma: float, band: str
) -> list[Comparison]:
    groups: dict[str, list[str]] = defaultdict(list)
    for o in provider:
        if o.ok and o.temperature == 0:
            groups[o.probe_hash].append(o.text or "")
    varied: list[bool] = []
    honest: list[float] = []
    for probe, texts in groups.items():
        path = paths.get(probe)
        if len(texts) < 2 or not path:
            continue
        varied.append(any(diverges_early(texts[0], t) for t in texts[1:]))
        near = [TIE if r > 0 else n for r, n in zip(path["rank"], path["near"], strict=False)]
        quarter = near[: max(1, math.ceil(len(near) / 4))]
        stay = float(np.prod(1.0 - departure_probabilities(quarter, sigma)))
        honest.append(min(1.0, 1.0 - stay ** len(texts)))
    n = len(varied)
    if n < 2:
        return []
    k = sum(varied)
    result = TestResult(
        name="noise:greedy_repeats_vary",
        statistic=k / n,
        p_value=poisson_binomial_sf(honest, k) if k else 1.0,
        effect=k / n - float(np.mean(honest)),
        n=n,
        honest_range=(0.0, poisson_binomial_quantile(honest, 0.975) / n),
        note=f"honest band from {band}",
    )
    return [Comparison(result, N.REPEATS_VARY, Scope.GREEDY)]


def figures(
    reference: list[Observation],
    provider: list[Observation],
    paths: dict[str, Trace],
    sigma: float,
) -> list[Comparison]:
    answers = greedy(provider)
    out = []
    if answers:
        departures = [_telling(o, paths, sigma) for o in answers]
        moved = [t for t in departures if any(c < IMPLAUSIBLE for c in t[1])]
        share = len(moved) / len(answers)
        shown = figure("noise:moved_share", share, None, len(answers))
        out.append(Comparison(shown, N.MOVED_SHARE, Scope.GREEDY))
        if moved:
            density = float(np.mean([len(c) / steps for steps, c in moved]))
            shown = figure("noise:moved_density", density, None, len(moved))
            out.append(Comparison(shown, N.MOVED_DENSITY, Scope.GREEDY))
        out += _prefix_fade(answers, departures)
    gaps = Steps.of(answers, paths, sigma).gaps
    sampled = [
        g
        for o in reference
        if o.ok and (o.temperature or 0) > 0 and o.trace
        for r, g in zip(o.trace.get("rank") or [], o.trace.get("gap") or [], strict=False)
        if r > 0
    ]
    if gaps and sampled and np.mean(sampled) > 0:
        likeness = float(np.mean(gaps) / np.mean(sampled))
        shown = figure("noise:departure_gap", likeness, None, len(gaps))
        out.append(Comparison(shown, N.DEPARTURE_GAP, Scope.GREEDY))
    return out


def _telling(o: Observation, paths: dict[str, Trace], sigma: float) -> tuple[int, list[float]]:
    """(the answer's steps, the honest chances of its telling departures)."""
    steps = Steps.of([o], paths, sigma)
    chances = [
        float(c)
        for d, c in zip(steps.departed, steps.chances, strict=True)
        if d and c < INFORMATIVE
    ]
    return len(steps.departed), chances


def _prefix_fade(
    answers: list[Observation], departures: list[tuple[int, list[float]]]
) -> list[Comparison]:
    """How often answers to long prompts moved, over how often answers to plain short prompts
    did (moved as `noise:moved_share` counts it: a departure honest noise makes with a chance
    below `IMPLAUSIBLE`). A change ahead of the prompt, such as hidden
    instructions in the system slot, shows most where nothing else fills the context and
    fades under a long prompt of the caller's own, thousands of characters away from it;
    other weights move answers to long and short prompts alike. (A system message of the
    caller's does not drown hidden instructions: a host that adds some puts them beside it.)
    """
    short: list[bool] = []
    long: list[bool] = []
    for o, (_, chances) in zip(answers, departures, strict=True):
        if PROBE_SCOPES[Scope.SHORT](o):
            short.append(any(c < IMPLAUSIBLE for c in chances))
        elif PROBE_SCOPES[Scope.LONG_CONTEXT](o):
            long.append(any(c < IMPLAUSIBLE for c in chances))
    if len(long) < MIN_LONG_ANSWERS or not short or not any(short):
        return []
    fade = (sum(long) / len(long)) / (sum(short) / len(short))
    shown = figure("noise:prefix_fade", fade, None, len(long))
    return [Comparison(shown, N.PREFIX_FADE, Scope.GREEDY)]


@comparators.register("noise")
class NoiseComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        sigma, band = tolerance_for(data)
        if not greedy(data.provider) or not math.isfinite(sigma):
            return []
        paths = reference_paths(data.reference)
        out = [c for s in SCOPES for c in departures(data.provider, paths, s, sigma, band)]
        out += agreement(data.provider, paths, sigma, band)
        out += repeats(data.provider, paths, sigma, band)
        out += figures(data.reference, data.provider, paths, sigma)
        return out
