"""Scores -> comparisons -> findings, for every provider of a round.

Each provider is compared with the reference's samples of the same round, or, where the round
has no reference, with its own samples from the latest earlier round of the same suite (a
silent change on a given day is caught even where no reference can run). Everything is read
from the database, so `auditor compare --round ID` recomputes a round's findings later.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select

from auditor.comparisons import compare
from auditor.diagnose import ALPHA, diagnose, evidence, rejected, severity_for
from auditor.observations import Observation, load_observations
from auditor.records import Finding
from auditor.storage.repository import Store
from auditor.storage.tables import ProviderRow, RoundRow, SampleRow

DETECTOR = "comparison-v1"
MIN_ANSWERED_FRACTION = 0.5


def verdict_for(requests: int, errors: int, min_answered_fraction: float) -> str | None:
    """`unavailable` when errors leave too few answers to judge; None when there are enough."""
    answered = requests - errors
    if requests == 0 or answered < min_answered_fraction * requests:
        return "unavailable"
    return None


def _history_baseline(store: Store, round_id: str, model: str, provider: str) -> list[Observation]:
    """The provider's samples from the latest earlier round of the same suite."""
    with store.session() as s:
        current = s.get(RoundRow, round_id)
        if current is None:
            return []
        earlier = s.execute(
            select(RoundRow.id)
            .join(SampleRow, SampleRow.round_id == RoundRow.id)
            .join(ProviderRow, SampleRow.provider_id == ProviderRow.id)
            .where(
                RoundRow.suite == current.suite,
                RoundRow.started_at < current.started_at,
                ProviderRow.model == model,
                ProviderRow.name == provider,
            )
            .order_by(RoundRow.started_at.desc())
            .limit(1)
        ).scalar()
    if earlier is None:
        return []
    return [
        o for o in load_observations(store, earlier) if o.model == model and o.endpoint == provider
    ]


def build_findings(
    store: Store,
    round_id: str,
    alpha: float = ALPHA,
    min_answered_fraction: float = MIN_ANSWERED_FRACTION,
) -> tuple[list[Finding], str, dict[str, Any]]:
    totals = {(t["model"], t["provider"]): t for t in store.provider_totals(round_id)}
    by_endpoint: dict[tuple[str, str], list[Observation]] = defaultdict(list)
    kinds: dict[tuple[str, str], str] = {}
    for o in load_observations(store, round_id):
        by_endpoint[(o.model, o.endpoint)].append(o)
        kinds[(o.model, o.endpoint)] = o.kind
    findings = []
    for (model, name), observations in by_endpoint.items():
        if kinds[(model, name)] == "reference":
            continue
        t = totals[(model, name)]
        reference = next(
            (
                obs
                for (m, _), obs in by_endpoint.items()
                if m == model and kinds[(m, _)] == "reference"
            ),
            None,
        )
        baseline = "reference" if reference else "history"
        if reference is None:
            reference = _history_baseline(store, round_id, model, name)
        verdict = verdict_for(t["requests"], t["errors"], min_answered_fraction)
        trusted = [
            o
            for (m, n), obs in by_endpoint.items()
            if m == model and n != name and kinds[(m, n)] == "provider" and obs and obs[0].trusted
            for o in obs
        ]
        seed = f"{round_id}/{model}/{name}"
        comparisons = compare(reference, observations, seed, trusted) if reference else []
        rej = rejected(comparisons, alpha)
        diagnoses = diagnose(rej, comparisons) if verdict is None else []
        if verdict is None:
            tested = sum(c.result.p_value is not None for c in comparisons)
            verdict = "deviant" if rej else ("consistent" if tested >= 3 else "inconclusive")
        findings.append(
            Finding(
                model=model,
                provider=name,
                baseline=baseline,  # type: ignore[arg-type]
                verdict=verdict,  # type: ignore[arg-type]
                severity=severity_for(verdict, diagnoses),  # type: ignore[arg-type]
                diagnoses=diagnoses,
                tests=[c.result for c in comparisons],
                evidence=evidence(reference, observations, diagnoses)
                if verdict == "deviant"
                else [],
                requests=t["requests"],
                errors=t["errors"],
                tokens=t["tokens"],
                cost=t["cost"],
                errors_by_class=t["errors_by_class"],
            )
        )
    findings.sort(key=lambda f: (f.model, f.provider))
    params = {
        "alpha": alpha,
        "min_answered_fraction": min_answered_fraction,
        "multiple_testing": "BH",
    }
    return findings, DETECTOR, params
