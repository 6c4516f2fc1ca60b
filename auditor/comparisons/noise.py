"""Greedy answers against honest numeric noise, from the reference's own logits.

Every temperature-0 answer is scored under the reference weights step by step
(`auditor.scorers.reference_likelihood.token_trace`): at each step, whether the answer's token
is the reference's top choice, and how far the other candidates trail it. Honest serving adds
numeric noise to the logits (other kernels, batch sizes, precision); modelled as Gaussian noise
of at most `tolerance` nats on every logit (`auditor.stats.noise`), it departs from the top
choice only where a candidate trails by little. Other weights, a heavier quantization, a wrong
sampler or a changed prompt depart where the reference's choice is clear. No trusted provider
is needed: the band comes from the reference. Providers marked trusted, where there are some,
set the tolerance instead: the noise level their own departures allow (an upper 95% bound).

- `noise:greedy_departures@<scope>` (short probes, probes with a system message, long-context
  probes): the steps where the provider's greedy answers leave the reference's top choice,
  against the Poisson-binomial of the honest chances (exact, one-sided). Statistic: departures;
  effect: departures minus the honest expectation, per step.
- `noise:greedy_agreement`: the share of greedy answers that stay on the reference's own
  answer through the scored window, against the honest chance of doing so from the
  reference's own margins along that answer. Effect: observed minus honest share.
- `noise:greedy_repeats_vary`: temperature-0 requests sent more than once (a probe's repeats,
  a sequential look's extra samples) whose answers part ways within their first quarter,
  against the chance that honest noise moves any of the repeats off the reference's path
  within the first quarter of its answer (an upper bound: they might move alike). Sampling
  makes repeats differ; other weights, deterministic, do not.
- Figures for the rules: `noise:moved_share`, the share of greedy answers with a departure
  honest noise would make with a chance below 1e-3 (all traffic or a share of it);
  `noise:moved_density`, the share of the steps of those answers that depart where honest
  noise seldom does (a heavier quantization perturbs every step, other weights or another
  prompt only some); and
  `noise:departure_gap`, the mean gap at departures over the mean gap at the steps where the
  reference's own sampled (temperature > 0) answers leave its top choice (near 1: sampled;
  small: greedy decoding on other logits).
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
from auditor.comparisons.metrics import PROMPT_CHANGED, TONE_METRICS, ScoreMetric
from auditor.comparisons.observation import Observation
from auditor.comparisons.rules import AllOf, Condition, Figure, Moved, Not, Rule, register
from auditor.comparisons.sampler import SamplerMetric
from auditor.records import TestResult
from auditor.stats.noise import (
    departure_probabilities,
    excess_departures_test,
    fit_sigma,
    poisson_binomial_quantile,
    poisson_binomial_sf,
)
from auditor.stats.outcome import TestOutcome

MIN_STEPS = 20  # fewer scored greedy steps than this in a scope: no test
INFORMATIVE = 0.1  # departures count where honest noise departs with a smaller chance
MIN_OTHER_ANSWERS = 4  # fewer greedy answers with a system message or long prompt: no fade
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
    return [o for o in obs if o.ok and o.temperature == 0 and o.trace and o.trace.get("rank")]


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
    """How often answers to probes that bring instructions or context of their own (a system
    message, a long prompt) moved, over how often answers to plain short prompts did (each:
    a telling departure at least). A change ahead of the prompt, such as hidden instructions
    in the system slot, shows most where nothing else instructs the model and fades under
    the prompt's own; other weights move every kind of probe alike."""
    short: list[bool] = []
    rest: list[bool] = []
    for o, (_, chances) in zip(answers, departures, strict=True):
        (short if PROBE_SCOPES[Scope.SHORT](o) else rest).append(bool(chances))
    if len(rest) < MIN_OTHER_ANSWERS or not short or not any(short):
        return []
    fade = (sum(rest) / len(rest)) / (sum(short) / len(short))
    shown = figure("noise:prefix_fade", fade, None, len(rest))
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


