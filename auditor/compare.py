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
from auditor.comparisons import compare
from auditor.diagnose import ALPHA, diagnose, evidence, rejected, severity_for
from auditor.errors import UsageError
from auditor.observations import Observation, load_observations
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


def build_findings(
    store: Store,
    round_id: str,
    alpha: float = ALPHA,
    min_answered_fraction: float = MIN_ANSWERED_FRACTION,
) -> tuple[list[Finding], str, dict[str, Any]]:
    looks = _looks(store, round_id)
    alpha_per_look = alpha / looks
    totals = {(t["model"], t["provider"]): t for t in store.provider_totals(round_id)}
    by_endpoint: dict[tuple[str, str], list[Observation]] = defaultdict(list)
    kinds: dict[tuple[str, str], str] = {}
    for o in load_observations(store, round_id):
        by_endpoint[(o.model, o.endpoint)].append(o)
        kinds[(o.model, o.endpoint)] = o.kind
    findings = []
    bands: dict[str, dict[str, Any]] = {}
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
                provider=name,
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
