"""Which model the answers say they come from: the `model` field of each response against the
model id the provider was asked for.

Servers name models loosely (an alias, a file path, an organisation prefix, a date suffix,
llama.cpp's `gpt-3.5-turbo` of old), so a different string is no evidence. A different
parameter count is: `smollm2-360m-instruct` answering a request for `smollm2-135m-instruct`,
or `llama-3-8b` for `llama-3-70b`, names another model. Only names that both state a
parameter count are compared; the answers that name another one are violations, tested
against the tolerated quirk rate (exact binomial, one-sided).
"""

from __future__ import annotations

import re
from collections import Counter
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
from auditor.comparisons.rules import Rule, register
from auditor.stats import excess_rate_test

# 135m, 8b, 1.5b, 8x7b, 70B; not a version (v3) or a date (2024-08-06).
_SIZE = re.compile(r"(?<![a-z0-9.])(\d+x)?\d+(?:\.\d+)?[mbt](?![a-z0-9])", re.IGNORECASE)


class IdentityMetric(StrEnum):
    NAMES_ANOTHER_MODEL = "names_another_model"


def sizes(name: str) -> frozenset[str]:
    """The parameter counts a model name states (`135m`, `8x7b`), lower-cased."""
    return frozenset(m.group(0).lower() for m in _SIZE.finditer(name.replace("_", "-")))


def names_another_model(requested: str, served: str) -> bool:
    """Both names state parameter counts, and not the same ones."""
    asked, got = sizes(requested), sizes(served)
    return bool(asked and got) and asked != got


def served_names(provider: list[Observation]) -> list[Comparison]:
    answered = [o for o in provider if o.ok and o.served_model and o.requested_model]
    if not answered:
        return []
    other = [
        o.served_model or ""
        for o in answered
        if names_another_model(o.requested_model or "", o.served_model or "")
    ]
    outcome = excess_rate_test(len(other), len(answered), TOLERATED_RATE)
    note = None
    if other:
        name, _ = Counter(other).most_common(1)[0]
        note = f"answers name {name}; the request asked for {answered[0].requested_model}"
    result = result_of("violations:names_another_model", outcome).model_copy(update={"note": note})
    return [Comparison(result, IdentityMetric.NAMES_ANOTHER_MODEL, Scope.ALL)]


@comparators.register("identity")
class IdentityComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        return served_names(data.provider)


register(
    Rule(
        name="other.names_another_model",
        metric=IdentityMetric.NAMES_ANOTHER_MODEL,
        direction="up",
        kind="other",
        weight=0.9,
        summary="{note} ({statistic:.0f} answers): another model is served",
    ),
)
