"""Scorer metrics, parameter violations and prompt accounting, provider against reference."""

from __future__ import annotations

import numpy as np

from auditor.comparisons.base import (
    MIN_SAMPLES,
    SCOPES,
    TOLERATED_RATE,
    Comparison,
    result_of,
    values_of,
)
from auditor.observations import Observation
from auditor.stats import excess_rate_test, mean_shift_test, proportion_test

# Scorer metrics compared as rates (0/1 per sample) and as distributions.
RATE_METRICS = (
    "expect_pass", "only_number", "hit_max_tokens", "role_leak", "refusal", "follows_one_number",
    "follows_one_word", "follows_yes_no",
    "follows_json_only", "follows_word_limit", "follows_language", "follows_uppercase",
)  # fmt: skip
SHIFT_METRICS = (
    "words", "completion_tokens", "markdown_density", "exclamation_rate", "emoji_rate",
    "flattery", "self_praise", "questions_back",
)  # fmt: skip
# Violations: events an honest provider does not produce against the reference's own answer.
VIOLATION_METRICS = ("stopped_short_at_length", "over_max_tokens")
PROMPT_TOKEN_TOLERANCE = 2  # a BOS token or two billed differently is not a changed prompt


def metric_comparisons(
    reference: list[Observation], provider: list[Observation]
) -> list[Comparison]:
    """Rates with Fisher's exact test, distributions with Mann-Whitney, per scorer metric;
    the task pass rate also within the long-context and system-prompt probes."""
    out: list[Comparison] = []
    plan = [(m, "all") for m in RATE_METRICS + SHIFT_METRICS]
    plan += [("expect_pass", "long_context"), ("expect_pass", "system_prompt")]
    for metric, scope in plan:
        keep = SCOPES[scope]
        a = values_of((o for o in reference if keep(o)), metric)
        b = values_of((o for o in provider if keep(o)), metric)
        if len(a) < MIN_SAMPLES or len(b) < MIN_SAMPLES:
            continue
        if metric in RATE_METRICS:
            outcome = proportion_test(int(sum(a)), len(a), int(sum(b)), len(b))
            name = f"rate:{metric}" + ("" if scope == "all" else f"@{scope}")
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
            out.append(Comparison(result_of(f"violations:{metric}", outcome), metric, "all"))
    return out


def prompt_accounting(
    reference: list[Observation], provider: list[Observation]
) -> list[Comparison]:
    """Prompt tokens the provider bills against what the reference tokenizer and chat template
    count for the same request, per probe scope. With the same weights and template the
    counts are equal; requests whose counts differ by more than a token or two are
    violations, tested against the tolerated rate."""
    ref = {o.key: o for o in reference if o.prompt_tokens is not None}
    out = []
    for scope, keep in SCOPES.items():
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
                "prompt_tokens",
                scope,
                direction=float(np.median(diffs)) if k else 0.0,
            )
        )
    return out
