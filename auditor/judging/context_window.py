"""A provider's effective context window, as its finding reports it (`Finding.context_window`).

The ladder comparisons (`auditor.comparisons.ladder`) test where the window breaks; this
module keeps the same reading as a record, rung by rung, for the report, the database, the
JSON API and the dashboard's ladder chart, with what the ladder cost the provider; and,
while a round climbs the ladder (`auditor.rounds.climb`), each provider's rung verdicts so far.
"""

from __future__ import annotations

from dataclasses import asdict

from auditor.comparisons.ladder import is_ladder, ladder_window, window_summary
from auditor.comparisons.observation import Observation
from auditor.judging.verdict import VerdictPolicy
from auditor.records import ContextWindow, LadderRung, LadderTask
from auditor.stats.ladder import RungStatus
from auditor.storage.observations import load_observations, round_endpoints, round_looks
from auditor.storage.repository import Store


def context_window(
    reference: list[Observation],
    provider: list[Observation],
    declared: int | None = None,
    level: float | None = None,
) -> ContextWindow | None:
    """The provider's `ContextWindow`; None when it was sent no ladder case. `declared`: the
    window the model's profile declares; `level`: the verdict's (None: its default)."""
    judged = ladder_window(reference, provider, declared, level)
    if judged is None:
        return None
    found, _, rungs = judged
    ladder = [o for o in provider if is_ladder(o)]
    return ContextWindow(
        declared=declared,
        effective=found.length,
        lower_bound=found.lower_bound,
        breaks_at=found.break_at,
        reason=found.reason,
        summary=window_summary(found, rungs),
        rungs=[
            LadderRung(
                length=v.length,
                status=v.status,
                reason=v.reason,
                provider_passed=v.result.provider_passed,
                provider_tried=v.result.provider_tried,
                reference_passed=v.result.reference_passed,
                reference_tried=v.result.reference_tried,
                refused=v.result.refused,
                errors=v.result.errors,
                billed_short=v.result.billed_short,
                p_value=v.p_value,
                confirmed=v.confirmed,
                tasks=[LadderTask(**asdict(t)) for t in v.result.tasks],
            )
            for v in found.rungs
        ],
        requests=len(ladder),
        tokens=sum(o.total_tokens or 0 for o in ladder),
    )


def stored_rungs(
    store: Store, round_id: str, windows: dict[str, int | None]
) -> dict[tuple[str, str], list[RungStatus]]:
    """Every provider's rung verdicts so far in the round (shortest first; none without ladder
    answers), read from what is stored, one model's providers at a time. `windows`: the
    context window each model declares. Read at the level the round's verdict tests at
    (alpha / looks), as its findings will be."""
    level = VerdictPolicy(looks=round_looks(store, round_id)).level
    endpoints = round_endpoints(store, round_id)
    verdicts: dict[tuple[str, str], list[RungStatus]] = {}
    for model in dict.fromkeys(e.model for e in endpoints):
        of_model = [e for e in endpoints if e.model == model]
        ref = next((e for e in of_model if e.kind == "reference"), None)
        reference = load_observations(store, round_id, [ref.provider_id]) if ref else []
        for e in of_model:
            if e.kind == "reference":
                continue
            provider = load_observations(store, round_id, [e.provider_id])
            judged = ladder_window(reference, provider, windows.get(model), level)
            verdicts[(model, e.name)] = [v.status for v in judged[0].rungs] if judged else []
    return verdicts
