"""The diagnosis rules that read the noise model (`auditor.comparisons.noise`): which greedy
answers moved, in which probes, how densely, how far from the reference's top choices, beside
the prompt accounting, the tone and the sampled answers. The thresholds were chosen on the
detection benchmark's tuning fleets (docs/benchmarks.md); the reasons are docs/judging.md's."""

from __future__ import annotations

from auditor.comparisons.base import Scope
from auditor.comparisons.metrics import PROMPT_CHANGED, TONE_METRICS, ScoreMetric
from auditor.comparisons.noise import NoiseMetric
from auditor.comparisons.rules import AllOf, Condition, Figure, Moved, Not, Rule, register
from auditor.comparisons.sampler import SamplerMetric

N = NoiseMetric

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
#: Answers to long prompts moved at most this share as often as answers to plain ones
#: (`noise:prefix_fade`): a change ahead of the prompt, which a long prompt drowns out.
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
        _MOVED + "; answers to long prompts moved {figures[prefix_fade]:.0%} as often as "
        "answers to plain ones: a change ahead of the prompt that a long prompt of the "
        "caller's own drowns out (hidden instructions)",
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