#: Departures as far from the reference's top choices as its own temperature-1 samples'
#: (`noise:departure_gap`): sampled, not greedy decoding on other logits (a raw prompt with no
#: chat template strays as far).
SAMPLED_GAP = 0.6
#: Below this, departures stay near the top: other logits, whatever split the repeats.
NEAR_TOP_GAP = 0.3
#: Share of their steps at which moved answers depart (where honest noise seldom does) from
#: which the weights are taken to be the same, more heavily quantized (`noise:moved_density`):
#: quantization error perturbs every step, other weights or another prompt only some.
QUANT_DENSITY = 0.2
#: Share of greedy answers moved from which all traffic is taken to be moved.
WIDESPREAD = 0.7
#: Probes with instructions or context of their own moved at most this share as often as
#: plain ones (`noise:prefix_fade`): a change ahead of the prompt, which they drown out.
FADED = 0.5
#: The answers to plain prompts moved, or nearly: what moved elsewhere is not specific to
#: those probes (an uncorrected hint is enough to say so).
WIDE = Figure(N.DEPARTURES, scope=Scope.SHORT, field="p_value", below=0.05)
#: The sampled answers are narrower than asked (fewer of the rarer tokens): a temperature or
#: a cut of the host's own.
NARROWER = AllOf(
    (
        Figure(SamplerMetric.CUT, field="effect", below=0.0),
        Figure(SamplerMetric.CUT, field="p_value", below=0.05),
    )
)
SAMPLING = (
    "sampling_params.greedy_sampled",
    "sampling_params.repeats_vary",
    "sampling_params.own_temperature",
)
DENSE = Figure(N.MOVED_DENSITY, at_least=QUANT_DENSITY)
WIDESPREAD_MOVE = Figure(N.MOVED_SHARE, scope=Scope.GREEDY, at_least=WIDESPREAD)
QUANTIZED_LIKE = (DENSE, WIDESPREAD_MOVE)
_MOVED = (
    "{figures[greedy_moved_share]:.0%} of greedy answers leave the reference's beyond noise, "
    "at {figures[greedy_moved_density]:.0%} of their steps"
)


def _short_departures(
    name: str, kind: str, weight: float, summary: str, when: tuple[Condition, ...]
) -> Rule:
    """A rule reading the departures of answers to plain prompts, yielding to sampling."""
    return Rule(
        name=name,
        metric=N.DEPARTURES,
        scope=Scope.SHORT,
        direction="up",
        when=when,
        suppressed_by=SAMPLING,
        kind=kind,
        weight=weight,
        summary=summary,
    )


