"""Scores -> comparisons -> findings.

This first detector only accounts: per provider it counts requests, errors by class, tokens and
cost, and decides `unavailable` when errors leave too few answers to judge. Behaviour
comparison with the reference (the statistical tests and diagnoses) arrives with the
comparison engine; until then every available provider is `inconclusive`, never a guess.
"""

from __future__ import annotations

from typing import Any

from auditor.records import Finding
from auditor.storage.repository import Store

DETECTOR = "accounting"
MIN_ANSWERED_FRACTION = 0.5


def verdict_for(requests: int, errors: int, min_answered_fraction: float) -> str:
    answered = requests - errors
    if requests == 0 or answered < min_answered_fraction * requests:
        return "unavailable"
    return "inconclusive"


def build_findings(
    store: Store, round_id: str, min_answered_fraction: float = MIN_ANSWERED_FRACTION
) -> tuple[list[Finding], str, dict[str, Any]]:
    totals = store.provider_totals(round_id)
    models_with_reference = {t["model"] for t in totals if t["kind"] == "reference"}
    findings = []
    for t in totals:
        if t["kind"] == "reference":
            continue
        verdict = verdict_for(t["requests"], t["errors"], min_answered_fraction)
        findings.append(
            Finding(
                model=t["model"],
                provider=t["provider"],
                baseline="reference" if t["model"] in models_with_reference else "history",
                verdict=verdict,  # type: ignore[arg-type]
                severity="warning" if verdict == "unavailable" else "info",
                requests=t["requests"],
                errors=t["errors"],
                tokens=t["tokens"],
                cost=t["cost"],
                errors_by_class=t["errors_by_class"],
            )
        )
    return findings, DETECTOR, {"min_answered_fraction": min_answered_fraction}
