"""A round's stored samples and scores, read back as typed observations for the comparisons.

Everything a comparison needs comes from the database alone, so `auditor compare` can
recompute any round's findings later.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.orm import QueryableAttribute, load_only
from sqlmodel import col

from auditor.comparisons.observation import Observation
from auditor.scorers.reference_likelihood import SCORER, TRACE_METRIC
from auditor.storage.repository import Store
from auditor.storage.tables import ProbeCaseRow, ProviderRow, RoundRow, SampleRow, ScoreRow

# SQLModel types a table model's class attributes as their values; they are the mapper's
# instrumented attributes, which `load_only` takes.
_SAMPLE_COLUMNS = cast(
    "tuple[QueryableAttribute[Any], ...]",
    (
        SampleRow.id,
        SampleRow.provider_id,
        SampleRow.probe_id,
        SampleRow.probe_hash,
        SampleRow.sample_index,
        SampleRow.ok,
        SampleRow.output_text,
        SampleRow.finish_reason,
        SampleRow.prompt_tokens,
        SampleRow.completion_tokens,
        SampleRow.total_tokens,
        SampleRow.error_class,
        SampleRow.error_message,
        SampleRow.logprobs_json,
        SampleRow.tool_calls_json,
        SampleRow.served_model,
        SampleRow.reasoning_text,
        SampleRow.reasoning_tokens,
        SampleRow.upstream,
    ),
)


@dataclass(frozen=True)
class RoundEndpoint:
    """An endpoint (provider or reference) with samples in a round."""

    provider_id: int
    model: str
    name: str
    kind: str  # provider | reference
    trusted: bool


def round_looks(store: Store, round_id: str) -> int:
    """How many looks the round's budget allowed (sequential testing; 1 without): each look
    is tested at alpha / looks, and so is the final verdict."""
    with store.session() as s:
        row = s.get(RoundRow, round_id)
    sequential = (row.budget or {}).get("sequential") if row else None
    return int(sequential["looks"]) if sequential else 1


def round_endpoints(store: Store, round_id: str) -> list[RoundEndpoint]:
    """The round's endpoints, in the order of their first stored sample."""
    first = func.min(SampleRow.id)
    with store.session() as s:
        rows = s.execute(
            select(
                col(ProviderRow.id),
                col(ProviderRow.model),
                col(ProviderRow.name),
                col(ProviderRow.kind),
                col(ProviderRow.trusted),
            )
            .join(SampleRow, col(SampleRow.provider_id) == ProviderRow.id)
            .where(col(SampleRow.round_id) == round_id)
            .group_by(
                col(ProviderRow.id),
                col(ProviderRow.model),
                col(ProviderRow.name),
                col(ProviderRow.kind),
                col(ProviderRow.trusted),
            )
            .order_by(first)
        ).all()
    return [RoundEndpoint(*row) for row in rows]


def load_observations(
    store: Store, round_id: str, provider_ids: Collection[int] | None = None
) -> list[Observation]:
    """The round's observations in sample order; with `provider_ids`, those endpoints' only
    (the comparisons of one provider never need the whole round in memory)."""
    in_round = col(SampleRow.round_id) == round_id
    if provider_ids is not None:
        in_round = in_round & col(SampleRow.provider_id).in_(list(provider_ids))
    with store.session() as s:
        rows = s.execute(
            select(SampleRow, ProviderRow)
            .options(load_only(*_SAMPLE_COLUMNS))  # not the raw payloads: memory stays small
            .join(ProviderRow, col(SampleRow.provider_id) == ProviderRow.id)
            .where(in_round)
            .order_by(col(SampleRow.id))
        ).all()
        # Each case once, shared by its samples (not a copy of its JSON per sample).
        hashes = select(col(SampleRow.probe_hash)).where(in_round)
        cases = dict(
            s.execute(
                select(col(ProbeCaseRow.hash), col(ProbeCaseRow.case)).where(
                    col(ProbeCaseRow.hash).in_(hashes)
                )
            ).all()
        )
        score_rows = s.execute(
            select(col(ScoreRow.sample_id), col(ScoreRow.metric), col(ScoreRow.value))
            .join(SampleRow, col(ScoreRow.sample_id) == SampleRow.id)
            .where(in_round)
        ).all()
        trace_rows = s.execute(
            select(col(ScoreRow.sample_id), col(ScoreRow.detail))
            .join(SampleRow, col(ScoreRow.sample_id) == SampleRow.id)
            .where(in_round, col(ScoreRow.metric) == TRACE_METRIC, col(ScoreRow.scorer) == SCORER)
        ).all()
    scores: dict[int, dict[str, float | None]] = defaultdict(dict)
    for sample_id, metric, value in score_rows:
        scores[sample_id][metric] = value
    traces = {sample_id: detail for sample_id, detail in trace_rows if detail}
    return [
        Observation(
            model=provider.model,
            endpoint=provider.name,
            kind=provider.kind,
            trusted=provider.trusted,
            probe_id=sample.probe_id,
            probe_hash=sample.probe_hash,
            sample_index=sample.sample_index,
            ok=sample.ok,
            text=sample.output_text,
            finish_reason=sample.finish_reason,
            prompt_tokens=sample.prompt_tokens,
            completion_tokens=sample.completion_tokens,
            total_tokens=sample.total_tokens,
            error_class=sample.error_class,
            error_message=sample.error_message,
            case=cases[sample.probe_hash],
            scores=scores.get(sample.id or 0, {}),
            tool_calls=sample.tool_calls_json,
            logprobs=sample.logprobs_json,
            served_model=sample.served_model,
            requested_model=provider.model_id,
            trace=traces.get(sample.id or 0),
            reasoning=sample.reasoning_text,
            reasoning_tokens=sample.reasoning_tokens,
            upstream=sample.upstream,
        )
        for sample, provider in rows
        if sample.probe_hash in cases
    ]
