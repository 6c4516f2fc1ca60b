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

from auditor.calibration import calibrate
from auditor.comparisons import Comparison, compare
from auditor.diagnose import ALPHA, diagnose, evidence, rejected, severity_for
from auditor.errors import UsageError
from auditor.observations import (
    Observation,
    RoundEndpoint,
    load_observations,
    round_endpoints,
)
from auditor.records import Finding, TestResult
from auditor.storage.repository import Store
from auditor.storage.tables import CalibrationRow, ProviderRow, RoundRow, SampleRow

DETECTOR = "comparison-v1"
MIN_ANSWERED_FRACTION = 0.5


def verdict_for(requests: int, errors: int, min_answered_fraction: float) -> str | None:
    """`unavailable` when errors leave too few answers to judge; None when there are enough."""
    answered = requests - errors
    if requests == 0 or answered < min_answered_fraction * requests:
        return "unavailable"
    return None


def _history_baseline(
    store: Store, round_id: str, model: str, provider: str, provider_id: int
) -> list[Observation]:
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
    return load_observations(store, earlier, [provider_id])


def _looks(store: Store, round_id: str) -> int:
    """How many looks the round's budget allowed (sequential testing; 1 without): each look
    is tested at alpha / looks, and so is the final verdict."""
    with store.session() as s:
        row = s.get(RoundRow, round_id)
    sequential = (row.budget or {}).get("sequential") if row else None
    return int(sequential["looks"]) if sequential else 1


def with_band(result: TestResult, bands: dict[str, Any]) -> TestResult:
    """The test with the calibrated honest band of its statistic (`auditor calibrate`),
    unless it carries its own (from the round's trusted providers)."""
    band = bands.get(result.name)
    if band is None or result.honest_range != (None, None):
        return result
    return result.model_copy(update={"honest_range": (float(band[0]), float(band[1]))})


def _trusted(
    store: Store, round_id: str, endpoints: list[RoundEndpoint]
) -> dict[str, list[Observation]]:
    """The observations of a model's trusted providers, by name, in round order."""
    trusted = [e for e in endpoints if e.kind == "provider" and e.trusted]
    loaded = load_observations(store, round_id, [e.provider_id for e in trusted])
    return {e.name: [o for o in loaded if o.endpoint == e.name] for e in trusted}


def build_findings(
    store: Store,
    round_id: str,
    alpha: float = ALPHA,
    min_answered_fraction: float = MIN_ANSWERED_FRACTION,
) -> tuple[list[Finding], str, dict[str, Any]]:
    looks = _looks(store, round_id)
    alpha_per_look = alpha / looks
    totals = {(t["model"], t["provider"]): t for t in store.provider_totals(round_id)}
    endpoints = round_endpoints(store, round_id)
    findings = []
    bands: dict[str, dict[str, Any]] = {}
    # One model at a time, one provider at a time: in memory are the provider's observations,
    # its baseline's and the model's trusted providers' (what the comparisons read), never
    # the whole round's.
    for model in dict.fromkeys(e.model for e in endpoints):
        of_model = [e for e in endpoints if e.model == model]
        ref = next((e for e in of_model if e.kind == "reference"), None)
        reference_obs = load_observations(store, round_id, [ref.provider_id]) if ref else []
        trusted_obs: dict[str, list[Observation]] | None = None
        for e in of_model:
            if e.kind == "reference":
                continue
            t = totals[(model, e.name)]
            reference = reference_obs
            baseline = "reference" if reference else "history"
            if not reference:
                reference = _history_baseline(store, round_id, model, e.name, e.provider_id)
            verdict = verdict_for(t["requests"], t["errors"], min_answered_fraction)
            comparisons: list[Comparison] = []
            observations: list[Observation] = []
            if reference:
                observations = load_observations(store, round_id, [e.provider_id])
                if trusted_obs is None:
                    trusted_obs = _trusted(store, round_id, of_model)
                trusted = [o for n, obs in trusted_obs.items() if n != e.name for o in obs]
                comparisons = compare(reference, observations, f"{round_id}/{model}/{e.name}",
                                      trusted)  # fmt: skip
            rej = rejected(comparisons, alpha_per_look)
            diagnoses = diagnose(rej, comparisons) if verdict is None else []
            if verdict is None:
                tested = sum(c.result.p_value is not None for c in comparisons)
                verdict = "deviant" if rej else ("consistent" if tested >= 3 else "inconclusive")
            if model not in bands:
                calibration = store.latest_calibration(model)
                bands[model] = (calibration.honest_ranges or {}) if calibration else {}
            tests = [with_band(c.result, bands[model]) for c in comparisons]
            findings.append(
                Finding(
                    model=model,
                    provider=e.name,
                    baseline=baseline,  # type: ignore[arg-type]
                    verdict=verdict,  # type: ignore[arg-type]
                    severity=severity_for(verdict, diagnoses),  # type: ignore[arg-type]
                    diagnoses=diagnoses,
                    tests=tests,
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
        "looks": looks,
        "alpha_per_look": alpha_per_look,
        "min_answered_fraction": min_answered_fraction,
        "multiple_testing": "BH",
    }
    return findings, DETECTOR, params


def calibrate_round(
    store: Store,
    round_ids: list[str],
    honest: list[str] | None = None,
    rounds: int = 200,
    seed: int = 0,
    alpha: float = ALPHA,
) -> list[CalibrationRow]:
    """Calibrate each model of the rounds (of one suite) on their honest providers: those
    marked `trusted: true` and those named in `honest`; every round's answers join the
    pools the simulated rounds draw from, the first round's reference answers are the
    baseline. Stores the result (see `auditor.calibration`)."""
    by_endpoint: dict[tuple[str, str], list[Observation]] = defaultdict(list)
    references: dict[str, list[Observation]] = {}
    for round_id in round_ids:
        answers: dict[str, list[Observation]] = defaultdict(list)
        for o in load_observations(store, round_id):
            if o.kind == "reference":
                answers[o.model].append(o)
            else:
                by_endpoint[(o.model, o.endpoint)].append(o)
        for model, observations in answers.items():
            references.setdefault(model, observations)
    names = ", ".join(round_ids)
    out = []
    for model in sorted({m for m, _ in by_endpoint}):
        reference = references.get(model, [])
        chosen = {
            name: obs
            for (m, name), obs in by_endpoint.items()
            if m == model
            and obs[0].kind == "provider"
            and (obs[0].trusted or name in (honest or []))
        }
        if not reference:
            raise UsageError(f"round(s) {names} hold no reference samples for {model}")
        try:
            result = calibrate(reference, chosen, rounds, seed, alpha)
        except ValueError as exc:
            raise UsageError(f"{model}: {exc} (mark them trusted: true or name them)") from None
        out.append(
            store.save_calibration(
                CalibrationRow(
                    model=model, round_ids=round_ids, honest_endpoints=result.honest_endpoints,
                    detector=DETECTOR, alpha=alpha, rounds=result.rounds, flagged=result.flagged,
                    rate=result.rate, upper_bound=result.upper_bound,
                    honest_ranges={k: list(v) for k, v in result.honest_ranges.items()},
                    flagged_by_test=result.flagged_by_test,
                )
            )
        )  # fmt: skip
    return out
