"""Scores -> comparisons -> findings, for every provider of a round.

Each provider is compared with the reference's samples of the same round, or, where the round
has no reference, with its own samples from the latest earlier round of the same suite (a
silent change on a given day is caught even where no reference can run). Everything is read
from the database, so `auditor compare --round ID` recomputes a round's findings later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import select
from sqlmodel import col

from auditor.comparisons import DEFAULT_NOISE_TOLERANCE, Comparison, compare
from auditor.comparisons.capabilities import capability_table
from auditor.comparisons.observation import Observation
from auditor.comparisons.refusals import refused_where_answered
from auditor.judging.context_window import context_window as effective_context_window
from auditor.judging.diagnose import diagnose
from auditor.judging.evidence import pick_evidence
from auditor.judging.upstreams import upstream_shares
from auditor.judging.verdict import (
    ALPHA,
    DETECTOR,
    MIN_ANSWERED_FRACTION,
    Band,
    VerdictPolicy,
    judge,
    severity_for,
)
from auditor.records import Finding
from auditor.storage.observations import (
    RoundEndpoint,
    load_observations,
    round_endpoints,
    round_looks,
)
from auditor.storage.repository import Store
from auditor.storage.tables import ProviderRow, RoundRow, SampleRow


def _history_baseline(
    store: Store, round_id: str, model: str, provider: str, provider_id: int
) -> list[Observation]:
    """The provider's samples from the latest earlier round of the same suite."""
    with store.session() as s:
        current = s.get(RoundRow, round_id)
        if current is None:
            return []
        earlier = s.execute(
            select(col(RoundRow.id))
            .join(SampleRow, col(SampleRow.round_id) == col(RoundRow.id))
            .join(ProviderRow, col(SampleRow.provider_id) == col(ProviderRow.id))
            .where(
                col(RoundRow.suite) == current.suite,
                col(RoundRow.started_at) < current.started_at,
                col(ProviderRow.model) == model,
                col(ProviderRow.name) == provider,
            )
            .order_by(col(RoundRow.started_at).desc())
            .limit(1)
        ).scalar()
    if earlier is None:
        return []
    return load_observations(store, earlier, [provider_id])


def _judging(store: Store, round_id: str) -> dict[str, Any]:
    """The settings the round was judged with (`rounds.judging`; none: the defaults)."""
    with store.session() as s:
        row = s.get(RoundRow, round_id)
    return (row.judging or {}) if row else {}


def _tolerances(judging: dict[str, Any]) -> dict[str, float]:
    """The round's numeric noise tolerance per model (none: the default)."""
    return {m: float(v) for m, v in (judging.get("noise_tolerance") or {}).items()}


def _context_windows(judging: dict[str, Any]) -> dict[str, int]:
    """The context window each model's profile declares, where the round recorded one
    (`context_window`, by model; none: not declared)."""
    return {m: int(v) for m, v in (judging.get("context_window") or {}).items() if v}


def _trusted(
    store: Store, round_id: str, endpoints: list[RoundEndpoint]
) -> dict[str, list[Observation]]:
    """The observations of a model's trusted providers, by name, in round order."""
    trusted = [e for e in endpoints if e.kind == "provider" and e.trusted]
    loaded = load_observations(store, round_id, [e.provider_id for e in trusted])
    return {e.name: [o for o in loaded if o.endpoint == e.name] for e in trusted}


def _bands(store: Store, model: str) -> dict[str, Band]:
    """The honest band of each statistic from the model's latest `auditor calibrate`."""
    calibration = store.latest_calibration(model)
    ranges = (calibration.honest_ranges or {}) if calibration else {}
    return {name: (float(band[0]), float(band[1])) for name, band in ranges.items()}


@dataclass(frozen=True)
class ProviderRecord:
    """A provider's request totals in a round (`Store.provider_totals`)."""

    model: str
    name: str
    requests: int
    errors: int
    tokens: int
    cost: float | None = None
    errors_by_class: dict[str, int] = field(default_factory=dict)