register(
    Rule(
        name="sampling_params.greedy_sampled",
        metric=N.DEPARTURES,
        direction="up",
        when=(Not(PROMPT_CHANGED), Figure(N.DEPARTURE_GAP, at_least=SAMPLED_GAP)),
        kind="sampling_params",
        weight=0.9,
        summary="temperature-0 answers leave the reference's top choices by "
        "{figures[departure_gap]:.0%} of the distance its own temperature-1 samples do: the "
        "temperature is not honoured",
    ),
    Rule(
        name="sampling_params.own_temperature",
        metric=N.DEPARTURES,
        direction="up",
        when=(Not(PROMPT_CHANGED), NARROWER),
        kind="sampling_params",
        weight=0.9,
        summary="temperature-0 answers move and sampled ones are narrower than asked: the host "
        "samples at a temperature of its own, whatever the request says",
    ),
    Rule(
        name="sampling_params.repeats_vary",
        metric=N.REPEATS_VARY,
        direction="up",
        when=(
            Not(PROMPT_CHANGED),
            Figure(N.DEPARTURE_GAP, at_least=NEAR_TOP_GAP, if_missing=True),
        ),
        kind="sampling_params",
        weight=0.85,
        summary="repeated temperature-0 requests part ways early ({statistic:.0%} of probes), "
        "beyond what numeric noise does: the request's sampling parameters are not honoured",
    ),
    Rule(
        name="context_truncation.long_prompts_depart",
        metric=N.DEPARTURES,
        scope=Scope.LONG_CONTEXT,
        direction="up",
        when=(Not(WIDE),),
        kind="context_truncation",
        weight=0.9,
        summary="greedy answers to long prompts leave the reference's beyond numeric noise "
        "where answers to short prompts do not: the context is cut",
    ),
    Rule(
        name="system_prompt.system_messages_depart",
        metric=N.DEPARTURES,
        scope=Scope.SYSTEM_PROMPT,
        direction="up",
        when=(Not(WIDE),),
        kind="system_prompt",
        weight=0.85,
        summary="answers to requests with a system message leave the reference's beyond "
        "numeric noise where the others do not: the system message is not passed as sent",
    ),
    # Failing needles or ignored system messages name a cause only where plain prompts did not
    # move too (a wrong sampler or other weights fail them as well).
    Rule(
        name="context_truncation.long_prompts_fail",
        metric=ScoreMetric.EXPECT_PASS,
        scope=Scope.LONG_CONTEXT,
        direction="down",
        when=(Not(WIDE),),
        kind="context_truncation",
        weight=0.8,
        summary="fails retrieval from long prompts ({effect:+.0%} pass rate)",
    ),
    Rule(
        name="system_prompt.ignored",
        metric=ScoreMetric.EXPECT_PASS,
        scope=Scope.SYSTEM_PROMPT,
        direction="down",
        when=(Not(WIDE),),
        kind="system_prompt",
        weight=0.8,
        summary="ignores what the system message says ({effect:+.0%} pass rate)",
    ),
    # Fewer prompt tokens billed than the model's own chat template counts: another template
    # (answers stray as far as samples do: the model reads a raw prompt), or the system
    # prompt the template puts first replaced by a shorter one (answers move modestly).
    Rule(
        name="chat_template.other_template",
        metric=ScoreMetric.PROMPT_TOKENS,
        scope=Scope.SHORT,
        direction="down",
        when=(Figure(N.DEPARTURE_GAP, at_least=SAMPLED_GAP, if_missing=True),),
        kind="chat_template",
        weight=0.85,
        summary="prompts are billed {moved:+.0f} tokens against the model's own chat "
        "template and answers stray like samples: another template is applied",
    ),
    Rule(
        name="system_prompt.replaced",
        metric=ScoreMetric.PROMPT_TOKENS,
        scope=Scope.SHORT,
        direction="down",
        when=(Figure(N.DEPARTURE_GAP, below=SAMPLED_GAP),),
        kind="system_prompt",
        weight=0.85,
        summary="prompts are billed {moved:+.0f} tokens against the model's own chat "
        "template and answers move modestly: the system prompt the template puts first is "
        "replaced (hidden instructions)",
    ),
    _short_departures(
        "system_prompt.tone_everywhere",
        "system_prompt",
        0.85,
        _MOVED + ", and their tone moved (flattery, emoji, exclamations...): hidden "
        "instructions, or a chat-tuned variant",
        when=(Not(PROMPT_CHANGED), Moved(TONE_METRICS, direction="up")),
    ),
    _short_departures(
        "system_prompt.prefix_change",
        "system_prompt",
        0.85,
        _MOVED + "; answers to probes with a system message or a long prompt of their own "
        "moved {figures[prefix_fade]:.0%} as often as plain ones: a change ahead of the prompt "
        "that the prompt's own instructions drown out (hidden instructions)",
        when=(Not(PROMPT_CHANGED), Figure(N.PREFIX_FADE, below=FADED), Not(DENSE)),
    ),
    # Which weights: a heavier quantization perturbs the logits at every step (dense), and
    # on all traffic moves nearly every answer; other weights (a fine-tune) or a share of the
    # traffic move answers at a few steps.
    _short_departures(
        "quantization.dense",
        "quantization",
        0.8,
        _MOVED + ": the same weights, more heavily quantized (on all traffic or a share of it)",
        when=(Not(PROMPT_CHANGED), DENSE),
    ),
    _short_departures(
        "quantization.widespread",
        "quantization",
        0.8,
        _MOVED + ": nearly every answer, the same weights more heavily quantized",
        when=(Not(PROMPT_CHANGED), Not(DENSE), WIDESPREAD_MOVE),
    ),
    _short_departures(
        "model_variant.or_other_weights",
        "model_variant",
        0.6,
        _MOVED + ": or other weights",
        when=(Not(PROMPT_CHANGED),),
    ),
    _short_departures(
        "model_variant.other_weights",
        "model_variant",
        0.8,
        _MOVED + ": other weights (a fine-tune, another model) serve all traffic or a share of it",
        when=(Not(PROMPT_CHANGED), Not(DENSE), Not(WIDESPREAD_MOVE)),
    ),
    _short_departures(
        "quantization.or_quantized",
        "quantization",
        0.5,
        _MOVED + ": or a quantization that hurts some prompts only",
        when=(Not(PROMPT_CHANGED), Not(DENSE), Not(WIDESPREAD_MOVE)),
    ),
)
