"""Scorer metrics, parameter violations and prompt accounting, provider against reference."""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from auditor.comparisons.base import (
    MIN_SAMPLES,
    PROBE_SCOPES,
    TOLERATED_RATE,
    Comparator,
    Comparison,
    ComparisonInput,
    Scope,
    comparators,
    result_of,
    values_of,
)
from auditor.comparisons.observation import Observation
from auditor.comparisons.rules import Moved, Not, Rule, register
from auditor.stats import excess_rate_test, mean_shift_test, proportion_test


class ScoreMetric(StrEnum):
    """The scorers' per-sample metrics this module compares (`auditor.scorers`)."""

    EXPECT_PASS = "expect_pass"
    ONLY_NUMBER = "only_number"
    HIT_MAX_TOKENS = "hit_max_tokens"
    ROLE_LEAK = "role_leak"
    REFUSAL = "refusal"
    FOLLOWS_ONE_NUMBER = "follows_one_number"
    FOLLOWS_ONE_WORD = "follows_one_word"
    FOLLOWS_YES_NO = "follows_yes_no"
    FOLLOWS_JSON_ONLY = "follows_json_only"
    FOLLOWS_WORD_LIMIT = "follows_word_limit"
    FOLLOWS_LANGUAGE = "follows_language"
    FOLLOWS_UPPERCASE = "follows_uppercase"
    WORDS = "words"
    COMPLETION_TOKENS = "completion_tokens"
    MARKDOWN_DENSITY = "markdown_density"
    EXCLAMATION_RATE = "exclamation_rate"
    EMOJI_RATE = "emoji_rate"
    FLATTERY = "flattery"
    SELF_PRAISE = "self_praise"
    QUESTIONS_BACK = "questions_back"
    # Violations: events an honest provider does not produce against the reference's answer.
    STOPPED_SHORT = "stopped_short_at_length"
    OVER_MAX_TOKENS = "over_max_tokens"
    # Prompt accounting: billed prompt tokens against the reference tokenizer's count.
    PROMPT_TOKENS = "prompt_tokens"


M = ScoreMetric
# Compared as rates (0/1 per sample, Fisher) and as distributions (Mann-Whitney).
RATE_METRICS = (
    M.EXPECT_PASS, M.ONLY_NUMBER, M.HIT_MAX_TOKENS, M.ROLE_LEAK, M.REFUSAL,
    M.FOLLOWS_ONE_NUMBER, M.FOLLOWS_ONE_WORD, M.FOLLOWS_YES_NO, M.FOLLOWS_JSON_ONLY,
    M.FOLLOWS_WORD_LIMIT, M.FOLLOWS_LANGUAGE, M.FOLLOWS_UPPERCASE,
)  # fmt: skip
SHIFT_METRICS = (
    M.WORDS, M.COMPLETION_TOKENS, M.MARKDOWN_DENSITY, M.EXCLAMATION_RATE, M.EMOJI_RATE,
    M.FLATTERY, M.SELF_PRAISE, M.QUESTIONS_BACK,
)  # fmt: skip
TONE_METRICS = (
    M.FLATTERY, M.EMOJI_RATE, M.EXCLAMATION_RATE, M.MARKDOWN_DENSITY, M.QUESTIONS_BACK,
    M.SELF_PRAISE,
)  # fmt: skip
VIOLATION_METRICS = (M.STOPPED_SHORT, M.OVER_MAX_TOKENS)
PROMPT_TOKEN_TOLERANCE = 2  # a BOS token or two billed differently is not a changed prompt


def metric_comparisons(
    reference: list[Observation], provider: list[Observation]
) -> list[Comparison]:
    """Rates with Fisher's exact test, distributions with Mann-Whitney, per scorer metric;
    the task pass rate also within the long-context and system-prompt probes."""
    out: list[Comparison] = []
    plan = [(m, Scope.ALL) for m in RATE_METRICS + SHIFT_METRICS]
    plan += [(M.EXPECT_PASS, Scope.LONG_CONTEXT), (M.EXPECT_PASS, Scope.SYSTEM_PROMPT)]
    for metric, scope in plan:
        keep = PROBE_SCOPES[scope]
        a = values_of((o for o in reference if keep(o)), metric)
        b = values_of((o for o in provider if keep(o)), metric)
        if len(a) < MIN_SAMPLES or len(b) < MIN_SAMPLES:
            continue
        if metric in RATE_METRICS:
            outcome = proportion_test(int(sum(a)), len(a), int(sum(b)), len(b))
            name = f"rate:{metric}" + ("" if scope == Scope.ALL else f"@{scope}")
        else:
            outcome = mean_shift_test(a, b)
            name = f"shift:{metric}"
        out.append(Comparison(result_of(name, outcome), metric, scope))
    return out