def assess(
    provider: ProviderRecord,
    baseline: Literal["reference", "history"],
    reference: list[Observation],
    observations: list[Observation],
    trusted: list[Observation],
    policy: VerdictPolicy,
    bands: dict[str, Band],
    seed: str,
    noise_tolerance: float = DEFAULT_NOISE_TOLERANCE,
    context_window: int | None = None,
) -> Finding:
    """One provider's finding from its observations and its baseline's (no I/O): the
    comparisons, the verdict, the diagnoses and the evidence. `context_window`: the one the
    model's profile declares (a refusal of a longer request is the provider's right)."""
    comparisons: list[Comparison] = []
    if reference and observations:
        comparisons = compare(
            reference, observations, seed, trusted, noise_tolerance, context_window, policy.level
        )
    # Prompts refused as too long that the reference answered: evidence
    # (`refusals:context_length`), not errors against the provider's availability. At most
    # the errors counted (the totals may have been read before the latest samples).
    refusals = min(len(refused_where_answered(reference, observations)), provider.errors)
    judgement = judge(
        comparisons, provider.requests, provider.errors, policy, bands, context_refusals=refusals
    )
    diagnoses = diagnose(judgement.rejected, comparisons)
    deviant = judgement.verdict == "deviant"
    return Finding(
        model=provider.model,
        provider=provider.name,
        baseline=baseline,
        verdict=judgement.verdict,
        severity=severity_for(judgement.verdict, diagnoses),
        diagnoses=diagnoses,
        tests=judgement.tests,
        evidence=pick_evidence(reference, observations, diagnoses) if deviant else [],
        requests=provider.requests,
        errors=provider.errors,
        tokens=provider.tokens,
        cost=provider.cost,
        errors_by_class=provider.errors_by_class,
        context_window=effective_context_window(
            reference, observations, context_window, policy.level
        ),
        upstreams=upstream_shares(observations),
        capabilities=capability_table(reference, observations),
    )


def build_findings(
    store: Store,
    round_id: str,
    alpha: float = ALPHA,
    min_answered_fraction: float = MIN_ANSWERED_FRACTION,
) -> tuple[list[Finding], str, dict[str, Any]]:
    """Every provider's finding in the round, the detector's name and its parameters."""
    policy = VerdictPolicy(
        alpha=alpha, looks=round_looks(store, round_id), min_answered_fraction=min_answered_fraction
    )
    totals = {(t["model"], t["provider"]): t for t in store.provider_totals(round_id)}
    judging = _judging(store, round_id)
    tolerances, windows = _tolerances(judging), _context_windows(judging)
    endpoints = round_endpoints(store, round_id)
    findings = []
    # One model at a time, one provider at a time: in memory are the provider's observations,
    # its baseline's and the model's trusted providers' (what the comparisons read), never
    # the whole round's.
    for model in dict.fromkeys(e.model for e in endpoints):
        of_model = [e for e in endpoints if e.model == model]
        ref = next((e for e in of_model if e.kind == "reference"), None)
        reference_obs = load_observations(store, round_id, [ref.provider_id]) if ref else []
        trusted_obs: dict[str, list[Observation]] | None = None
        bands = _bands(store, model)
        for e in of_model:
            if e.kind == "reference":
                continue
            t = totals[(model, e.name)]
            reference = reference_obs
            baseline: Literal["reference", "history"] = "reference" if reference else "history"
            if not reference:
                reference = _history_baseline(store, round_id, model, e.name, e.provider_id)
            observations: list[Observation] = []
            trusted: list[Observation] = []
            if reference:
                observations = load_observations(store, round_id, [e.provider_id])
                if trusted_obs is None:
                    trusted_obs = _trusted(store, round_id, of_model)
                trusted = [o for n, obs in trusted_obs.items() if n != e.name for o in obs]
            findings.append(
                assess(
                    ProviderRecord(
                        model,
                        e.name,
                        t["requests"],
                        t["errors"],
                        t["tokens"],
                        t["cost"],
                        t["errors_by_class"],
                    ),
                    baseline,
                    reference,
                    observations,
                    trusted,
                    policy,
                    bands,
                    seed=f"{round_id}/{model}/{e.name}",
                    noise_tolerance=tolerances.get(model, DEFAULT_NOISE_TOLERANCE),
                    context_window=windows.get(model),
                )
            )
    findings.sort(key=lambda f: (f.model, f.provider))
    return findings, DETECTOR, policy.params()
