"""Prompts the provider refuses as longer than its context, though the reference answered them.

A provider that answers "the prompt is longer than my context allows" (error class
`context_length_exceeded`, `auditor.providers.context_length`) for a prompt the reference
engine answered serves a shorter context than the model has: the finding a context cut
silently makes, announced. Such a refusal is not an outage (`auditor.judging.verdict` does not
count it against the provider's availability), and not noise: an honest host of the model
takes every prompt its window holds.

`refusals:context_length`: among the provider's requests whose probe the reference answered
(an ok reference sample of the same probe) and that the provider answered or refused as too
long (other errors say nothing about length), those it refused as too long, tested against
the tolerated quirk rate (exact binomial, one-sided), as the other violations are. A refusal
of a request the model's declared window (`profile.context_window`, prompt and answer
together) cannot hold is the provider's right, and not counted: the reference's count of the
prompt plus the request's `max_tokens` above the window. Effect: the refused share; the
note says where it breaks, in the reference's count of the prompts (the provider's own counts
differ by template and tokenizer), and the limit the provider states, if it does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum

from auditor.comparisons.base import (
    TOLERATED_RATE,
    Comparator,
    Comparison,
    ComparisonInput,
    Scope,
    comparators,
    result_of,
)
from auditor.comparisons.observation import Observation
from auditor.comparisons.rules import Readings, Rejection, Rule, register
from auditor.providers.context_length import ContextOverflow
from auditor.records import ErrorClass
from auditor.stats import excess_rate_test


class RefusalMetric(StrEnum):
    CONTEXT_LENGTH = "context_length"  # prompts refused as too long that the reference answered


def refused_as_too_long(o: Observation) -> bool:
    return not o.ok and o.error_class == ErrorClass.CONTEXT_LENGTH_EXCEEDED


def answered_by_reference(reference: Iterable[Observation]) -> dict[str, int | None]:
    """The probes the reference answered, with its count of their prompt (None: unknown)."""
    out: dict[str, int | None] = {}
    for o in reference:
        if o.ok and out.get(o.probe_hash) is None:
            out[o.probe_hash] = o.prompt_tokens
    return out


def refused_where_answered(
    reference: Iterable[Observation], provider: Iterable[Observation]
) -> list[Observation]:
    """The provider's refusals as too long of prompts the reference answered: judged by
    `refusals:context_length`, never counted as errors against its availability."""
    answered = answered_by_reference(reference)
    return [o for o in provider if refused_as_too_long(o) and o.probe_hash in answered]


def fits_window(o: Observation, prompt_tokens: int | None, window: int | None) -> bool:
    """The declared window holds the request: the reference's count of its prompt and the
    answer it asks room for (unknown counts: held, the reference answered it)."""
    if window is None or prompt_tokens is None:
        return True
    max_tokens = (o.case.get("params") or {}).get("max_tokens") or 0
    return prompt_tokens + int(max_tokens) <= window


def context_refusals(
    reference: list[Observation], provider: list[Observation], window: int | None = None
) -> list[Comparison]:
    """`refusals:context_length` (see the module docstring); nothing when the provider
    refused no request the test counts: a test that cannot reject would only weaken the
    provider's other tests under the multiple-testing correction."""
    answered = answered_by_reference(reference)
    judged = [
        (o, answered[o.probe_hash])
        for o in provider
        if o.probe_hash in answered and (o.ok or refused_as_too_long(o))
    ]
    counted = [(o, n) for o, n in judged if o.ok or fits_window(o, n, window)]
    refused = [(o, n) for o, n in counted if not o.ok]
    if not refused:
        return []
    outcome = excess_rate_test(len(refused), len(counted), TOLERATED_RATE)
    result = result_of("refusals:context_length", outcome).model_copy(
        update={
            "effect": len(refused) / len(counted),
            "note": _where_it_breaks(refused, [(o, n) for o, n in counted if o.ok], window),
        }
    )
    return [Comparison(result, RefusalMetric.CONTEXT_LENGTH, Scope.ALL)]


def _where_it_breaks(
    refused: list[tuple[Observation, int | None]],
    answered: list[tuple[Observation, int | None]],
    window: int | None,
) -> str | None:
    """ "refuses prompts from 1,412 tokens (the reference's count) that the reference
    answered; answers up to 980; states a limit of 1,024" (what is known of it)."""
    if not refused:
        return None
    counts = [n for _, n in refused if n is not None]
    parts = [
        f"refuses prompts from {min(counts):,} tokens (the reference's count) that the "
        "reference answered"
        if counts
        else "refuses prompts the reference answered"
    ]
    if window is not None:
        parts[0] += f", within the declared window of {window:,}"
    longest = [n for _, n in answered if n is not None]
    if longest:
        parts.append(f"answers up to {max(longest):,}")
    stated = Counter(
        overflow.limit
        for o, _ in refused
        if (overflow := ContextOverflow.from_error_message(o.error_message)) is not None
        and overflow.limit is not None
    )
    if stated:
        parts.append(f"states a limit of {stated.most_common(1)[0][0]:,}")
    return "; ".join(parts)


@comparators.register("refusals")
class RefusalComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        return context_refusals(data.reference, data.provider, data.context_window)


def _breaks(rejection: Rejection, readings: Readings) -> str:
    result = rejection.comparison.result
    return (
        f"{result.note} ({result.statistic or 0:.0f} of {result.n} requests): the context is "
        "shorter than the model's"
    )


register(
    Rule(
        name="context_truncation.refuses_long_prompts",
        metric=RefusalMetric.CONTEXT_LENGTH,
        direction="up",
        kind="context_truncation",
        weight=0.9,
        summary=_breaks,
    ),
)