def violations(provider: list[Observation]) -> list[Comparison]:
    """Answers cut at `length` below the requested max_tokens, or longer than it: the
    reference never does either, so any excess over a tolerated quirk rate is evidence."""
    out = []
    for metric in VIOLATION_METRICS:
        values = values_of(provider, metric)
        if values:
            outcome = excess_rate_test(int(sum(values)), len(values), TOLERATED_RATE)
            out.append(Comparison(result_of(f"violations:{metric}", outcome), metric, Scope.ALL))
    return out


def prompt_accounting(
    reference: list[Observation], provider: list[Observation]
) -> list[Comparison]:
    """Prompt tokens the provider bills against what the reference tokenizer and chat template
    count for the same request, per probe scope. With the same weights and template the
    counts are equal; requests whose counts differ by more than a token or two are
    violations, tested against the tolerated rate. `moved` is the median difference among
    the requests that differ."""
    ref = {o.key: o for o in reference if o.prompt_tokens is not None}
    out = []
    for scope, keep in PROBE_SCOPES.items():
        diffs = [
            (o.prompt_tokens or 0) - (ref[o.key].prompt_tokens or 0)
            for o in provider
            if keep(o) and o.prompt_tokens is not None and o.key in ref
        ]
        if not diffs:
            continue
        k = sum(abs(d) > PROMPT_TOKEN_TOLERANCE for d in diffs)
        outcome = excess_rate_test(k, len(diffs), TOLERATED_RATE)
        out.append(
            Comparison(
                result_of(f"prompt_tokens@{scope}", outcome),
                M.PROMPT_TOKENS,
                scope,
                # which way the requests that differ moved (a fault may touch only some)
                sign=float(np.median([d for d in diffs if abs(d) > PROMPT_TOKEN_TOLERANCE]))
                if k
                else 0.0,
            )
        )
    return out


@comparators.register("scores")
class ScoreComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        return [
            *metric_comparisons(data.reference, data.provider),
            *violations(data.provider),
            *prompt_accounting(data.reference, data.provider),
        ]


#: The prompt that reaches the model differs from the one sent: changed answers follow from
#: it, so the rules that read answers name a cause only without it.
PROMPT_CHANGED = Moved(M.PROMPT_TOKENS)
WHOLE_PROMPT_CHANGED = Moved(M.PROMPT_TOKENS, Scope.SHORT)

register(
    Rule(
        name="max_tokens.stops_short",
        metric=M.STOPPED_SHORT,
        direction="up",
        kind="max_tokens",
        weight=0.95,
        summary="stops at finish_reason=length below the requested max_tokens "
        "({effect:+.0%} of answers)",
    ),
    Rule(
        name="chat_template.role_leak",
        metric=M.ROLE_LEAK,
        direction="up",
        kind="chat_template",
        weight=0.9,
        summary="role markers or template tokens leak into answers ({effect:+.0%})",
    ),
    Rule(
        name="context_truncation.long_prompts_billed_less",
        metric=M.PROMPT_TOKENS,
        scope=Scope.LONG_CONTEXT,
        direction="down",
        kind="context_truncation",
        weight=0.95,
        summary="long prompts are billed {moved:+.0f} tokens against what the reference "
        "tokenizer counts: the context is cut",
        when=(Not(WHOLE_PROMPT_CHANGED),),
    ),
    Rule(
        name="system_prompt.billed_differently",
        metric=M.PROMPT_TOKENS,
        scope=Scope.SYSTEM_PROMPT,
        kind="system_prompt",
        weight=0.9,
        summary="requests with a system message are billed {moved:+.0f} tokens against the "
        "reference: the system message is not passed as sent",
        when=(Not(WHOLE_PROMPT_CHANGED),),
    ),
    Rule(
        name="system_prompt.hidden_instructions",
        metric=M.PROMPT_TOKENS,
        scope=Scope.SHORT,
        direction="up",
        kind="system_prompt",
        weight=0.8,
        summary="every request is billed {moved:+.0f} tokens more than the reference "
        "counts: hidden instructions are added",
    ),
    Rule(
        name="system_prompt.hidden_persona",
        metric=M.PROMPT_TOKENS,
        scope=Scope.SHORT,
        direction="up",
        when=(Moved(TONE_METRICS, direction="up"),),
        kind="system_prompt",
        weight=0.95,
        summary="every request is billed {moved:+.0f} tokens more than the reference "
        "counts, and the tone moved: hidden instructions are added",
    ),
    Rule(
        name="model_variant.tone",
        metric=TONE_METRICS,
        direction="up",
        kind="model_variant",
        weight=0.7,
        summary="tone differs from the released weights: {name} effect {effect:+.2f}",
        when=(Not(WHOLE_PROMPT_CHANGED),),
    ),
)
